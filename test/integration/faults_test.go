package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/pglocal"
	"github.com/reports-server/reports-server/internal/server"
)

// This file is the one home of database fault scenarios. Each subtest of TestDatabaseFaults gets
// its own throw-away PostgreSQL (pglocal) and server, runs a write and watch load against it,
// breaks the database in one way while the load runs, lets it recover, and then checks:
//
//   - every answer during the whole run was 2xx, 404 (a get of a name not created yet), 409
//     (a conflict between writers) or 503 with Retry-After: never a 500, never the 504 of a
//     request that outlived the request timeout (the server's is lowered to
//     faultRequestTimeout), never no answer at all;
//   - /livez answered 200 throughout, /readyz failed while the database was away or hung, and
//     the server recovered without a restart (a write succeeds soon after PostgreSQL is back);
//   - the ledger: every write answered 2xx (name, resourceVersion, sha256 of the results
//     written) is in the change log at that revision, and the newest acknowledged write of
//     every name is the stored object, with the results written (or was overwritten by a write
//     whose answer was lost: the stored revision is newer);
//   - a client-go informer that ran through the fault ends equal to the database (names,
//     resourceVersions, content), and received exactly the change log if it never relisted;
//   - a raw watch (re-opened from its last resourceVersion whenever it ends, relisting on 410)
//     received every change in resourceVersion order, none missing, none repeated.

// faultRequestTimeout is the server's --request-timeout in these tests: short, so a hang of the
// database longer than it is cheap to produce.
const faultRequestTimeout = 4 * time.Second

// faultWriters is the number of concurrent writers of the ledger load.
const faultWriters = 8

// TestDatabaseFaults runs the ledger load against each fault (see the top of this file).
func TestDatabaseFaults(t *testing.T) {
	t.Parallel()
	for _, f := range []struct {
		name  string
		setup faultSetup
		// fault breaks the database while the load runs and returns once it is back.
		fault func(t *testing.T, e *faultEnv)
		// felt says the load must have met 503s. Not with a stopped database: its writers may
		// all be waiting for the writer to learn the fate of a batch whose connection broke
		// (until PostgreSQL is back), and reads meet the outage in expectAway instead.
		felt bool
	}{
		{name: "StopFast", fault: stopAndStart(pglocal.Fast)},
		{name: "StopImmediate", fault: stopAndStart(pglocal.Immediate)},
		{name: "TerminateBackends", fault: terminateBackends},
		{name: "Freeze", fault: freeze, felt: true},
		{name: "PoolExhausted", setup: faultSetup{poolMaxConns: 3}, fault: exhaustPool, felt: true},
		{name: "DiskFull", setup: faultSetup{tmpfsTablespace: true}, fault: diskFull, felt: true},
		{name: "CompactedWhileCutOff", setup: faultSetup{watchTimeout: 3}, fault: compactWhileCutOff},
	} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			e := newFaultEnv(t, f.setup)
			runFault(t, e, f.fault, f.felt)
		})
	}
}

// TestDatabaseOutage stops the server's PostgreSQL under it, without load: every kind of request
// gets 503 with Retry-After and a Status naming the database (never a crash or a hang), /readyz
// fails and /livez does not, and once PostgreSQL is back the server serves again with every
// acknowledged write intact.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, faultSetup{})
	ctx := context.Background()
	create := func(name string) faultResponse {
		return e.do(ctx, http.MethodPost, e.collection, encodeObject(t, sample(e.kind, e.ns, name, nil, "Pod", "pass")))
	}
	if r := create("before"); r.code != http.StatusCreated {
		t.Fatalf("create before the outage: %d %s", r.code, r.body)
	}
	if err := e.postgres().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ name, method, path string }{
		{"create", http.MethodPost, ""},
		{"get", http.MethodGet, e.collection + "/before"},
		{"list", http.MethodGet, e.collection},
		{"update", http.MethodPut, e.collection + "/before"},
		{"delete", http.MethodDelete, e.collection + "/before"},
	} {
		var r faultResponse
		switch req.method {
		case http.MethodPost:
			r = create("during")
		case http.MethodPut:
			u := sample(e.kind, e.ns, "before", nil, "Pod", "fail")
			u.SetResourceVersion("1")
			r = e.do(ctx, req.method, req.path, encodeObject(t, u))
		default:
			r = e.do(ctx, req.method, req.path, nil)
		}
		var st metav1.Status
		_ = json.Unmarshal(r.body, &st)
		if r.err != nil || r.code != http.StatusServiceUnavailable || st.Reason != metav1.StatusReasonServiceUnavailable ||
			!strings.Contains(st.Message, "the report database is unavailable") {
			t.Errorf("%s during the outage: %d %v %s; want 503 ServiceUnavailable naming the database", req.name, r.code, r.err, r.body)
		}
		if r.retryAfter == "" {
			t.Errorf("%s during the outage: no Retry-After header", req.name)
		}
	}
	e.expectNotReady(t, "PostgreSQL stopped")

	e.restart(t)
	if !waitFor(30*time.Second, func() bool { return create("after").code == http.StatusCreated }) {
		r := create("after")
		t.Fatalf("create after the outage: %d %s", r.code, r.body)
	}
	for _, name := range []string{"before", "after"} {
		if r := e.do(ctx, http.MethodGet, e.collection+"/"+name, nil); r.code != http.StatusOK {
			t.Errorf("get %s after the outage: %d %s", name, r.code, r.body)
		}
	}
	if r := e.do(ctx, http.MethodGet, e.collection+"/during", nil); r.code != http.StatusNotFound {
		t.Errorf("get of the create answered 503: %d %s, want 404", r.code, r.body)
	}
}

// ---- the environment: a PostgreSQL the test can break, a server on it, clients

