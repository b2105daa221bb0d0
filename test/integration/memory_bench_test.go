package integration

// BenchmarkServerMemory: the memory of a server process over a large store (docs/benchmarks.md,
// "Server memory"). The reports are loaded with SQL (memory_load_test.go); the server runs as a
// separate OS process built from ./cmd/reports-server, one fresh process per scenario, and its
// peak RSS is the kernel's (/proc/<pid>/status VmHWM).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/procstat"
)

// Environment of BenchmarkServerMemory.
const (
	// memReportsEnv: comma-separated numbers of stored reports (default memDefaultReports).
	memReportsEnv = "MEMORY_BENCH_REPORTS"
	// memWritesEnv: reports created by the creates and creates-watched scenarios (default 2,000).
	memWritesEnv = "MEMORY_BENCH_WRITES"
	// memDatabaseEnv: a database to load into and keep (instead of a fresh one per size that is
	// dropped afterwards), so a large load can be measured again. Only with one size; it must be
	// empty or hold this benchmark's load of that size (plus what earlier runs created).
	memDatabaseEnv = "MEMORY_BENCH_DATABASE_URL"
	// memGoMemLimitEnv: the server's GOMEMLIMIT (default: unset, so the server's own --memory-limit
	// default applies, as deployed; "off": none).
	memGoMemLimitEnv = "MEMORY_BENCH_GOMEMLIMIT"
	// memMaxItemsEnv: list-all, list-selector and watchlist-full stop after this many objects
	// (default: all). A paged list's memory is per page, so a prefix of a 10^6-report list shows
	// its steady state at a fraction of the time.
	memMaxItemsEnv = "MEMORY_BENCH_MAX_ITEMS"
	// memServerBinEnv: a reports-server binary to run instead of building ./cmd/reports-server.
	memServerBinEnv = "MEMORY_BENCH_SERVER_BIN"
	// memProfileEnv: a directory to save the server's heap profile in, taken when the sampled
	// heap reaches a new peak (at most every 3 s), one file per size and scenario.
	memProfileEnv = "MEMORY_BENCH_PROFILE_DIR"

	memDefaultReports = 2_000
	// memWatchers and memWatchWrites: the watches scenario opens memWatchers watches of every
	// policy report and creates memWatchWrites reports, each an event for every watcher.
	memWatchers    = 100
	memWatchWrites = 500
	// memWriters create concurrently in the creates and watches scenarios.
	memWriters = 16
	// memPage is kubectl's default --chunk-size.
	memPage = 500
	// memTierSelector picks a tenth of the loaded reports.
	memTierSelector = memTierLabel + "=t3"
)

// memRunID keeps the names of reports created by different runs on a kept database apart.
var memRunID = time.Now().Unix()

// memMaxItems is MEMORY_BENCH_MAX_ITEMS (0: no limit).
var memMaxItems int

var memGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// BenchmarkServerMemory measures the peak resident memory (VmHWM), the peak anonymous resident
// memory (RssAnon, without the binary's file-backed pages; sampled every 200 ms) and the peak Go
// heap in use (sampled from the server's /metrics every 200 ms) of a `reports-server serve --standalone` process while
// clients drive the heavy paths over HTTPS, with MEMORY_BENCH_REPORTS policy reports stored
// (Kyverno-style, 20 results, ~10 KB of JSON each, 1,000 namespaces; loaded with SQL as the
// storage writes them, see memLoad). Each scenario runs against a fresh server process, with its
// default garbage collector settings, as deployed (--memory-limit, --gc-percent):
//
//	MEMORY_BENCH_REPORTS=10000,100000 go test ./test/integration -run '^$' -bench ServerMemory -benchtime 1x -timeout 3h -v
//
// The scenarios:
//   - idle: started, 5 s without requests;
//   - list-all: every report in pages of 500 (kubectl get policyreports -A, default chunk size);
//   - list-selector: the same with a label selector that matches a tenth of them;
//   - watches-100: 100 watches of every report from the current revision, while 16 writers
//     create 500 reports (50,000 events);
//   - informer-metadata: a metadata-only shared informer over all namespaces (what Kyverno's
//     report controllers run), managedFields stripped in the client, until synced;
//   - watchlist-full: the first request of a full-object informer (client-go >= 1.35 streams
//     the initial state with sendInitialEvents) read to its initial-events-end bookmark and
//     discarded, so the client does not hold 10^6 reports;
//   - creates: 16 writers create MEMORY_BENCH_WRITES reports;
//   - creates-watched: the same while one watch of every report is open;
//   - list-unpaged: every report in one response (a List without limit), up to 20,000 reports;
//   - all: list-all, list-selector, watches-100, informer-metadata and creates at once.
func BenchmarkServerMemory(b *testing.B) {
	sizes, err := memEnvInts(memReportsEnv, []int{memDefaultReports})
	if err != nil {
		b.Fatal(err)
	}
	writes, err := memEnvInts(memWritesEnv, []int{2_000})
	if err != nil {
		b.Fatal(err)
	}
	keep := os.Getenv(memDatabaseEnv)
	if keep != "" && len(sizes) != 1 {
		b.Fatalf("%s needs exactly one size in %s", memDatabaseEnv, memReportsEnv)
	}
	maxItems, err := memEnvInts(memMaxItemsEnv, []int{0})
	if err != nil {
		b.Fatal(err)
	}
	memMaxItems = maxItems[0]
	bin := memBuildServer(b)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("reports=%d", n), func(b *testing.B) {
			url := keep
			if url == "" {
				url = dbtest.URL(b)
			}
			memLoad(b, bin, url, n)
			for _, sc := range memScenarios(n, writes[0]) {
				b.Run(sc.name, func(b *testing.B) {
					p := memStart(b, bin, url)
					idle := p.rss(b)
					smp := p.sample(b, fmt.Sprintf("%d-%s", n, sc.name))
					var items int
					start := time.Now()
					for b.Loop() {
						items = sc.run(b, p)
					}
					elapsed := time.Since(start)
					peakHeap, peakAnon := smp.stop()
					hwm := p.rss(b).Peak
					p.stop(b)
					b.ReportMetric(float64(idle.RSS)/(1<<20), "idle-RSS-MB")
					b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MB")
					b.ReportMetric(float64(peakAnon)/(1<<20), "peak-anon-MB")
					b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
					b.ReportMetric(float64(items), "items")
					b.ReportMetric(float64(items)/elapsed.Seconds(), "items/s")
				})
			}
		})
	}
}

// memScenario is one workload; run returns the objects it read or wrote.
type memScenario struct {
	name string
	run  func(b *testing.B, p *memProcess) int
}

func memScenarios(n, writes int) []memScenario {
	var created atomic.Int64 // names of created reports stay unique across scenarios
	create := func(b *testing.B, p *memProcess, count int) int {
		base := int(created.Add(int64(count))) - count
		return p.create(b, base, count)
	}
	return []memScenario{
		{"idle", func(b *testing.B, p *memProcess) int { time.Sleep(5 * time.Second); return 0 }},
		{"list-all", func(b *testing.B, p *memProcess) int { return p.list(b, "") }},
		{"list-selector", func(b *testing.B, p *memProcess) int { return p.list(b, memTierSelector) }},
		{"watches-100", func(b *testing.B, p *memProcess) int {
			return p.watches(b, memWatchers, func() { create(b, p, memWatchWrites) }, memWatchWrites)
		}},
		{"informer-metadata", func(b *testing.B, p *memProcess) int { return p.metadataInformer(b) }},
		{"watchlist-full", func(b *testing.B, p *memProcess) int { return p.watchList(b) }},
		{"creates", func(b *testing.B, p *memProcess) int { return create(b, p, writes) }},
		// The creates with one watcher: while any watch is open the follower keeps recent
		// changes in its memory window (up to pgstorage.DefaultWindowBytes).
		{"creates-watched", func(b *testing.B, p *memProcess) int {
			return p.watches(b, 1, func() { create(b, p, writes) }, writes)
		}},
		// Not a client's default (kubectl and informers page), but any List without a limit: the
		// server reads it whole, up to --max-unpaged-list-bytes, and refuses it beyond (a 4xx
		// telling the client to page, counted as 0 items), so it runs at every size.
		{"list-unpaged", func(b *testing.B, p *memProcess) int { return p.listUnpaged(b) }},
		{"all", func(b *testing.B, p *memProcess) int {
			var total atomic.Int64
			var wg sync.WaitGroup
			for _, fn := range []func() int{
				func() int { return p.list(b, "") },
				func() int { return p.list(b, memTierSelector) },
				func() int { return p.metadataInformer(b) },
				func() int {
					return p.watches(b, memWatchers, func() { create(b, p, memWatchWrites) }, memWatchWrites)
				},
				func() int { return create(b, p, writes) },
			} {
				wg.Go(func() { total.Add(int64(fn())) })
			}
			wg.Wait()
			return int(total.Load())
		}},
	}
}

