package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/pglocal"
)

// SoakEnv sets the soak's length (a Go duration); the default run takes soakShort. The
// documented soak (docs/operations.md, "Soak") is REPORTS_SOAK=10m.
const SoakEnv = "REPORTS_SOAK"

// SoakProfileEnv, when set, is a directory where the soak saves the server's heap profile at
// each sample (<phase>-<n>.pb.gz), to find what grows (go tool pprof -base first.pb.gz last.pb.gz).
const SoakProfileEnv = "REPORTS_SOAK_PROFILE_DIR"

const (
	soakShort    = 2 * time.Minute
	soakWriters  = 64
	soakWatchers = 200
)

// TestSoak runs the server under a long mixed load: 64 ledger writers (creates, and updates of
// shared names with retries on conflict), churn (creates and deletes in another namespace), 200
// watchers of the ledger's namespace, an informer and a full raw watch, with PostgreSQL stopped
// and restarted in the middle. Afterwards the ledger has lost nothing and the informer, the raw
// watch and every light watcher agree with the change log (see faults_test.go); throughout, the
// server's goroutines, heap and database connections stay flat: no quarter of the run after the
// first holds more than the first quarter's most plus a margin, and once the load has stopped
// they fall back to near where they started. The server is its own process (the built binary,
// with its default garbage collector settings, as deployed): its goroutines and heap come from
// its /metrics, its RSS from /proc, so the test's own records of the run do not count.
//
// It is not parallel: it is the heaviest test, and its timings should not depend on others.
func TestSoak(t *testing.T) {
	length := soakShort
	if v := os.Getenv(SoakEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", SoakEnv, v, err)
		}
		length = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), length+5*time.Minute)
	defer cancel()
	e := newFaultEnv(t, faultSetup{process: true})
	s := &soakSampler{e: e}
	s.sample(ctx, t, "idle before")

	r := startRun(ctx, t, e, soakWriters)
	watchCtx, stopWatchers := context.WithCancel(ctx)
	watchers := make([]*rawWatch, soakWatchers)
	for i := range watchers {
		watchers[i] = &rawWatch{e: e, light: true, done: make(chan struct{})}
		go watchers[i].run(watchCtx, r.from)
	}
	stopAll := sync.OnceFunc(func() {
		stopWatchers()
		for _, w := range watchers {
			<-w.done
		}
	})
	defer stopAll()
	churn := startChurn(e, r.load, kindNamed(t, "Report"))

	// Samples every length/20; the restart at half time.
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		tick := time.NewTicker(length / 20)
		defer tick.Stop()
		for range 20 {
			select {
			case <-tick.C:
				s.sample(ctx, t, r.load.currentPhase())
			case <-ctx.Done():
				return
			}
		}
	}()
	time.Sleep(length / 2)
	r.load.phase.Store("fault")
	stopAndStart(pglocal.Fast)(t, e)
	recoveredIn := r.recover(ctx, t)
	<-sampling
	churned := churn.stop()

	r.verify(ctx, t, false, fmt.Sprintf("%v soak, %d writers, %d watchers; restart in the middle, a write succeeded %v after it; %d churn creates+deletes",
		length, soakWriters, soakWatchers, recoveredIn.Round(time.Millisecond), churned))
	var events int
	for i, w := range watchers {
		w.mu.Lock()
		problems, last, count := w.problems, w.last, w.count
		w.mu.Unlock()
		for _, p := range problems {
			t.Errorf("watcher %d: %s", i, p)
		}
		if want := r.watch.lastRV(); last < want {
			t.Errorf("watcher %d stopped at revision %d, the full raw watch reached %d", i, last, want)
		}
		events += count
	}
	stopAll()
	t.Logf("light watchers received %d events in all", events)

	// Idle again: what the load held is released.
	r.release()
	watchers = nil
	time.Sleep(5 * time.Second)
	s.sample(ctx, t, "idle after")
	s.check(t)
}

// soakSample is the server's goroutines, heap and RSS, and its connections to its database.
type soakSample struct {
	phase       string
	at          time.Duration // since the first sample
	goroutines  int
	heapInuse   uint64
	rss         uint64
	connections int
}

type soakSampler struct {
	e       *faultEnv
	start   time.Time
	mu      sync.Mutex
	samples []soakSample
}

