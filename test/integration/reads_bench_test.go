package integration

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/httpread"
)

// BenchmarkReadPaths measures the read paths informers and kubectl use, over HTTP against a
// standalone server holding READS_BENCH_REPORTS (default 3,000) PolicyReports of 20 results
// (about 10 KB of JSON each): paged lists (limit=500) of whole objects, of metadata only and as
// Tables, a label selection of 1% of them (list/label: 30 of 3,000), and watch-lists
// (sendInitialEvents) of whole objects and of metadata. Each sub-benchmark reads every report
// (list/label: every selected one) once per iteration and reports items/s.
//
//	go test ./test/integration -run XXX -bench BenchmarkReadPaths -benchtime 5x
func BenchmarkReadPaths(b *testing.B) {
	n := 3000
	if s := os.Getenv("READS_BENCH_REPORTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	srv := startServerWith(b, dbtest.URL(b), nil)
	ctx := context.Background()
	cfg := rest.CopyConfig(srv.Config)
	cfg.Timeout = 10 * time.Minute
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	res := client.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports"))
	createConcurrently(b, 16, n, func(i int) error {
		u := benchPolicyReport(i)
		// 20 results, as a Kyverno report of a pod under the PSS policies has.
		results := u.Object["results"].([]any)
		u.Object["results"] = append(results, results...)
		if i%100 == 0 {
			u.SetLabels(map[string]string{"bench/rare": "yes"}) // list/label selects these
		}
		_, err := res.Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	// The steady state: autovacuum analyzes the table within about a minute of a bulk load (the
	// machine's PostgreSQL may run without it); until then a label selection is planned as a
	// walk of every key.
	pool, err := pgxpool.New(ctx, srv.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE reports"); err != nil {
		b.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const path = "/apis/wgpolicyk8s.io/v1alpha2/policyreports"
	for _, tc := range []struct {
		name, accept string
		watch        bool
		// selector is a label selector (the list reads 1% of the reports: they are its want).
		selector string
	}{
		{"list/full", "application/json", false, ""},
		{"list/label", "application/json", false, "labelSelector=bench%2Frare%3Dyes"},
		{"list/metadata", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", false, ""},
		{"list/table", "application/json;as=Table;v=v1;g=meta.k8s.io", false, ""},
		{"watchlist/full", "application/json", true, ""},
		{"watchlist/metadata", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", true, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			start := time.Now()
			items := 0
			for b.Loop() {
				var read []json.RawMessage
				var err error
				if tc.watch {
					read, err = httpread.WatchList(ctx, hc, cfg.Host+path, tc.accept)
				} else {
					read, err = httpread.PagedList(ctx, hc, cfg.Host+path, tc.selector, tc.accept, 500)
				}
				if err != nil {
					b.Fatal(err)
				}
				got, want := len(read), n
				if tc.selector != "" {
					want = (n + 99) / 100
				}
				if got != want {
					b.Fatalf("read %d reports, want %d", got, want)
				}
				items += got
			}
			b.ReportMetric(float64(items)/time.Since(start).Seconds(), "items/s")
		})
	}
}