func memEnvInts(name string, def []int) ([]int, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s: %q is not a count", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// memBuildServer builds cmd/reports-server into a temporary directory (or returns
// MEMORY_BENCH_SERVER_BIN).
func memBuildServer(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv(memServerBinEnv); bin != "" {
		return bin
	}
	return buildServer(b, b.TempDir())
}

// memProcess is a running `reports-server serve --standalone` and clients of it.
type memProcess struct {
	*process
	cfg     *rest.Config
	raw     rest.Interface
	dynamic dynamic.Interface
}

// memStart starts the server binary on url and waits until it is ready.
func memStart(b testing.TB, bin, url string) *memProcess {
	b.Helper()
	var env []string
	if limit := os.Getenv(memGoMemLimitEnv); limit != "" {
		env = append(env, "GOMEMLIMIT="+limit)
	}
	p := &memProcess{process: startCommand(b, []string{"DATABASE_URL", "GOMEMLIMIT", "GOGC"}, env, bin,
		"serve", "--standalone", "--secure-port", "0", "--data-dir", filepath.Join(b.TempDir(), "data"), "--database-url", url)}
	var kubeconfig string
	p.mu.Lock()
	for _, line := range p.stdout {
		if k, ok := strings.CutPrefix(line, "kubeconfig: "); ok {
			kubeconfig = k
		}
	}
	p.mu.Unlock()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	p.cfg = cfg
	cs, err := kubernetes.NewForConfig(p.cfg)
	if err != nil {
		b.Fatal(err)
	}
	p.raw = cs.Discovery().RESTClient()
	if p.dynamic, err = dynamic.NewForConfig(p.cfg); err != nil {
		b.Fatal(err)
	}
	return p
}

// logTail is the end of the server's log.
func (p *memProcess) logTail() string { return p.stderr(8 << 10) }

// stop sends SIGTERM and waits for the exit.
func (p *memProcess) stop(b testing.TB) {
	b.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		b.Errorf("reports-server did not stop within 90s of SIGTERM")
	}
}

// alive fails b when the server has exited (it may have been killed for its memory).
func (p *memProcess) alive(b testing.TB) {
	b.Helper()
	select {
	case <-p.done:
		b.Fatalf("reports-server exited: %v\n%s", p.waitErr, p.logTail())
	default:
	}
}