type faultSetup struct {
	// poolMaxConns, when set, is the server's pool size (pool_max_conns in its URL).
	poolMaxConns int
	// tmpfsTablespace puts the server's database in a tablespace on a small tmpfs (needs root),
	// so the test can fill it up.
	tmpfsTablespace bool
	// process runs the server as its own process (the built binary, as deployed), so that its
	// memory and goroutines can be measured apart from the test's.
	process bool
	// watchTimeout, when set, is the timeoutSeconds of the watchers' watches, so that a watch
	// open when their link is cut ends soon (as a watch through a broken network would).
	watchTimeout int64
}

type faultEnv struct {
	t       *testing.T
	dataDir string
	port    int
	dbURL   string // the reports database, as the test reaches it
	tmpfs   string // the tablespace's mount point, when there is one

	pgMu sync.Mutex
	pg   *pglocal.Server

	srv         *testServer
	proc        *process // the server, when it runs as its own process
	host        string
	client      *http.Client // bounded: a request that outlives it hung
	watchClient *http.Client // unbounded, for watches; behind link
	// link is the network between the watchers (informer and raw watch) and the server; the
	// writers and probes do not go through it.
	link         partition
	watchTimeout int64
	// history, when a fault compacts the change log, is the change log as it was just before
	// (after the run's first revision): verify checks the ledger and the watchers against it.
	history []event
	// reconnected is when the fault restored the watchers' link, if it cut it.
	reconnected time.Time
	kind        reports.Kind
	ns          string
	collection  string
}

// faultDatabase is the name of the server's database.
const faultDatabase = "reports"

func newFaultEnv(t *testing.T, setup faultSetup) *faultEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &faultEnv{t: t, dataDir: filepath.Join(t.TempDir(), "pg"), kind: kindNamed(t, "PolicyReport"), ns: "faults",
		watchTimeout: setup.watchTimeout}
	e.collection = apiPath(e.kind, e.ns)
	if setup.tmpfsTablespace {
		e.mountTmpfs(t)
	}
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: e.dataDir})
	if err != nil {
		t.Fatalf("start private PostgreSQL: %v", err)
	}
	e.pg, e.port = pg, pg.Port()
	// Whatever the fault left behind: a frozen server is thawed before it is stopped.
	t.Cleanup(func() {
		p := e.postgres()
		_ = p.Signal(syscall.SIGCONT)
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = p.Stop(stopCtx)
	})
	e.dbURL = pg.URL(faultDatabase)
	if setup.tmpfsTablespace {
		e.createDatabaseOnTmpfs(ctx)
	} else if err := pg.CreateDatabase(ctx, faultDatabase); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, e.dbURL); err != nil {
		t.Fatal(err)
	}
	serverURL := e.dbURL
	if setup.poolMaxConns > 0 {
		serverURL += "&pool_max_conns=" + strconv.Itoa(setup.poolMaxConns)
	}
	if setup.process {
		e.srv, e.proc = startServerProcess(t, serverURL)
	} else {
		e.srv = startServerWith(t, serverURL, func(o *server.Options, _ *server.Hooks) {
			o.RequestTimeout = faultRequestTimeout
		})
	}
	hc, err := rest.HTTPClientFor(e.srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	e.host = e.srv.Config.Host
	bounded := *hc
	bounded.Timeout = faultRequestTimeout + 10*time.Second
	e.client = &bounded
	if e.watchClient, err = rest.HTTPClientFor(e.link.wrap(e.srv.Config)); err != nil {
		t.Fatal(err)
	}
	return e
}

// startServerProcess builds the server and runs `serve --standalone` on databaseURL as its own
// process, with its default garbage collector settings (as deployed), and returns a client configuration for it.
func startServerProcess(t *testing.T, databaseURL string) (*testServer, *process) {
	t.Helper()
	bin := buildServer(t, t.TempDir())
	p := startCommand(t, []string{"DATABASE_URL", "GOMEMLIMIT", "GOGC"}, nil, bin,
		"serve", "--standalone", "--secure-port", "0", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--database-url", databaseURL, "--request-timeout", faultRequestTimeout.String())
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(90 * time.Second):
			t.Errorf("reports-server did not stop within 90s of SIGTERM")
		}
	})
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
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	return &testServer{Config: cfg, Kubeconfig: kubeconfig, DatabaseURL: databaseURL}, p
}

func (e *faultEnv) postgres() *pglocal.Server {
	e.pgMu.Lock()
	defer e.pgMu.Unlock()
	return e.pg
}

// restart starts PostgreSQL again on the same data directory and port.
func (e *faultEnv) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: e.dataDir, Port: e.port})
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	e.pgMu.Lock()
	e.pg = pg
	e.pgMu.Unlock()
}

// admin runs statements on a connection of its own to the server's database.
func (e *faultEnv) admin(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// mountTmpfs mounts a small tmpfs for a tablespace, or skips the test when that is not allowed.
func (e *faultEnv) mountTmpfs(t *testing.T) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Big enough for an empty database, the schema and the load; small enough to fill quickly.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=48m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs for a tablespace needs root (CAP_SYS_ADMIN): %v", err)
	}
	// Registered before PostgreSQL's cleanup, so it runs after PostgreSQL stopped; a lazy
	// unmount cannot fail on a busy mount.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	e.tmpfs = dir
}