func (s *soakSampler) sample(ctx context.Context, t *testing.T, phase string) {
	if s.start.IsZero() {
		s.start = time.Now()
	}
	got := soakSample{phase: phase, at: time.Since(s.start), connections: -1}
	// A heap profile with gc=1 collects garbage first (the server serves /debug/pprof, as
	// --profiling defaults to), so the heap sampled is the live one.
	if r := s.e.do(ctx, http.MethodGet, "/debug/pprof/heap?gc=1", nil); r.err != nil || r.code != http.StatusOK {
		t.Logf("sample %s: /debug/pprof/heap?gc=1 answered %d %v; the heap sampled includes garbage", phase, r.code, r.err)
	} else if dir := os.Getenv(SoakProfileEnv); dir != "" {
		s.mu.Lock()
		n := len(s.samples)
		s.mu.Unlock()
		name := filepath.Join(dir, fmt.Sprintf("%02d-%s.pb.gz", n, strings.ReplaceAll(phase, " ", "-")))
		if err := os.WriteFile(name, r.body, 0o644); err != nil {
			t.Errorf("save the heap profile: %v", err)
		}
	}
	r := s.e.do(ctx, http.MethodGet, "/metrics", nil)
	if r.err != nil || r.code != http.StatusOK {
		t.Errorf("sample %s: /metrics answered %d %v", phase, r.code, r.err)
		return
	}
	for _, line := range strings.Split(string(r.body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			got.goroutines = int(v)
		case "go_memstats_heap_inuse_bytes":
			got.heapInuse = uint64(v)
		}
	}
	if got.goroutines == 0 || got.heapInuse == 0 {
		t.Errorf("sample %s: no go_goroutines or go_memstats_heap_inuse_bytes in /metrics", phase)
	}
	if m, err := (&memProcess{process: s.e.proc}).readRSS(); err == nil {
		got.rss = uint64(m.RSS)
	}
	// The database may be down (the restart); then the sample has no connection count.
	_ = s.e.admin(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'reports-server%'`).Scan(&got.connections)
	})
	s.mu.Lock()
	s.samples = append(s.samples, got)
	s.mu.Unlock()
}

// check fails when the load's later samples grow beyond its first quarter's, or the idle sample
// after it stays far above the idle sample before it.
func (s *soakSampler) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	for _, x := range s.samples {
		lines = append(lines, fmt.Sprintf("%v %s: %d goroutines, %d MiB heap, %d MiB RSS, %d connections",
			x.at.Round(time.Second), x.phase, x.goroutines, x.heapInuse>>20, x.rss>>20, x.connections))
	}
	t.Logf("samples:\n%s", strings.Join(lines, "\n"))
	load := s.samples[1 : len(s.samples)-1]
	if len(load) < 8 {
		t.Fatalf("only %d samples under load", len(load))
	}
	quarter := len(load) / 4
	var first soakSample
	for _, x := range load[:quarter] {
		first.goroutines = max(first.goroutines, x.goroutines)
		first.heapInuse = max(first.heapInuse, x.heapInuse)
		first.connections = max(first.connections, x.connections)
	}
	for _, x := range load[quarter:] {
		if x.goroutines > first.goroutines+first.goroutines/4+50 {
			t.Errorf("goroutines grew under load: %d, first quarter at most %d", x.goroutines, first.goroutines)
		}
		if x.heapInuse > 2*first.heapInuse+64<<20 {
			t.Errorf("heap grew under load: %d MiB, first quarter at most %d MiB", x.heapInuse>>20, first.heapInuse>>20)
		}
		if x.connections > first.connections+2 {
			t.Errorf("database connections grew under load: %d, first quarter at most %d", x.connections, first.connections)
		}
	}
	before, after := s.samples[0], s.samples[len(s.samples)-1]
	if after.goroutines > before.goroutines+50 {
		t.Errorf("goroutines after the load: %d, before it %d", after.goroutines, before.goroutines)
	}
	if after.heapInuse > 2*before.heapInuse+64<<20 {
		t.Errorf("heap after the load: %d MiB, before it %d MiB", after.heapInuse>>20, before.heapInuse>>20)
	}
}

// churn creates and deletes reports of another kind (not in the ledger, nor watched by the run's
// observers) while the load runs, so deletes, their change-log entries and the analytics'
// removals are part of the soak.
type churn struct {
	stopped atomic.Bool
	done    chan struct{}
	n       atomic.Int64
}

func startChurn(e *faultEnv, l *faultLoad, k reports.Kind) *churn {
	c := &churn{done: make(chan struct{})}
	collection := collectionPath(k, "churn")
	go func() {
		defer close(c.done)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for i := 0; !c.stopped.Load(); i++ {
			name := fmt.Sprintf("churn-%d", i)
			body, err := json.Marshal(sample(k, "churn", name, nil, "Pod", faultOutcomes[rng.IntN(len(faultOutcomes))]).Object)
			if err != nil {
				panic(err)
			}
			resp := e.do(context.Background(), http.MethodPost, collection, body)
			l.answers.check(l.currentPhase(), "churn create", resp, http.StatusCreated, http.StatusConflict)
			resp = e.do(context.Background(), http.MethodDelete, collection+"/"+name, nil)
			l.answers.check(l.currentPhase(), "churn delete", resp, http.StatusOK, http.StatusNotFound)
			c.n.Add(1)
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
	}()
	return c
}

func (c *churn) stop() int64 {
	c.stopped.Store(true)
	<-c.done
	return c.n.Load()
}