// rss reads the process's resident memory (procstat.Memory: now, peak and anonymous).
func (p *memProcess) rss(b testing.TB) procstat.Memory {
	b.Helper()
	p.alive(b)
	m, err := p.readRSS()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func (p *memProcess) readRSS() (procstat.Memory, error) {
	return procstat.ReadMemory(p.cmd.Process.Pid)
}

// heapInuse reads go_memstats_heap_inuse_bytes from the server's /metrics.
func (p *memProcess) heapInuse(ctx context.Context) (int64, error) {
	body, err := p.raw.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_inuse_bytes in /metrics")
}

// memSampler polls the server's heap while a scenario runs.
type memSampler struct {
	cancel   context.CancelFunc
	done     chan struct{}
	peak     atomic.Int64 // heap in use
	peakAnon atomic.Int64 // RssAnon
}

// sample starts polling the heap every 200 ms; with MEMORY_BENCH_PROFILE_DIR it also saves a
// heap profile (<dir>/<name>-heap.pb.gz) whenever the heap reaches a new peak, at most every 3 s.
// Every minute it prints the peaks so far to stderr (benchmark logs appear only at the end).
func (p *memProcess) sample(b testing.TB, name string) *memSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &memSampler{cancel: cancel, done: make(chan struct{})}
	profileDir := os.Getenv(memProfileEnv)
	go func() {
		defer close(s.done)
		var lastProfile time.Time
		var profiled int64
		start, lastProgress := time.Now(), time.Now()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if h, err := p.heapInuse(ctx); err == nil && h > s.peak.Load() {
				s.peak.Store(h)
				if profileDir != "" && h > profiled+profiled/20 && time.Since(lastProfile) > 3*time.Second {
					if prof, err := p.raw.Get().AbsPath("/debug/pprof/heap").DoRaw(ctx); err == nil {
						if err := os.WriteFile(filepath.Join(profileDir, name+"-heap.pb.gz"), prof, 0o644); err == nil {
							profiled, lastProfile = h, time.Now()
						}
					}
				}
			}
			if m, err := p.readRSS(); err == nil && m.Anon > s.peakAnon.Load() {
				s.peakAnon.Store(m.Anon)
			}
			if time.Since(lastProgress) > time.Minute {
				lastProgress = time.Now()
				if m, err := p.readRSS(); err == nil {
					fmt.Fprintf(os.Stderr, "membench %s: %v: peak heap %.1f MB, peak RSS %.1f MB\n",
						name, time.Since(start).Round(time.Second), float64(s.peak.Load())/(1<<20), float64(m.Peak)/(1<<20))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak heap and anonymous RSS seen.
func (s *memSampler) stop() (heap, anon int64) {
	s.cancel()
	<-s.done
	return s.peak.Load(), s.peakAnon.Load()
}

// list pages through every policy report (matching selector) as kubectl does and returns how
// many it got. Items are decoded only as far as their names.
func (p *memProcess) list(b testing.TB, selector string) int {
	ctx := context.Background()
	var items int
	cont := ""
	for {
		req := p.raw.Get().AbsPath("/apis", memGVR.Group, memGVR.Version, memGVR.Resource).
			Param("limit", strconv.Itoa(memPage))
		if cont != "" {
			req = req.Param("continue", cont)
		}
		if selector != "" {
			req = req.Param("labelSelector", selector)
		}
		body, err := req.Stream(ctx)
		if err != nil {
			p.alive(b)
			b.Fatalf("list: %v", err)
		}
		var page struct {
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"items"`
		}
		err = json.NewDecoder(body).Decode(&page)
		body.Close()
		if err != nil {
			b.Fatalf("list: decode page: %v", err)
		}
		items += len(page.Items)
		if cont = page.Metadata.Continue; cont == "" || (memMaxItems > 0 && items >= memMaxItems) {
			return items
		}
	}
}

// listUnpaged lists every policy report in one response (no limit) and returns how many.
func (p *memProcess) listUnpaged(b testing.TB) int {
	body, err := p.raw.Get().AbsPath("/apis", memGVR.Group, memGVR.Version, memGVR.Resource).Stream(context.Background())
	if apierrors.IsBadRequest(err) {
		b.Logf("unpaged list refused: %v", err)
		return 0
	}
	if err != nil {
		p.alive(b)
		b.Fatalf("list: %v", err)
	}
	defer body.Close()
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.NewDecoder(body).Decode(&list); err != nil {
		b.Fatalf("list: decode: %v", err)
	}
	return len(list.Items)
}

// currentRV is the resourceVersion of a one-item list.
func (p *memProcess) currentRV(b testing.TB) string {
	l, err := p.dynamic.Resource(memGVR).List(context.Background(), metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	return l.GetResourceVersion()
}

// watches opens n watches of every policy report from the current revision, runs write (which
// creates want reports) and waits until every watcher has seen want ADDED events. It returns the
// events received.
func (p *memProcess) watches(b testing.TB, n int, write func(), want int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rv := p.currentRV(b)
	var received atomic.Int64
	var wg sync.WaitGroup
	ready := make(chan error, n)
	for range n {
		wg.Go(func() {
			body, err := p.raw.Get().AbsPath("/apis", memGVR.Group, memGVR.Version, memGVR.Resource).
				Param("watch", "true").Param("resourceVersion", rv).Param("allowWatchBookmarks", "true").Stream(ctx)
			ready <- err
			if err != nil {
				return
			}
			defer body.Close()
			dec := json.NewDecoder(body)
			for seen := 0; seen < want; {
				var ev struct {
					Type string `json:"type"`
				}
				if err := dec.Decode(&ev); err != nil {
					if ctx.Err() == nil {
						b.Errorf("watch: %v", err)
					}
					return
				}
				if ev.Type == "ADDED" {
					seen++
					received.Add(1)
				}
			}
		})
	}
	for range n {
		if err := <-ready; err != nil {
			b.Fatalf("watch: %v", err)
		}
	}
	write()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Minute):
		cancel()
		<-finished
		b.Errorf("watches: %d of %d events after 10 minutes", received.Load(), n*want)
	}
	return int(received.Load())
}

// metadataInformer runs a metadata-only shared informer of every policy report (Kyverno's report
// controllers watch reports this way), strips managedFields as Kyverno's transform does, and
// returns how many objects it held once synced.
func (p *memProcess) metadataInformer(b testing.TB) int {
	client, err := metadata.NewForConfig(p.cfg)
	if err != nil {
		b.Fatal(err)
	}
	informer := metadatainformer.NewFilteredMetadataInformer(client, memGVR, metav1.NamespaceAll, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil).Informer()
	if err := informer.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { informer.Run(stop); close(done) }()
	defer func() { close(stop); <-done }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		p.alive(b)
		b.Fatal("metadata informer did not sync")
	}
	return len(informer.GetStore().ListKeys())
}

// watchList sends a full-object informer's first request (a watch that streams the initial state,
// ended by a bookmark) and reads it to that bookmark, decoding each event only as far as its type
// and annotations. It returns the ADDED events.
func (p *memProcess) watchList(b testing.TB) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body, err := p.raw.Get().AbsPath("/apis", memGVR.Group, memGVR.Version, memGVR.Resource).
		Param("watch", "true").Param("sendInitialEvents", "true").Param("allowWatchBookmarks", "true").
		Param("resourceVersionMatch", "NotOlderThan").Stream(ctx)
	if err != nil {
		b.Fatalf("watch-list: %v", err)
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	var added int
	for {
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			p.alive(b)
			b.Fatalf("watch-list after %d objects: %v", added, err)
		}
		switch ev.Type {
		case "ADDED":
			if added++; memMaxItems > 0 && added >= memMaxItems {
				return added
			}
		case "BOOKMARK":
			if ev.Object.Metadata.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
				return added
			}
		default:
			b.Fatalf("watch-list: unexpected %s event", ev.Type)
		}
	}
}

// create makes count new reports (names new-<run>-<base>..) with memWriters writers and returns count.
func (p *memProcess) create(b testing.TB, base, count int) int {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range memWriters {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				r := memReport(base+i, fmt.Sprintf("new-%d-%d", memRunID, base+i), memNamespace(base+i))
				if _, err := p.dynamic.Resource(memGVR).Namespace(r.GetNamespace()).Create(ctx, r, metav1.CreateOptions{}); err != nil {
					b.Errorf("create: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		p.alive(b)
		b.FailNow()
	}
	return count
}
