package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkFindingsHTTP measures, over HTTPS against a running server, two analyst questions
// answered the way a Kubernetes client must answer them without this server's analytics (list every
// policy report through the API in pages of 500, decode them into the Go types, filter in the
// client) and through the findings API (a field selector evaluated in SQL, only matching rows sent).
// The reports (FINDINGS_BENCH_REPORTS, default 10^4, of ten results each) are created through the
// API with the shape of BenchmarkAnalyticQueries' (internal/analytics): half Kyverno-style, half
// Trivy-style results with a CVSS score and a fixed version, 100 namespaces.
//
//	go test ./test/integration -run '^$' -bench FindingsHTTP -benchtime 3x -timeout 60m -v
func BenchmarkFindingsHTTP(b *testing.B) {
	reportsN := 10_000
	if s := os.Getenv("FINDINGS_BENCH_REPORTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		reportsN = n
	}
	srv := startServerWith(b, dbtest.URL(b), func(o *server.Options, _ *server.Hooks) {
		o.Analytics.SummaryRefreshInterval = time.Second
	})
	ctx := context.Background()
	cfg := rest.CopyConfig(srv.Config)
	cfg.Timeout = 10 * time.Minute
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, srv.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	start := time.Now()
	createConcurrently(b, 8, reportsN, func(i int) error {
		u := benchPolicyReport(i)
		_, err := client.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports")).
			Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	b.Logf("%d reports (%d results) created through the API in %v", reportsN, reportsN*10, time.Since(start))
	start = time.Now()
	waitFor(30*time.Minute, func() bool {
		var behind int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM reporting.refresh_status
			WHERE pending_revisions > 0 OR refreshed_at IS NULL`).Scan(&behind); err != nil {
			b.Fatal(err)
		}
		return behind == 0
	})
	b.Logf("projected and summarized %v after the last write", time.Since(start))
	// The steady state, as BenchmarkAnalyticQueries measures it: autovacuum analyzes the tables
	// within about a minute of a bulk load; until then the planner may sort every remaining row
	// for each page of an unselective list (docs/operations.md, "Analytics").
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE analytics_results, analytics_reports, analytics_outcomes"); err != nil {
		b.Fatal(err)
	}

	// listReports pages through every policy report as a client of the API does and calls fn with
	// each result.
	listReports := func(b *testing.B, fn func(ns string, r *wgpolicyv1alpha2.PolicyReportResult)) {
		cont := ""
		for {
			body, err := raw.RESTClient().Get().AbsPath("/apis/wgpolicyk8s.io/v1alpha2/policyreports").
				Param("limit", "500").Param("continue", cont).DoRaw(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var list wgpolicyv1alpha2.PolicyReportList
			if err := json.Unmarshal(body, &list); err != nil {
				b.Fatal(err)
			}
			for i := range list.Items {
				for j := range list.Items[i].Results {
					fn(list.Items[i].Namespace, &list.Items[i].Results[j])
				}
			}
			if cont = list.Continue; cont == "" {
				return
			}
		}
	}
	// listFindings pages through the findings a field selector picks.
	listFindings := func(b *testing.B, selector string, fn func(f *analyticsv1alpha1.Finding)) {
		cont := ""
		for {
			body, err := raw.RESTClient().Get().AbsPath("/apis/analytics.reports-server.io/v1alpha1/findings").
				Param("fieldSelector", selector).Param("limit", "500").Param("continue", cont).DoRaw(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var list analyticsv1alpha1.FindingList
			if err := json.Unmarshal(body, &list); err != nil {
				b.Fatal(err)
			}
			for i := range list.Items {
				fn(&list.Items[i])
			}
			if cont = list.Continue; cont == "" {
				return
			}
		}
	}
	cvss8 := func(props map[string]string) bool {
		score, err := strconv.ParseFloat(strings.TrimSpace(props["score"]), 64)
		if err != nil {
			score, err = strconv.ParseFloat(props["nvd.v3_score"], 64)
		}
		return err == nil && score >= 8 && props["FixedVersion"] != ""
	}

	b.Run("cvss8-with-fix/http-list-reports", func(b *testing.B) {
		var n int
		for b.Loop() {
			n = 0
			listReports(b, func(_ string, r *wgpolicyv1alpha2.PolicyReportResult) {
				if cvss8(r.Properties) {
					n++
				}
			})
		}
		b.ReportMetric(float64(n), "rows")
	})
	b.Run("cvss8-with-fix/http-findings", func(b *testing.B) {
		// Score is no selectable field: the findings API narrows to Trivy's results in SQL and the
		// client filters those.
		var n int
		for b.Loop() {
			n = 0
			listFindings(b, "source=Trivy", func(f *analyticsv1alpha1.Finding) {
				if f.Score != nil && *f.Score >= 8 && f.Properties["FixedVersion"] != "" {
					n++
				}
			})
		}
		b.ReportMetric(float64(n), "rows")
	})
	b.Run("critical-per-namespace/http-list-reports", func(b *testing.B) {
		var n int
		for b.Loop() {
			perNS := map[string]int{}
			listReports(b, func(ns string, r *wgpolicyv1alpha2.PolicyReportResult) {
				if r.Severity != nil && *r.Severity == "critical" && (r.Result == nil || *r.Result == "fail" || *r.Result == "warn" || *r.Result == "error") {
					perNS[ns]++
				}
			})
			n = len(perNS)
		}
		b.ReportMetric(float64(n), "rows")
	})
	b.Run("critical-per-namespace/http-findings", func(b *testing.B) {
		var n int
		for b.Loop() {
			perNS := map[string]int{}
			listFindings(b, "severity=critical,finding=true", func(f *analyticsv1alpha1.Finding) { perNS[f.Namespace]++ })
			n = len(perNS)
		}
		b.ReportMetric(float64(n), "rows")
	})
	b.Run("critical-per-namespace/http-findingsummaries", func(b *testing.B) {
		var n int
		for b.Loop() {
			body, err := raw.RESTClient().Get().AbsPath("/apis/analytics.reports-server.io/v1alpha1/findingsummaries").
				Param("fieldSelector", "type=Namespace").DoRaw(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var list analyticsv1alpha1.FindingSummaryList
			if err := json.Unmarshal(body, &list); err != nil {
				b.Fatal(err)
			}
			n = 0
			for _, s := range list.Items {
				if s.Counts.Critical > 0 {
					n++
				}
			}
		}
		b.ReportMetric(float64(n), "rows")
	})
}

// benchPolicyReport is report i of the benchmark: in namespace ns-<i%100>, ten results, the even
// ones Kyverno-style, the odd ones Trivy-style; result, severity and score drawn with the
// percentiles of BenchmarkAnalyticQueries' generator (70% pass, 20% fail, 5% warn, 3% error, 2%
// skip; 2% critical, 13% high, 35% medium, 35% low, 15% info; scores uniform in 0.0–9.9).
func benchPolicyReport(i int) *unstructured.Unstructured {
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	ns := fmt.Sprintf("ns-%d", i%100)
	var results []any
	for j := range 10 {
		r, s, c := rng.IntN(100), rng.IntN(100), rng.IntN(100)
		result := map[string]any{
			"rule":      fmt.Sprintf("rule-%d", j),
			"result":    pickPercentile(r, []int{70, 90, 95, 98}, "pass", "fail", "warn", "error", "skip"),
			"severity":  pickPercentile(s, []int{2, 15, 50, 85}, "critical", "high", "medium", "low", "info"),
			"scored":    true,
			"message":   fmt.Sprintf("generated result %d", j),
			"timestamp": map[string]any{"seconds": int64(1_700_000_000 + i), "nanos": int64(0)},
		}
		if j%2 == 1 {
			cve := fmt.Sprintf("CVE-2024-%d", (i*7+j)%500)
			score := fmt.Sprintf("%.1f", float64(c)/10)
			result["policy"], result["source"] = cve, "Trivy"
			result["properties"] = map[string]any{
				"score": score, "nvd.v3_score": score, "InstalledVersion": fmt.Sprintf("1.0.%d", j),
				"FixedVersion": fmt.Sprintf("1.1.%d", j), "VulnerabilityID": cve,
			}
		} else {
			result["policy"], result["source"] = fmt.Sprintf("policy-%d", (i+j)%200), "kyverno"
			result["properties"] = map[string]any{"category": "Pod Security"}
		}
		results = append(results, result)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2",
		"kind":       "PolicyReport",
		"metadata":   map[string]any{"name": fmt.Sprintf("rep-%d", i), "namespace": ns},
		"scope": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "name": fmt.Sprintf("pod-%d", i), "namespace": ns,
			"uid": fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		},
		"summary": map[string]any{"pass": int64(7), "fail": int64(2), "warn": int64(1)},
		"results": results,
	}}
}

// pickPercentile returns values[k] for the first bound p is below, the last value otherwise.
func pickPercentile(p int, bounds []int, values ...string) string {
	for k, bound := range bounds {
		if p < bound {
			return values[k]
		}
	}
	return values[len(values)-1]
}
