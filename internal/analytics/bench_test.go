package analytics_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/analytics"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/db"
)

// BenchmarkAnalyticQueries measures two analyst questions on 10^6 results (10^5 reports of ten
// results; ANALYTICS_BENCH_REPORTS changes the number of reports) answered by the reporting
// schema, next to the status quo: listing every report through the storage (pages of 500, as a
// client pages through the API, decoded into the Go types) and filtering in the client.
//
//	go test ./internal/analytics -run '^$' -bench AnalyticQueries -benchtime 20x -timeout 60m
//
// The reports are inserted by one SQL statement per 10^4 reports, exactly as the storage stores
// them (object, change log, revision): writing 10^5 reports through the API would take minutes and
// measure the write path, not the queries. Setup times (projection, refresh) are logged.
func BenchmarkAnalyticQueries(b *testing.B) {
	reportsN := benchReports(b, 100_000)
	e := newEnv(b)
	start := time.Now()
	const chunk = 10_000
	for done := 0; done < reportsN; done += chunk {
		if _, err := e.pool.Exec(e.ctx, strings.Replace(generateSQL, "generate_series(1, $2::bigint)",
			fmt.Sprintf("generate_series(%d, %d + $2::bigint - 1)", done+1, done+1), 1), "bench", min(chunk, reportsN-done), 10); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d reports inserted in %v", reportsN, time.Since(start))
	svc := analytics.New(e.pool, nil, analytics.Config{})
	start = time.Now()
	if ran, err := svc.ProjectOnce(e.ctx); err != nil || !ran {
		b.Fatalf("project: %v %v", ran, err)
	}
	b.Logf("projection (full rebuild) of %d results: %v", reportsN*10, time.Since(start))
	start = time.Now()
	if ran, err := svc.RefreshOnce(e.ctx); err != nil || !ran {
		b.Fatalf("refresh: %v %v", ran, err)
	}
	b.Logf("refresh of the four summaries: %v", time.Since(start))
	if _, err := e.pool.Exec(e.ctx, "VACUUM ANALYZE analytics_results, analytics_reports, analytics_outcomes"); err != nil {
		b.Fatal(err)
	}

	// The documented queries (docs/sql.md), run as reports_reader.
	queries := map[string]string{}
	for _, q := range docQueries(b) {
		queries[q.title] = q.sql
	}
	sqlBench := func(title string) func(b *testing.B) {
		return func(b *testing.B) {
			q, ok := queries[title]
			if !ok {
				b.Fatalf("no query %q in docs/sql.md", title)
			}
			var rows int
			for b.Loop() {
				asReader(e.ctx, b, e.pool, func(tx pgx.Tx) {
					// Decode every row, as a client does; no further work.
					r, err := tx.Query(e.ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					rows = 0
					for r.Next() {
						if _, err := r.Values(); err != nil {
							b.Fatal(err)
						}
						rows++
					}
					if err := r.Err(); err != nil {
						b.Fatal(err)
					}
				})
			}
			b.ReportMetric(float64(rows), "rows")
		}
	}
	st := e.store("bench", e.kind(kyvernoReport("x", 0, 0)))
	// listAll pages through every policy report as a client of the API would, and calls fn with
	// each result.
	listAll := func(b *testing.B, fn func(ns string, r *wgpolicyv1alpha2.PolicyReportResult)) {
		cont := ""
		for {
			list := &wgpolicyv1alpha2.PolicyReportList{}
			err := st.GetList(e.ctx, "/wgpolicyk8s.io/policyreports", storage.ListOptions{
				Recursive: true,
				Predicate: storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything(), Limit: 500, Continue: cont},
			}, list)
			if err != nil {
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
	b.Run("cvss8-with-fix/sql", sqlBench("Vulnerabilities with CVSS 8.0 or more that have a fix"))
	// The alternative to the projected table: a view that flattens the stored reports at query
	// time (what reporting.results would be as a plain view). No index can serve its filter.
	b.Run("cvss8-with-fix/sql-unnest-view", func(b *testing.B) {
		q := `SELECT f.cluster, f.namespace, f.resource_kind, f.resource_name,
		             coalesce(f.properties->>'VulnerabilityID', f.policy) AS vulnerability, f.score,
		             f.properties->>'InstalledVersion', f.properties->>'FixedVersion'
		      FROM reports r CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) f
		      WHERE f.score >= 8.0 AND f.properties->>'FixedVersion' <> ''
		      ORDER BY f.score DESC, f.cluster, f.namespace, f.resource_name, vulnerability`
		var rows int
		for b.Loop() {
			r, err := e.pool.Query(e.ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			rows = 0
			for r.Next() {
				if _, err := r.Values(); err != nil {
					b.Fatal(err)
				}
				rows++
			}
			if err := r.Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rows), "rows")
	})
	b.Run("cvss8-with-fix/list-and-filter", func(b *testing.B) {
		var n int
		for b.Loop() {
			n = 0
			listAll(b, func(_ string, r *wgpolicyv1alpha2.PolicyReportResult) {
				score, err := strconv.ParseFloat(strings.TrimSpace(r.Properties["score"]), 64)
				if err != nil {
					score, err = strconv.ParseFloat(r.Properties["nvd.v3_score"], 64)
				}
				if err == nil && score >= 8 && r.Properties["FixedVersion"] != "" {
					n++
				}
			})
		}
		b.ReportMetric(float64(n), "rows")
	})
	b.Run("critical-per-namespace/sql-results", sqlBench("Critical findings per namespace, live"))
	b.Run("critical-per-namespace/sql-summary", sqlBench("Namespaces by critical findings"))
	b.Run("critical-per-namespace/list-and-filter", func(b *testing.B) {
		var n int
		for b.Loop() {
			perNS := map[string]int{}
			listAll(b, func(ns string, r *wgpolicyv1alpha2.PolicyReportResult) {
				if r.Severity != nil && *r.Severity == "critical" && (r.Result == nil || *r.Result == "fail" || *r.Result == "warn" || *r.Result == "error") {
					perNS[ns]++
				}
			})
			n = len(perNS)
		}
		b.ReportMetric(float64(n), "rows")
	})
}

// benchTrigger is the alternative to the projector, for BenchmarkWritePath only: flatten in the
// write transaction itself, into a table of one wide row per result with the indexes the
// projection had when the trigger was measured (migration 00006).
const benchTrigger = `
CREATE TABLE bench_results (LIKE analytics_flattened INCLUDING ALL, PRIMARY KEY (cluster, key, result_index));
CREATE INDEX ON bench_results (severity, result, namespace);
CREATE INDEX ON bench_results (result, severity);
CREATE INDEX ON bench_results (policy, result);
CREATE INDEX ON bench_results (namespace, severity);
CREATE INDEX ON bench_results (resource_kind, resource_name);
CREATE INDEX ON bench_results (resource_name);
CREATE INDEX ON bench_results (score) WHERE score IS NOT NULL;
CREATE INDEX ON bench_results (cluster, report_namespace, key, result_index);
CREATE FUNCTION bench_flatten_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM bench_results WHERE cluster = OLD.cluster AND key = OLD.key;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO bench_results SELECT * FROM analytics_flatten(NEW.cluster, NEW.key, NEW.resource_version, NEW.object);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_flatten AFTER INSERT OR UPDATE OR DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION bench_flatten_trigger();`

// writeSetup prepares a fresh database for a write benchmark in mode "baseline" (no analytics),
// "projector" (the service running in this process, woken by NOTIFY; its ProjectInterval from
// $ANALYTICS_BENCH_PROJECT_INTERVAL, default 100ms) or "trigger" (results flattened by a trigger
// inside every write transaction).
func writeSetup(ctx context.Context, b *testing.B, e *env, mode string) {
	switch mode {
	case "projector":
		notifier := db.NewNotifier(e.pool, nil)
		go notifier.Run(ctx)
		cfg := analytics.Config{}
		if s := os.Getenv("ANALYTICS_BENCH_PROJECT_INTERVAL"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				b.Fatal(err)
			}
			cfg.ProjectInterval = d
		}
		go analytics.New(e.pool, notifier, cfg).Run(ctx)
	case "trigger":
		if _, err := e.pool.Exec(ctx, benchTrigger); err != nil {
			b.Fatal(err)
		}
	}
}

// waitProjected waits until the projector has caught up and reports how long that took.
func waitProjected(b *testing.B, e *env) {
	start := time.Now()
	for {
		var pending int64
		err := e.pool.QueryRow(e.ctx, "SELECT coalesce(sum(pending_revisions), 0)::bigint FROM reporting.refresh_status WHERE object = 'results'").Scan(&pending)
		if err != nil {
			b.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("projector still %d revisions behind", pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "catch-up-ms")
}

// BenchmarkWriteLatency measures the latency of report creation at a steady offered load well
// below saturation (300 writes/s from 16 writers), in the three modes of BenchmarkWritePath: what
// a write costs its client when the database is not the bottleneck.
//
//	go test ./internal/analytics -run '^$' -bench WriteLatency -benchtime 3000x
func BenchmarkWriteLatency(b *testing.B) {
	const rate, writers = 300, 16
	for _, mode := range []string{"baseline", "projector", "trigger"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			writeSetup(ctx, b, e, mode)
			st := e.store("bench", e.kind(benchReport()))
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						// Write i is due at start + i/rate.
						if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
							time.Sleep(d)
						}
						obj := benchReport()
						md := asMap(obj["metadata"])
						md["name"] = fmt.Sprintf("r-%d", i)
						md["namespace"] = fmt.Sprintf("ns-%d", i%50)
						t0 := time.Now()
						if err := st.Create(ctx, e.key(obj), e.typed(obj), nil, 0); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			if mode == "projector" {
				waitProjected(b, e)
			}
		})
	}
}

// BenchmarkWritePath measures report creation through pgstorage.Store (16 concurrent writers,
// 20-result reports, every write durable before it returns) in three set-ups: no analytics;
// the projector running (woken by NOTIFY, in the same process, on the same database); and the
// rejected alternative, a trigger that flattens results inside every write transaction.
//
//	go test ./internal/analytics -run '^$' -bench WritePath -benchtime 5000x
func BenchmarkWritePath(b *testing.B) {
	for _, mode := range []string{"baseline", "projector", "trigger"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			writeSetup(ctx, b, e, mode)
			tmpl := benchReport()
			st := e.store("bench", e.kind(tmpl))
			var n atomic.Int64
			b.SetParallelism(8) // 16 writers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					obj := benchReport()
					md := asMap(obj["metadata"])
					md["name"] = fmt.Sprintf("r-%d", i)
					md["namespace"] = fmt.Sprintf("ns-%d", i%50)
					if err := st.Create(ctx, e.key(obj), e.typed(obj), nil, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			if mode == "projector" {
				waitProjected(b, e) // how far behind the results were when the writers stopped
			}
		})
	}
}

// benchReport is a Kyverno-style policy report of 20 results (~10 KB of JSON, the size the
// storage benchmark uses).
func benchReport() map[string]any {
	var results []any
	for j := range 20 {
		results = append(results, map[string]any{
			"policy": fmt.Sprintf("policy-%d", j), "rule": fmt.Sprintf("rule-%d", j), "result": []string{"pass", "fail", "warn"}[j%3],
			"severity": []string{"critical", "high", "medium", "low", "info"}[j%5], "scored": true, "source": "kyverno",
			"category":   "Pod Security Standards (Restricted)",
			"message":    strings.Repeat(fmt.Sprintf("validation rule 'rule-%d' failed: the container must set securityContext. ", j), 4),
			"timestamp":  map[string]any{"seconds": int64(1700000000 + j), "nanos": int64(0)},
			"properties": map[string]any{"process": "background scan", "index": strconv.Itoa(j)},
		})
	}
	return map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": "r", "namespace": "ns", "labels": map[string]any{"app.kubernetes.io/managed-by": "kyverno"}},
		"scope":    map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "ns", "uid": "2c0fd4b2-0c5a-4c59-9a7e-0a5a4f6b1f00"},
		"summary":  map[string]any{"pass": int64(7), "fail": int64(7), "warn": int64(6)},
		"results":  results,
	}
}