// createDatabaseOnTmpfs creates the server's database with the tmpfs as its default tablespace,
// so its tables, indexes and catalogs live there (the WAL stays on the data directory's disk).
func (e *faultEnv) createDatabaseOnTmpfs(ctx context.Context) {
	t := e.t
	dir := filepath.Join(e.tmpfs, "ts")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // pglocal runs postgres as the postgres user, which must own it
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, e.postgres().URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"CREATE TABLESPACE small LOCATION '" + dir + "'",
		"CREATE DATABASE " + faultDatabase + " TABLESPACE small",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// faultResponse is one answer of the server, or the failure to get one.
type faultResponse struct {
	code       int
	body       []byte
	retryAfter string
	err        error
	took       time.Duration
}

func (e *faultEnv) do(ctx context.Context, method, path string, body []byte) faultResponse {
	req, err := http.NewRequestWithContext(ctx, method, e.host+path, bytes.NewReader(body))
	if err != nil {
		return faultResponse{err: err}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return faultResponse{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	r := faultResponse{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	r.body, r.err = io.ReadAll(resp.Body)
	r.took = time.Since(start)
	return r
}

// healthy asks /livez or /readyz; ok is a 200.
func (e *faultEnv) healthy(path string) (bool, string) {
	r := e.do(context.Background(), http.MethodGet, path, nil)
	if r.err != nil {
		return false, r.err.Error()
	}
	return r.code == http.StatusOK, fmt.Sprintf("%d %s", r.code, bytes.TrimSpace(r.body))
}

// expectNotReady waits until /readyz fails (the database check), and checks /livez is still 200.
func (e *faultEnv) expectNotReady(t *testing.T, why string) {
	t.Helper()
	var last string
	if !waitFor(15*time.Second, func() bool {
		var ok bool
		ok, last = e.healthy("/readyz")
		return !ok
	}) {
		t.Errorf("%s: /readyz still answers %s", why, last)
	}
	if ok, got := e.healthy("/livez"); !ok {
		t.Errorf("%s: /livez answers %s, want 200", why, got)
	}
}

// expectAway checks what a database that is away or hangs looks like from outside: a read
// answers 503 with Retry-After (within the request timeout, or the client's bound fails it),
// /readyz fails (when notReady) and /livez does not. The checks run side by side: against a
// hung database each takes most of a request timeout.
func (e *faultEnv) expectAway(t *testing.T, why string, notReady bool) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		r := e.do(context.Background(), http.MethodGet, e.collection, nil)
		if r.err != nil || r.code != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Errorf("%s: a list answered %d (Retry-After %q) after %v, %v: %.300s; want 503 with Retry-After",
				why, r.code, r.retryAfter, r.took.Round(time.Millisecond), r.err, r.body)
		}
	})
	if notReady {
		e.expectNotReady(t, why)
	} else if ok, got := e.healthy("/livez"); !ok {
		t.Errorf("%s: /livez answers %s, want 200", why, got)
	}
	wg.Wait()
}

// ---- the load: writers with a ledger, an informer, a raw watch, a liveness prober

type ledgerEntry struct {
	name string
	rv   int64
	sum  string // sha256 of the results written
	op   string // "add" or "update", as in the change log
}

// answerLog checks every answer the load gets.
type answerLog struct {
	mu       sync.Mutex
	codes    map[string]map[int]int // phase → code → count
	problems []string
	slowest  time.Duration
}

