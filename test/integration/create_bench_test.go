package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/procstat"
)

// BenchmarkCreateCPU: where the CPU of a create goes, server, PostgreSQL and client apart, with
// the server as its own OS process (`reports-server serve --standalone`, built from
// ./cmd/reports-server or MEMORY_BENCH_SERVER_BIN) on a database of the test's PostgreSQL. Each
// iteration creates CREATE_BENCH_REPORTS (default 1,500, the direct half of make bench-compare)
// PolicyReports of 20 results (~10 KB) with 16 client-go writers, as bench-compare does, and
// waits until the analytics projection has them too. Reported per create, in ms: the server's
// CPU (server-ms), PostgreSQL's during the creates (pg-ms: every postgres process on the machine,
// so run it where no other PostgreSQL is busy) and the projection's after them (projection-pg-ms),
// and the client's (client-ms: this process, the writers' encoding, TLS and decoding).
//
//	go test ./test/integration -run XXX -bench BenchmarkCreateCPU -benchtime 3x
func BenchmarkCreateCPU(b *testing.B) {
	counts, err := memEnvInts("CREATE_BENCH_REPORTS", []int{1500})
	if err != nil {
		b.Fatal(err)
	}
	n := counts[0]
	url := dbtest.URL(b)
	p := memStart(b, memBuildServer(b), url)
	defer p.stop(b)
	ctx := context.Background()
	res := p.dynamic.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports")).Namespace("default")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cpu := func() (server, pg, client time.Duration) {
		server, err := procstat.CPUTime(p.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		client, err = procstat.CPUTime(os.Getpid())
		if err != nil {
			b.Fatal(err)
		}
		return server, procstat.CPUTimeOf("postgres"), client
	}
	var created int
	var elapsed, serverCPU, pgCPU, projectionCPU, clientCPU time.Duration
	for b.Loop() {
		s0, pg0, c0 := cpu()
		start := time.Now()
		first := created
		createConcurrently(b, 16, n, func(i int) error {
			_, err := res.Create(ctx, createBenchReport(first+i), metav1.CreateOptions{})
			return err
		})
		elapsed += time.Since(start)
		s1, pg1, c1 := cpu()
		created += n
		waitResults(ctx, b, conn, created*20)
		_, pg2, _ := cpu()
		serverCPU, pgCPU, projectionCPU, clientCPU = serverCPU+s1-s0, pgCPU+pg1-pg0, projectionCPU+pg2-pg1, clientCPU+c1-c0
	}
	perCreate := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(created) }
	b.ReportMetric(float64(created)/elapsed.Seconds(), "creates/s")
	b.ReportMetric(perCreate(serverCPU), "server-ms")
	b.ReportMetric(perCreate(pgCPU), "pg-ms")
	b.ReportMetric(perCreate(projectionCPU), "projection-pg-ms")
	b.ReportMetric(perCreate(clientCPU), "client-ms")
}

// createBenchReport is make bench-compare's report (test/e2e benchReport): 20 Kyverno-like
// results, two labels, ~10 KB of JSON.
func createBenchReport(i int) *unstructured.Unstructured {
	results := make([]any, 20)
	for j := range results {
		results[j] = map[string]any{
			"policy":   fmt.Sprintf("policy-%02d", j),
			"rule":     fmt.Sprintf("rule-%02d-check-something-long", j),
			"result":   []string{"pass", "fail", "warn"}[j%3],
			"severity": []string{"low", "medium", "high", "critical"}[j%4],
			"category": "Pod Security Standards (Restricted)",
			"source":   "kyverno",
			"scored":   true,
			"message":  "validation error: " + strings.Repeat("the container must set a field to a value; ", 6),
			"timestamp": map[string]any{
				"seconds": int64(1764000000 + j), "nanos": int64(0),
			},
			"properties": map[string]any{"process": "background scan", "index": fmt.Sprint(j)},
		}
	}
	name := fmt.Sprintf("r%d", i)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2",
		"kind":       "PolicyReport",
		"metadata": map[string]any{
			"name":      name,
			"namespace": "default",
			"labels": map[string]any{
				"app.kubernetes.io/managed-by":  "kyverno",
				"audit.kyverno.io/resource.uid": fmt.Sprintf("0b5f5a0e-2c1d-4a47-9d55-%012d", i),
			},
		},
		"scope":   map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": name},
		"summary": map[string]any{"pass": int64(7), "fail": int64(7), "warn": int64(6), "error": int64(0), "skip": int64(0)},
		"results": results,
	}}
}

// waitResults waits until the analytics projection holds at least want result rows.
func waitResults(ctx context.Context, b *testing.B, conn *pgx.Conn, want int) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var got int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM analytics_results").Scan(&got); err != nil {
			b.Fatal(err)
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the analytics projection holds %d results after 5 minutes, want %d", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
