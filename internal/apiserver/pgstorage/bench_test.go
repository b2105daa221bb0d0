package pgstorage_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// BenchmarkCreate measures create throughput through storage.Interface with concurrent writers,
// for objects about the size of a 20-result policy report (~10 KB of JSON).
// Run: go test ./internal/apiserver/pgstorage -run '^$' -bench Create -benchtime 5000x
func BenchmarkCreate(b *testing.B) {
	ctx, s := newStore(b)
	payload := strings.Repeat("x", 10_000)
	var n atomic.Int64
	b.SetParallelism(8) // 8 writers per core
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			p := &example.Pod{ObjectMeta: metav1.ObjectMeta{
				Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("p%d", i),
				Labels: map[string]string{"app": "bench"}, Annotations: map[string]string{"payload": payload},
			}}
			if err := s.Create(ctx, "/pods/"+p.Namespace+"/"+p.Name, p, nil, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkWritesWithIdleWatchers measures create throughput as BenchmarkCreate does, with 0 or
// 1,000 idle watchers open on the resource: each on a namespace no write goes to, or all on the
// written range with a label selector no write matches (one shared selector, or one per watcher
// as Kyverno's per-resource watches have). The follower wakes a watcher only for changes in its
// key range that carry the label value its selector requires. With the shared fan-out the follower reads each change
// once, whatever the number of watchers; reads/write counts every change-log query (follower
// and watchers).
// Run: go test ./internal/apiserver/pgstorage -run '^$' -bench WritesWithIdleWatchers -benchtime 5000x
func BenchmarkWritesWithIdleWatchers(b *testing.B) {
	for _, tc := range []struct {
		name     string
		watchers int
		selector string
	}{
		{"watchers=0", 0, ""},
		{"watchers=1000/other-namespaces", 1000, ""},
		{"watchers=1000/same-range-selector", 1000, "app=other"},
		// Kyverno's pattern: one watcher per resource, audit.kyverno.io/resource.uid=<uid>.
		{"watchers=1000/same-range-distinct-selectors", 1000, "uid=w%d"},
	} {
		watchers := tc.watchers
		b.Run(tc.name, func(b *testing.B) {
			e := newWatchEnv(b, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
			start := e.current(b)
			for i := range watchers {
				key, pred := fmt.Sprintf("/pods/idle-%d", i), storage.Everything
				if tc.selector != "" {
					sel := tc.selector
					if strings.Contains(sel, "%d") {
						sel = fmt.Sprintf(sel, i)
					}
					key, pred = "/pods/", selector(b, sel, "")
				}
				w, err := e.store.Watch(e.ctx, key, storage.ListOptions{
					ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: pred,
				})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Stop()
			}
			if watchers > 0 {
				e.waitSynced(b, start)
			}
			before := e.follower.Stats()
			payload := strings.Repeat("x", 10_000)
			var n atomic.Int64
			b.SetParallelism(8) // 8 writers per core
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					p := &example.Pod{ObjectMeta: metav1.ObjectMeta{
						Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("p%d", i),
						Labels: map[string]string{"app": "bench", "uid": fmt.Sprintf("p%d", i)}, Annotations: map[string]string{"payload": payload},
					}}
					if err := e.store.Create(e.ctx, "/pods/"+p.Namespace+"/"+p.Name, p, nil, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			if watchers > 0 {
				// Let the follower finish reading, then count its queries and the watchers'.
				e.waitSynced(b, e.current(b))
				after := e.follower.Stats()
				reads := after.FollowerReads - before.FollowerReads + after.LogReads - before.LogReads
				b.ReportMetric(float64(reads)/float64(b.N), "reads/write")
				// Load-independent: how many watchers each write woke (each then takes the
				// follower's read lock, scans the window and matches its predicate).
				b.ReportMetric(float64(after.Wakeups-before.Wakeups)/float64(b.N), "wakeups/write")
			}
		})
	}
}

// BenchmarkListPage measures one page (limit 500) of a list through storage.Interface (no HTTP)
// with LIST_BENCH_REPORTS stored objects (comma-separated sizes; default 10000), loaded in bulk
// with SQL (newListEnv): the first page and a page halfway through (a continuation, at the
// current revision and at one the store has moved past since the first page), of every pod, of
// one namespace, and with label selectors matching a tenth of the pods and a single pod. Besides
// the time it reports what the page's queries touched, from EXPLAIN (ANALYZE, BUFFERS): shared
// buffers and rows, which do not depend on the machine's load (LIST_BENCH_PROBE=0 skips that;
// LIST_BENCH_PLANS=1 logs the plans).
//
//	LIST_BENCH_REPORTS=10000,100000,1000000 go test ./internal/apiserver/pgstorage -run '^$' \
//	    -bench ListPage -benchtime 20x -timeout 2h
func BenchmarkListPage(b *testing.B) {
	sizes := []int{10_000}
	if s := os.Getenv("LIST_BENCH_REPORTS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("LIST_BENCH_REPORTS: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("reports=%d", n), func(b *testing.B) {
			start := time.Now()
			e := newListEnv(b, n)
			b.Logf("loaded %d pods in %v", n, time.Since(start).Round(time.Second))
			for _, c := range listCases(n) {
				b.Run(c.name, func(b *testing.B) {
					var items int
					for b.Loop() {
						items = e.list(b, c)
					}
					b.StopTimer()
					b.ReportMetric(float64(items), "items")
					if os.Getenv("LIST_BENCH_PROBE") == "0" {
						return // no plans: the probe reads each page seven more times
					}
					pc := e.cost(b, c)
					b.ReportMetric(float64(pc.buffers), "buffers")
					b.ReportMetric(float64(pc.rows), "rows")
					if os.Getenv("LIST_BENCH_PLANS") != "" {
						b.Logf("%s:\n%s", c.name, strings.Join(pc.plans, "\n"))
					}
				})
			}
		})
	}
}