func (a *answerLog) problem(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

// check records r, the answer to what, and reports whether it is one the server may give:
// a code in allowed, or 503 with Retry-After.
func (a *answerLog) check(phase, what string, r faultResponse, allowed ...int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.codes == nil {
		a.codes = map[string]map[int]int{}
	}
	if a.codes[phase] == nil {
		a.codes[phase] = map[int]int{}
	}
	a.codes[phase][r.code]++
	a.slowest = max(a.slowest, r.took)
	switch {
	case r.err != nil:
		a.problems = append(a.problems, fmt.Sprintf("%s (%s): no answer after %v: %v", what, phase, r.took.Round(time.Millisecond), r.err))
	case r.code == http.StatusServiceUnavailable:
		if r.retryAfter == "" {
			a.problems = append(a.problems, fmt.Sprintf("%s (%s): 503 without Retry-After: %s", what, phase, r.body))
		}
	case !slices.Contains(allowed, r.code):
		a.problems = append(a.problems, fmt.Sprintf("%s (%s): %d after %v: %s", what, phase, r.code, r.took.Round(time.Millisecond), r.body))
	}
}

type faultLoad struct {
	e       *faultEnv
	writers int
	phase   atomic.Value // string: before, fault, after
	answers answerLog
	stopped atomic.Bool

	mu     sync.Mutex
	ledger []ledgerEntry

	wg sync.WaitGroup
}

func (l *faultLoad) currentPhase() string { return l.phase.Load().(string) }

// shared names are updated by every writer, so writers conflict (409) and retry.
var faultSharedNames = func() []string {
	var out []string
	for i := range 12 {
		out = append(out, fmt.Sprintf("shared-%02d", i))
	}
	return out
}()

func (l *faultLoad) start(seed uint64) {
	l.phase.Store("before")
	for w := range l.writers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		l.wg.Go(func() {
			for op := 0; !l.stopped.Load(); op++ {
				tag := fmt.Sprintf("w%d-%d", w, op)
				if op%3 == 0 {
					l.create(tag, tag, rng)
				} else {
					l.update(faultSharedNames[rng.IntN(len(faultSharedNames))], tag, rng)
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		})
	}
	l.wg.Go(func() {
		for !l.stopped.Load() {
			for _, path := range []string{"/livez", "/healthz"} {
				if ok, got := l.e.healthy(path); !ok {
					l.answers.problem("%s (%s) answered %s", path, l.currentPhase(), got)
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}

func (l *faultLoad) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

func (l *faultLoad) record(name string, body []byte, sum, op string) {
	var obj struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		l.answers.problem("%s %s: 2xx body: %v", op, name, err)
		return
	}
	rv, err := strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
	if err != nil {
		l.answers.problem("%s %s: 2xx resourceVersion %q: %.300s", op, name, obj.Metadata.ResourceVersion, body)
		return
	}
	l.mu.Lock()
	l.ledger = append(l.ledger, ledgerEntry{name: name, rv: rv, sum: sum, op: op})
	l.mu.Unlock()
}

// faultAttempts bounds the retries of one write; writes that run out are given up, not errors.
const faultAttempts = 60

// retryPause is how long a writer waits after a 503 (the server says 1 s; the test is impatient).
func retryPause(rng *rand.Rand) { time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond) }

var faultOutcomes = []string{"pass", "fail", "warn", "error", "skip"}

// content sets the results (and summary) of obj to a fresh outcome tagged tag, and returns the
// hash of the results.
func content(obj map[string]any, tag string, rng *rand.Rand) string {
	outcome := faultOutcomes[rng.IntN(len(faultOutcomes))]
	results := []any{map[string]any{
		"policy": "require-labels", "rule": "check-team", "result": outcome, "message": tag,
		"scored": true, "source": "kyverno",
		"timestamp": map[string]any{"seconds": int64(1698822302), "nanos": int64(0)},
	}}
	obj["results"] = results
	obj["summary"] = map[string]any{outcome: int64(1)}
	return resultsSum(results)
}

// resultsSum is the sha256 of results as canonical JSON (sorted keys, numbers as JSON numbers).
func resultsSum(results any) string {
	b, err := json.Marshal(results)
	if err != nil {
		panic(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		panic(err)
	}
	if b, err = json.Marshal(v); err != nil {
		panic(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (l *faultLoad) create(name, tag string, rng *rand.Rand) {
	obj := sample(l.e.kind, l.e.ns, name, map[string]string{"tag": tag}, "Pod", "pass").Object
	sum := content(obj, tag, rng)
	body, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	for attempt := 0; attempt < faultAttempts && !l.stopped.Load(); attempt++ {
		r := l.e.do(context.Background(), http.MethodPost, l.e.collection, body)
		l.answers.check(l.currentPhase(), "create "+name, r, http.StatusCreated, http.StatusConflict)
		switch r.code {
		case http.StatusCreated:
			l.record(name, r.body, sum, "add")
			return
		case http.StatusConflict:
			// Created by another writer, or by an earlier attempt whose answer was lost.
			return
		}
		retryPause(rng)
	}
}

func (l *faultLoad) update(name, tag string, rng *rand.Rand) {
	path := l.e.collection + "/" + name
	for attempt := 0; attempt < faultAttempts && !l.stopped.Load(); attempt++ {
		r := l.e.do(context.Background(), http.MethodGet, path, nil)
		l.answers.check(l.currentPhase(), "get "+name, r, http.StatusOK, http.StatusNotFound)
		switch r.code {
		case http.StatusNotFound:
			l.create(name, tag, rng)
			return
		case http.StatusOK:
		default:
			retryPause(rng)
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(r.body, &obj); err != nil {
			l.answers.problem("get %s: %v", name, err)
			return
		}
		obj["metadata"].(map[string]any)["labels"] = map[string]any{"tag": tag}
		sum := content(obj, tag, rng)
		body, err := json.Marshal(obj)
		if err != nil {
			panic(err)
		}
		r = l.e.do(context.Background(), http.MethodPut, path, body)
		l.answers.check(l.currentPhase(), "update "+name, r, http.StatusOK, http.StatusConflict)
		switch r.code {
		case http.StatusOK:
			l.record(name, r.body, sum, "update")
			return
		case http.StatusConflict:
			continue // another writer was first: read again
		}
		retryPause(rng)
	}
}

// rawWatch watches the load's namespace as a careful client does: when the watch ends it is
// re-opened from the last resourceVersion seen (bookmarks included); on 410 the client relists.
type rawWatch struct {
	e *faultEnv
	// light watches keep no events: they only check that revisions increase (the soak runs
	// hundreds of them).
	light    bool
	mu       sync.Mutex
	events   []event // relists show as events of Type "relist" at the list's revision
	count    int     // events received (not bookmarks)
	prev     int64   // the revision of the last event or relist
	last     int64
	reopened int
	// expired counts the 410 Expired Status events received (the history the watch needed was
	// gone); gone counts watches answered 410 before any event.
	expired, gone int
	problems      []string
	done          chan struct{}
}

func (w *rawWatch) problem(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

func (w *rawWatch) lastRV() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *rawWatch) run(ctx context.Context, from int64) {
	defer close(w.done)
	w.mu.Lock()
	w.prev = from
	w.mu.Unlock()
	rv := from
	for ctx.Err() == nil {
		q := url.Values{"watch": {"1"}, "allowWatchBookmarks": {"true"}, "resourceVersion": {strconv.FormatInt(rv, 10)}}
		if w.e.watchTimeout > 0 {
			q.Set("timeoutSeconds", strconv.FormatInt(w.e.watchTimeout, 10))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.e.host+w.e.collection+"?"+q.Encode(), nil)
		if err != nil {
			w.problem("watch request: %v", err)
			return
		}
		req.Header.Set("Accept", "application/json")
		resp, err := w.e.watchClient.Do(req)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				time.Sleep(200 * time.Millisecond) // the test cut the link: try again
				continue
			}
			if ctx.Err() == nil {
				w.problem("open watch from %d: %v", rv, err)
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		gone := false
		switch resp.StatusCode {
		case http.StatusOK:
			var next int64
			next, gone = w.read(resp.Body, rv)
			rv = next
		case http.StatusGone:
			gone = true
			w.mu.Lock()
			w.gone++
			w.mu.Unlock()
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				w.problem("watch answered 503 without Retry-After")
			}
			time.Sleep(200 * time.Millisecond)
		default:
			b, _ := io.ReadAll(resp.Body)
			w.problem("open watch from %d: %d %s", rv, resp.StatusCode, b)
			time.Sleep(200 * time.Millisecond)
		}
		resp.Body.Close()
		w.mu.Lock()
		w.reopened++
		w.mu.Unlock()
		if gone && ctx.Err() == nil {
			rv = w.relist(ctx)
		}
	}
}

// read consumes one watch response; it returns the revision to resume from and whether the
// watch ended with 410.
func (w *rawWatch) read(body io.Reader, rv int64) (int64, bool) {
	dec := json.NewDecoder(body)
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			return rv, false // the watch ended (server timeout, shutdown) or was stopped
		}
		if ev.Type == "ERROR" {
			var st struct {
				Kind    string `json:"kind"`
				Code    int    `json:"code"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal(ev.Object, &st)
			switch st.Code {
			case http.StatusGone:
				if st.Kind != "Status" || st.Reason != string(metav1.StatusReasonExpired) {
					w.problem("watch from %d: 410 event %s %s, want a Status with reason Expired", rv, st.Kind, st.Reason)
				}
				w.mu.Lock()
				w.expired++
				w.mu.Unlock()
				return rv, true
			case http.StatusServiceUnavailable:
				return rv, false // re-open from rv
			}
			w.problem("watch error event %d: %s", st.Code, st.Message)
			return rv, false
		}
		var obj struct {
			Metadata struct {
				Name            string `json:"name"`
				Namespace       string `json:"namespace"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(ev.Object, &obj); err != nil {
			w.problem("watch event: %v", err)
			continue
		}
		erv, err := strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
		if err != nil {
			w.problem("watch event resourceVersion %q", obj.Metadata.ResourceVersion)
			continue
		}
		rv = max(rv, erv)
		w.mu.Lock()
		w.last = max(w.last, erv)
		if ev.Type != "BOOKMARK" {
			if erv <= w.prev {
				w.problems = append(w.problems, fmt.Sprintf("%s event at revision %d after revision %d", ev.Type, erv, w.prev))
			}
			w.prev, w.count = erv, w.count+1
			if !w.light {
				w.events = append(w.events, event{Type: changeEventTypes[ev.Type], Key: obj.Metadata.Namespace + "/" + obj.Metadata.Name, RV: erv})
			}
		}
		w.mu.Unlock()
	}
}

// relist lists the namespace (retrying while the server answers 503) and returns its revision.
func (w *rawWatch) relist(ctx context.Context) int64 {
	for ctx.Err() == nil {
		r := w.e.do(ctx, http.MethodGet, w.e.collection, nil)
		if r.code == http.StatusOK {
			var list struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(r.body, &list); err == nil {
				if rv, err := strconv.ParseInt(list.Metadata.ResourceVersion, 10, 64); err == nil {
					w.mu.Lock()
					if !w.light {
						w.events = append(w.events, event{Type: "relist", RV: rv})
					}
					w.last, w.prev = max(w.last, rv), rv
					w.mu.Unlock()
					return rv
				}
			}
			w.problem("relist: %s", r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0
}

// ---- one scenario

func runFault(t *testing.T, e *faultEnv, fault func(*testing.T, *faultEnv), felt bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startRun(ctx, t, e, faultWriters)
	time.Sleep(1500 * time.Millisecond)

	r.load.phase.Store("fault")
	faultStart := time.Now()
	fault(t, e)
	faultTook := time.Since(faultStart)
	recoveredIn := r.recover(ctx, t)
	time.Sleep(1500 * time.Millisecond)
	r.verify(ctx, t, felt, fmt.Sprintf("fault took %v; a write succeeded %v after it", faultTook.Round(time.Millisecond), recoveredIn.Round(time.Millisecond)))
}

// faultRun is a ledger load against a faultEnv, watched from its first write by a client-go
// informer (its requests logged) and by a raw watch.
type faultRun struct {
	e        *faultEnv
	start    time.Time
	from     int64 // the revision before the first write
	log      *requestLog
	informer cache.SharedIndexInformer
	rec      *recorder
	watch    *rawWatch
	load     *faultLoad
	stop     func() // stops the informer and the raw watch
	probe    string // the name recover writes
}

// startRun starts the observers, waits until the informer has synced, and starts the load with
// writers writers.
func startRun(ctx context.Context, t *testing.T, e *faultEnv, writers int) *faultRun {
	r := &faultRun{e: e, start: time.Now(), log: &requestLog{}, rec: &recorder{}, probe: "after-the-fault"}
	if err := e.admin(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT current FROM revisions WHERE cluster = $1", server.DefaultClusterName).Scan(&r.from)
	}); err != nil {
		t.Fatalf("read the start revision: %v", err)
	}
	dyn, err := dynamic.NewForConfig(r.log.wrap(e.link.wrap(e.srv.Config)))
	if err != nil {
		t.Fatal(err)
	}
	var tweak dynamicinformer.TweakListOptionsFunc
	if e.watchTimeout > 0 {
		tweak = func(o *metav1.ListOptions) { o.TimeoutSeconds = &e.watchTimeout }
	}
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, e.ns, tweak)
	r.informer = factory.ForResource(e.kind.GroupVersionResource()).Informer()
	if _, err := r.informer.AddEventHandler(r.rec.handler()); err != nil {
		t.Fatal(err)
	}
	informerCtx, stopInformer := context.WithCancel(ctx)
	factory.Start(informerCtx.Done())
	if !waitFor(30*time.Second, r.informer.HasSynced) {
		stopInformer()
		factory.Shutdown()
		t.Fatalf("informer not synced within 30s; requests: %v", r.log.requests())
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	r.watch = &rawWatch{e: e, done: make(chan struct{})}
	go r.watch.run(watchCtx, r.from)
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			stopWatch()
			<-r.watch.done
			stopInformer()
			factory.Shutdown()
		})
	}
	t.Cleanup(r.stop)

	seed := uint64(time.Now().UnixNano())
	t.Logf("writer seed %d", seed)
	r.load = &faultLoad{e: e, writers: writers}
	r.load.start(seed)
	return r
}

// recover waits until a write succeeds after the fault (without a restart of the server) and
// /readyz is ready again, and returns how long the write took to succeed.
func (r *faultRun) recover(ctx context.Context, t *testing.T) time.Duration {
	e := r.e
	r.load.phase.Store("after")
	recovered := time.Now()
	probe := sample(e.kind, e.ns, r.probe, nil, "Pod", "pass")
	for {
		resp := e.do(ctx, http.MethodPost, e.collection, encodeObject(t, probe))
		if resp.code == http.StatusCreated {
			break
		}
		r.load.answers.check("after", "create after the fault", resp, http.StatusCreated)
		if time.Since(recovered) > 30*time.Second {
			t.Fatalf("no write succeeded within 30s of the database being back: %d %s", resp.code, resp.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	recoveredIn := time.Since(recovered)
	if !waitFor(30*time.Second, func() bool { ok, _ := e.healthy("/readyz"); return ok }) {
		_, got := e.healthy("/readyz")
		t.Errorf("/readyz not ready within 30s of the database being back: %s", got)
	}
	return recoveredIn
}

// verify stops the load and checks everything the top of this file promises; summary starts
// the closing log line.
func (r *faultRun) verify(ctx context.Context, t *testing.T, felt bool, summary string) {
	e, l, w, rec, log := r.e, r.load, r.watch, r.rec, r.log
	l.stop()
	prefix := keyPrefix(e.kind)

	// Every answer was one the server may give.
	l.answers.mu.Lock()
	for i, p := range l.answers.problems {
		if i == 20 {
			t.Errorf("… and %d more", len(l.answers.problems)-20)
			break
		}
		t.Error(p)
	}
	codes := fmt.Sprint(l.answers.codes)
	unavailable := l.answers.codes["fault"][http.StatusServiceUnavailable] + l.answers.codes["after"][http.StatusServiceUnavailable]
	slowest := l.answers.slowest
	l.answers.mu.Unlock()
	if felt && unavailable == 0 {
		t.Errorf("no request met the fault (no 503): the test proved nothing; answers %s", codes)
	}

	// The database, read directly.
	store := openStore(t, e.dbURL)
	current, compacted := store.revisions(t)
	if compacted > r.from && e.history == nil {
		t.Fatalf("the change log was compacted during the test (%d > %d)", compacted, r.from)
	}
	changes := store.changes(t, prefix, r.from)
	if e.history != nil {
		// What the compaction removed, from the copy taken just before it.
		var before []event
		for _, c := range e.history {
			if c.RV > r.from && (len(changes) == 0 || c.RV < changes[0].RV) {
				before = append(before, c)
			}
		}
		changes = append(before, changes...)
	}
	objects := store.objects(t, prefix)

	// The ledger: every acknowledged write is in the change log at its revision, and the newest
	// acknowledged write of each name is stored (or was overwritten by a write whose answer was
	// lost), with the results written.
	byRV := map[int64]event{}
	for _, c := range changes {
		byRV[c.RV] = c
	}
	l.mu.Lock()
	ledger := slices.Clone(l.ledger)
	l.mu.Unlock()
	newest := map[string]ledgerEntry{}
	lost := 0
	for _, en := range ledger {
		key := e.ns + "/" + en.name
		if c, ok := byRV[en.rv]; !ok || c.Key != key || c.Type != en.op {
			if lost++; lost <= 20 {
				t.Errorf("acknowledged %s %s@%d, but the change log at that revision has %v", en.op, key, en.rv, c)
			}
		}
		if n, ok := newest[en.name]; !ok || en.rv > n.rv {
			newest[en.name] = en
		}
	}
	overwritten := 0
	for name, en := range newest {
		o, ok := objects[e.ns+"/"+name]
		switch {
		case !ok:
			t.Errorf("acknowledged %s@%d is not in the database", name, en.rv)
		case o.RV < en.rv:
			t.Errorf("acknowledged %s@%d, the database has it @%d", name, en.rv, o.RV)
		case o.RV > en.rv:
			overwritten++ // by a write answered 503 whose transaction had committed
		case resultsSum(o.Object["results"]) != en.sum:
			t.Errorf("%s@%d: stored results differ from those acknowledged:\nstored: %v", name, en.rv, o.Object["results"])
		}
	}
	acknowledged := map[int64]bool{}
	for _, en := range ledger {
		acknowledged[en.rv] = true
	}
	unacknowledged := 0
	for _, c := range changes {
		if !acknowledged[c.RV] && c.Key != e.ns+"/"+r.probe {
			unacknowledged++
		}
	}

	// The informer and the raw watch caught up and agree with the database.
	target := current
	if len(changes) > 0 {
		target = changes[len(changes)-1].RV
	}
	catchUp := 30 * time.Second
	if !e.reconnected.IsZero() {
		// An informer whose link was cut backed off between its refused watches, up to
		// client-go's cap (30 s, jittered up to twice that), and waits that long once more
		// before it relists after its 410.
		catchUp += 60 * time.Second
	}
	if !waitFor(catchUp, func() bool { return rec.lastRV() >= target && w.lastRV() >= target }) {
		t.Errorf("watchers did not reach revision %d within %v: informer at %d, raw watch at %d", target, catchUp, rec.lastRV(), w.lastRV())
	}
	relisted := informerRelisted(log)
	if e.history != nil {
		// The watchers' history was compacted while they were cut off: each was told so (the
		// raw watch by a 410 Expired event, not a silent gap) and started over.
		w.mu.Lock()
		expired, gone := w.expired, w.gone
		w.mu.Unlock()
		if expired == 0 {
			t.Errorf("the raw watch resumed from a compacted revision and received no 410 Expired event (410 answers: %d)", gone)
		}
		var after []string
		for _, q := range log.requests() {
			if q.At.After(e.reconnected) {
				after = append(after, q.String())
			}
		}
		if !relisted {
			t.Errorf("the informer resumed from a compacted revision and did not relist; its requests after the link came back: %v", after)
		}
		t.Logf("raw watch: %d 410 Expired events, %d 410 answers; informer requests after the link came back: %v", expired, gone, after)
	}
	if relisted {
		checkMonotonic(t, "informer", rec)
	} else {
		checkEvents(t, "informer", rec, map[string]storedObject{}, r.from, changes)
	}
	checkCache(t, "informer", r.informer.GetStore(), objects, true)
	r.stop()
	checkRawWatch(t, w, r.from, changes)

	t.Logf("%s; %d acknowledged writes (%d names), %d stored writes "+
		"answered 503 or never answered, %d names overwritten by one; answers by phase and code %s; slowest answer %v; "+
		"informer relisted: %v (requests %d); raw watch re-opened %d times; total %v",
		summary, len(ledger), len(newest), unacknowledged,
		overwritten, codes, slowest.Round(time.Millisecond), relisted, len(log.requests()), w.reopened, time.Since(r.start).Round(time.Millisecond))
}

// release drops what the run recorded, once verify has checked it.
func (r *faultRun) release() {
	r.stop()
	r.informer, r.rec, r.log = nil, nil, nil
	r.watch.mu.Lock()
	r.watch.events = nil
	r.watch.mu.Unlock()
	r.load.mu.Lock()
	r.load.ledger = nil
	r.load.mu.Unlock()
}

// informerRelisted says whether the informer started over (a LIST, or a watch-list with initial
// events) after its first sync, rather than resuming its watch from a resourceVersion.
func informerRelisted(log *requestLog) bool {
	for _, r := range log.requests()[1:] {
		if !r.isWatch() || r.Query.Get("sendInitialEvents") == "true" {
			return true
		}
	}
	return false
}

// checkMonotonic checks, for an informer that relisted, that no object's events went back in
// revision (a relist replays the current state, so equal revisions are allowed).
func checkMonotonic(t *testing.T, who string, rec *recorder) {
	t.Helper()
	got, errs := rec.snapshot()
	for _, e := range errs {
		t.Errorf("%s: %s", who, e)
	}
	last := map[string]int64{}
	for i, e := range got {
		if e.RV < last[e.Key] {
			t.Errorf("%s: event %d (%v) goes back from revision %d", who, i, e, last[e.Key])
		}
		last[e.Key] = max(last[e.Key], e.RV)
	}
}

// checkRawWatch checks the raw watch's events against the change log after from: in strictly
// increasing revisions; before a relist (410: the history it needed was gone) a contiguous run of
// the changes; after the last relist (or without one) exactly the changes.
func checkRawWatch(t *testing.T, w *rawWatch, from int64, changes []event) {
	t.Helper()
	w.mu.Lock()
	events, problems := slices.Clone(w.events), slices.Clone(w.problems)
	w.mu.Unlock()
	for _, p := range problems {
		t.Errorf("raw watch: %s", p)
	}
	after := func(rev int64) []event {
		i, _ := slices.BinarySearchFunc(changes, rev+1, func(c event, rv int64) int { return int(c.RV - rv) })
		return changes[i:]
	}
	var got []event
	segFrom, prev := from, from
	for _, e := range events {
		if e.Type == "relist" {
			if want := after(segFrom); len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
				sameEvents(t, fmt.Sprintf("raw watch before its relist at %d", e.RV), got, want[:min(len(got), len(want))])
			}
			t.Logf("raw watch relisted at revision %d", e.RV)
			got, segFrom, prev = nil, e.RV, e.RV
			continue
		}
		if e.RV <= prev {
			t.Errorf("raw watch: event %v does not come after revision %d", e, prev)
		}
		prev = e.RV
		got = append(got, e)
	}
	sameEvents(t, "raw watch", got, after(segFrom))
}

// ---- the faults

// stopAndStart shuts PostgreSQL down in mode, checks the server notices, and starts it again.
func stopAndStart(mode pglocal.ShutdownMode) func(*testing.T, *faultEnv) {
	return func(t *testing.T, e *faultEnv) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.postgres().Shutdown(ctx, mode); err != nil {
			t.Fatalf("stop PostgreSQL: %v", err)
		}
		e.expectAway(t, "PostgreSQL stopped", true)
		time.Sleep(time.Second) // the load meets the stopped database
		e.restart(t)
	}
}

// compactWhileCutOff cuts the watchers' link and, once their watches have ended, stops
// PostgreSQL (-m immediate) and starts it again; the load writes on, and the change log is
// compacted past everything the watchers saw (as another replica's compactor would, with a
// retention shorter than the cut) before the link comes back. Their resourceVersions are gone:
// verify checks they are told so (410) and end equal to the database by relisting.
func compactWhileCutOff(t *testing.T, e *faultEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.link.cut()
	wait := time.Duration(e.watchTimeout)*time.Second + 15*time.Second
	if !waitFor(wait, func() bool { return e.link.opened() == 0 }) {
		t.Fatalf("the watchers' open watches did not end within %v of cutting their link (%d open)", wait, e.link.opened())
	}
	revision := func() (rev int64) {
		if err := e.admin(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT current FROM revisions WHERE cluster = $1", server.DefaultClusterName).Scan(&rev)
		}); err != nil {
			t.Fatalf("read the current revision: %v", err)
		}
		return rev
	}
	seen := revision() // the watchers saw at most this

	stopAndStart(pglocal.Immediate)(t, e)
	// Writes the watchers miss, after the restart as well as before.
	if !waitFor(30*time.Second, func() bool {
		var rev int64
		err := e.admin(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT current FROM revisions WHERE cluster = $1", server.DefaultClusterName).Scan(&rev)
		})
		return err == nil && rev > seen+20
	}) {
		t.Fatalf("the load wrote fewer than 20 revisions within 30s of the restart")
	}
	target := revision()
	store := openStore(t, e.dbURL)
	e.history = store.changes(t, keyPrefix(e.kind), 0)
	compactTo(t, e.dbURL, target)
	if _, compacted := store.revisions(t); compacted < target {
		t.Fatalf("compacted revision %d after compacting to %d", compacted, target)
	}
	t.Logf("watchers cut off at revision %d; compacted to %d", seen, target)
	e.reconnected = time.Now()
	e.link.restore()
}

// terminateBackends ends every backend of the server's database a few times, the LISTEN
// connection included, and checks the listener comes back.
func terminateBackends(t *testing.T, e *faultEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	listeners := func() (n int) {
		_ = e.admin(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
				db.ListenerApplicationName).Scan(&n)
		})
		return n
	}
	for round := range 3 {
		if !waitFor(20*time.Second, func() bool { return listeners() == 1 }) {
			t.Fatalf("round %d: the server's LISTEN connection is not up", round)
		}
		var terminated, listener int
		err := e.admin(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)),
				count(*) FILTER (WHERE application_name = $1)
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
				db.ListenerApplicationName).Scan(&terminated, &listener)
		})
		if err != nil {
			t.Fatalf("terminate backends: %v", err)
		}
		if listener != 1 {
			t.Errorf("round %d: terminated %d backends, %d of them LISTEN connections; want 1", round, terminated, listener)
		}
		// PostgreSQL is up: a pooled connection that died does not fail readiness.
		if ok, got := e.healthy("/readyz"); !ok {
			t.Errorf("round %d: /readyz answers %s after the backends were terminated, want 200", round, got)
		}
		time.Sleep(700 * time.Millisecond)
	}
	if !waitFor(20*time.Second, func() bool { return listeners() == 1 }) {
		t.Errorf("the server's LISTEN connection did not come back")
	}
}

// freeze stops every PostgreSQL process (SIGSTOP) for longer than the request timeout: its
// connections stay open and unanswered, as with a hung host. Requests must answer 503 within
// the request timeout rather than wait for it.
func freeze(t *testing.T, e *faultEnv) {
	pg := e.postgres()
	if err := pg.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze PostgreSQL: %v", err)
	}
	thawAt := time.Now().Add(faultRequestTimeout + 3*time.Second)
	defer func() {
		time.Sleep(time.Until(thawAt))
		if err := pg.Signal(syscall.SIGCONT); err != nil {
			t.Errorf("thaw PostgreSQL: %v", err)
		}
	}()
	e.expectAway(t, "PostgreSQL frozen", true)
}