// BenchmarkProjectionJIT times the projector with PostgreSQL's JIT compilation off, as the
// server's sessions run (db.ParseConfig), and on, PostgreSQL's default: a rebuild of every
// report's results (then ANALYZE of the tables, as after every rebuild), and one batch of 1,000
// changed reports, the most a batch takes. Each of the 1,500 reports (ANALYTICS_BENCH_REPORTS
// changes the number) has 20 results, its own subject and timestamps. A statement whose estimated
// cost passes jit_above_cost is compiled first.
//
//	go test ./internal/analytics -run '^$' -bench ProjectionJIT -benchtime 3x
func BenchmarkProjectionJIT(b *testing.B) {
	n := benchReports(b, 1500)
	e := newEnv(b)
	objs := make([]map[string]any, n)
	for i := range objs {
		obj := benchReport()
		md := asMap(obj["metadata"])
		md["name"], md["namespace"] = fmt.Sprintf("r-%d", i), fmt.Sprintf("ns-%d", i%50)
		scope := asMap(obj["scope"])
		scope["name"], scope["namespace"], scope["uid"] = fmt.Sprintf("web-%d", i), md["namespace"], fmt.Sprintf("uid-%d", i)
		for j, r := range obj["results"].([]any) {
			asMap(r)["timestamp"] = map[string]any{"seconds": int64(1700000000 + 20*i + j), "nanos": int64(0)}
		}
		objs[i] = obj
	}
	e.createAll("bench", objs)
	// As in a running server, whose statistics keeper analyzes reports after a bulk load (and
	// autovacuum the change log): the costs JIT is decided on come from these statistics.
	if _, err := e.pool.Exec(e.ctx, "ANALYZE reports, changes"); err != nil {
		b.Fatal(err)
	}
	batch := min(1000, n)
	for _, jit := range []string{"off", "on"} {
		u, err := url.Parse(e.url)
		if err != nil {
			b.Fatal(err)
		}
		q := u.Query()
		q.Set("jit", jit)
		u.RawQuery = q.Encode()
		pool, err := db.Open(e.ctx, u.String())
		if err != nil {
			b.Fatal(err)
		}
		svc := analytics.New(pool, nil, analytics.Config{})
		for _, tc := range []struct{ name, reset string }{
			{"rebuild", "DELETE FROM analytics_checkpoints"},
			{fmt.Sprintf("batch-%d", batch), fmt.Sprintf("UPDATE analytics_checkpoints SET revision = revision - %d", batch)},
		} {
			b.Run("jit="+jit+"/"+tc.name, func(b *testing.B) {
				if ran, err := svc.ProjectOnce(e.ctx); err != nil || !ran {
					b.Fatalf("project: %v %v", ran, err)
				}
				for range b.N {
					b.StopTimer()
					if _, err := pool.Exec(e.ctx, tc.reset); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if ran, err := svc.ProjectOnce(e.ctx); err != nil || !ran {
						b.Fatalf("project: %v %v", ran, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/projection")
			})
		}
		pool.Close()
	}
}

// benchReports is how many reports a benchmark loads: $ANALYTICS_BENCH_REPORTS, else def.
func benchReports(b *testing.B, def int) int {
	s := os.Getenv("ANALYTICS_BENCH_REPORTS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("ANALYTICS_BENCH_REPORTS: %v", err)
	}
	return n
}