// exhaustPool holds a lock every server statement waits for (ACCESS EXCLUSIVE on the revisions
// and reports tables, as a careless migration would) for longer than the request timeout: the server's
// statements hang on it holding every connection of its pool (3), and further requests wait for
// a connection. All must answer 503 within the request timeout; the database itself is up.
func exhaustPool(t *testing.T, e *faultEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := e.admin(ctx, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // rolled back on purpose
		if _, err := tx.Exec(ctx, "LOCK TABLE revisions, reports IN ACCESS EXCLUSIVE MODE"); err != nil {
			return err
		}
		release := time.Now().Add(faultRequestTimeout + 3*time.Second)
		// Readiness is not checked: its ping needs a pooled connection, which it gets or not
		// depending on whether a request has just given up its own.
		e.expectAway(t, "every pooled connection waiting on a lock", false)
		time.Sleep(time.Until(release))
		var waiting int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation IN ('revisions'::regclass, 'reports'::regclass)`).Scan(&waiting); err != nil {
			return err
		}
		if waiting == 0 {
			t.Errorf("no server statement waited for the lock")
		}
		return tx.Rollback(ctx)
	})
	if err != nil {
		t.Fatalf("hold the lock: %v", err)
	}
}

// diskFull fills the tablespace that holds the server's database, so writes fail for want of
// space (53100 disk_full), then frees it.
func diskFull(t *testing.T, e *faultEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := e.admin(ctx, func(c *pgx.Conn) error {
		// Stored as written: no compression, no TOAST. Temporary files go to the main disk, so
		// nothing the fill allocates is given back when it fails.
		if _, err := c.Exec(ctx, "SET temp_tablespaces = pg_default; CREATE TABLE filler (v text); ALTER TABLE filler ALTER v SET STORAGE PLAIN"); err != nil {
			return err
		}
		// Incompressible rows, 2 MB a statement, until the tmpfs is full.
		for range 100 {
			_, err := c.Exec(ctx, `INSERT INTO filler SELECT (SELECT string_agg(md5(random()::text || g || x), '') FROM generate_series(1, 60) x)
				FROM generate_series(1, 1000) g`)
			if err != nil {
				if !strings.Contains(err.Error(), "No space left on device") {
					return fmt.Errorf("fill the tablespace: %w", err)
				}
				return nil
			}
		}
		return errors.New("the tablespace did not fill up")
	})
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL is up and answers reads: the replica stays ready.
	if ok, got := e.healthy("/readyz"); !ok {
		t.Errorf("/readyz answers %s with the disk full, want 200", got)
	}
	time.Sleep(2 * time.Second) // the load meets the full disk
	if err := e.admin(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DROP TABLE filler")
		return err
	}); err != nil {
		t.Fatalf("free the tablespace: %v", err)
	}
}
