package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/server"
)

// This file holds what the watch tests share: direct reads of the database (the truth the
// informers are compared with), a recorder of informer events, a log of the HTTP requests a
// client sends, and a network link the test can cut.

// storeReader reads the storage tables of one cluster directly, bypassing the servers.
type storeReader struct {
	pool    *pgxpool.Pool
	cluster string
}

func openStore(t *testing.T, databaseURL string) *storeReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, databaseURL)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(pool.Close)
	return &storeReader{pool: pool, cluster: server.DefaultClusterName}
}

// keyPrefix is the storage key prefix of kind's objects, as the generic registry builds keys:
// /<group>/<resource>/<namespace>/<name>. What follows it is the informers' cache key.
func keyPrefix(k reports.Kind) string {
	return "/" + k.GroupVersion.Group + "/" + k.Resource + "/"
}

// rangeEnd is the first key after every key starting with prefix (which ends in "/").
func rangeEnd(prefix string) string { return prefix[:len(prefix)-1] + "0" }

// revisions returns the cluster's current and compacted revisions.
func (s *storeReader) revisions(t *testing.T) (current, compacted int64) {
	t.Helper()
	err := s.pool.QueryRow(context.Background(),
		"SELECT current, compacted FROM revisions WHERE cluster = $1", s.cluster).Scan(&current, &compacted)
	if err != nil {
		t.Fatalf("read revisions: %v", err)
	}
	return current, compacted
}

// storedObject is an object as the database holds it.
type storedObject struct {
	RV     int64
	Object map[string]any // without metadata.resourceVersion, as stored
}

// objects returns the stored objects under prefix, keyed by the rest of the key
// ("<namespace>/<name>" for namespaced kinds, which is also the informers' cache key).
func (s *storeReader) objects(t *testing.T, prefix string) map[string]storedObject {
	t.Helper()
	rows, err := s.pool.Query(context.Background(),
		`SELECT key, resource_version, object::text FROM reports
		 WHERE cluster = $1 AND key >= $2 AND key < $3 ORDER BY key`, s.cluster, prefix, rangeEnd(prefix))
	if err != nil {
		t.Fatalf("read objects: %v", err)
	}
	defer rows.Close()
	out := map[string]storedObject{}
	for rows.Next() {
		var key, text string
		var rv int64
		if err := rows.Scan(&key, &rv, &text); err != nil {
			t.Fatalf("read objects: %v", err)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(text), &obj); err != nil {
			t.Fatalf("stored object %s: %v", key, err)
		}
		out[strings.TrimPrefix(key, prefix)] = storedObject{RV: rv, Object: obj}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read objects: %v", err)
	}
	return out
}

// event is one event as a client sees it, reduced to what the tests compare. Type is "add",
// "update" or "delete" (informer handlers, or watch ADDED/MODIFIED/DELETED); "delete-unknown" is
// a DeletedFinalStateUnknown, which only a relist produces.
type event struct {
	Type    string
	Key     string
	RV      int64
	Initial bool // an informer's add from its initial list
}

func (e event) String() string {
	s := fmt.Sprintf("%s %s@%d", e.Type, e.Key, e.RV)
	if e.Initial {
		s += " (initial)"
	}
	return s
}

var changeEventTypes = map[string]string{"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}

// changes returns the change log under prefix after revision after, in revision order, as the
// events a client watching from after must see.
func (s *storeReader) changes(t *testing.T, prefix string, after int64) []event {
	t.Helper()
	rows, err := s.pool.Query(context.Background(),
		`SELECT resource_version, key, event FROM changes
		 WHERE cluster = $1 AND resource_version > $2 AND key >= $3 AND key < $4
		 ORDER BY resource_version`, s.cluster, after, prefix, rangeEnd(prefix))
	if err != nil {
		t.Fatalf("read change log: %v", err)
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var rv int64
		var key, typ string
		if err := rows.Scan(&rv, &key, &typ); err != nil {
			t.Fatalf("read change log: %v", err)
		}
		out = append(out, event{Type: changeEventTypes[typ], Key: strings.TrimPrefix(key, prefix), RV: rv})
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read change log: %v", err)
	}
	return out
}

// listenerConnections counts the reports-server LISTEN connections to this database.
func (s *storeReader) listenerConnections(t *testing.T) int {
	t.Helper()
	var n int
	err := s.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
		db.ListenerApplicationName).Scan(&n)
	if err != nil {
		t.Errorf("count listener connections: %v", err)
	}
	return n
}

// killListeners terminates every LISTEN connection to this database and returns how many it
// terminated.
func (s *storeReader) killListeners(t *testing.T) int {
	t.Helper()
	rows, err := s.pool.Query(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
		db.ListenerApplicationName)
	if err != nil {
		t.Errorf("terminate listener connections: %v", err)
		return 0
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			t.Errorf("terminate listener connections: %v", err)
			return n
		}
		if ok {
			n++
		}
	}
	return n
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// objectKey returns the informer cache key and the resourceVersion of obj.
func objectKey(obj any) (string, int64, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", 0, err
	}
	rv, err := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%s/%s: resourceVersion %q: %w", m.GetNamespace(), m.GetName(), m.GetResourceVersion(), err)
	}
	key := m.GetName()
	if m.GetNamespace() != "" {
		key = m.GetNamespace() + "/" + key
	}
	return key, rv, nil
}

// recorder keeps every event an informer's handler receives, in order.
type recorder struct {
	mu     sync.Mutex
	events []event
	last   int64 // resourceVersion of the newest event
	errs   []string
}

func (r *recorder) record(typ string, obj any, initial bool) {
	key, rv, err := objectKey(obj)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s event: %v", typ, err))
		return
	}
	r.events = append(r.events, event{Type: typ, Key: key, RV: rv, Initial: initial})
	r.last = max(r.last, rv)
}

func (r *recorder) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { r.record("add", obj, initial) },
		UpdateFunc: func(_, obj any) { r.record("update", obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				r.record("delete-unknown", d.Obj, false)
				return
			}
			r.record("delete", obj, false)
		},
	}
}

func (r *recorder) lastRV() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *recorder) snapshot() ([]event, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), slices.Clone(r.errs)
}

// checkEvents compares what an informer's handler received with the truth: first an add for
// every object of initial (the state when it synced, at revision from), then exactly the change
// log after from, in order. It reports missing, extra, duplicated and out-of-order events.
func checkEvents(t *testing.T, who string, rec *recorder, initial map[string]storedObject, from int64, changes []event) {
	t.Helper()
	got, errs := rec.snapshot()
	for _, e := range errs {
		t.Errorf("%s: %s", who, e)
	}
	// The initial list: one add per object, in any order.
	n := 0
	for n < len(got) && got[n].Initial {
		n++
	}
	initialGot := map[string]int64{}
	for _, e := range got[:n] {
		if _, dup := initialGot[e.Key]; dup {
			t.Errorf("%s: initial list has %s twice", who, e.Key)
		}
		initialGot[e.Key] = e.RV
	}
	for key, o := range initial {
		if rv, ok := initialGot[key]; !ok {
			t.Errorf("%s: initial list misses %s@%d", who, key, o.RV)
		} else if rv != o.RV {
			t.Errorf("%s: initial list has %s@%d, want @%d", who, key, rv, o.RV)
		}
	}
	for key, rv := range initialGot {
		if _, ok := initial[key]; !ok {
			t.Errorf("%s: initial list has %s@%d, which did not exist", who, key, rv)
		}
	}

	// Then every change, in revision order: the same sequence as the change log.
	rest := got[n:]
	prev := from
	for i, e := range rest {
		if e.Initial {
			t.Errorf("%s: event %d (%v) is an initial-list add after the initial list: the informer relisted", who, n+i, e)
		}
		if e.RV <= prev {
			t.Errorf("%s: event %d (%v) does not come after revision %d: out of order or duplicated", who, n+i, e, prev)
		}
		prev = max(prev, e.RV)
	}
	if slices.EqualFunc(rest, changes, func(a, b event) bool { return a.Type == b.Type && a.Key == b.Key && a.RV == b.RV }) {
		return
	}
	want := map[int64]event{}
	for _, c := range changes {
		want[c.RV] = c
	}
	seen := map[int64]int{}
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(who+": "+format, args...)
		}
	}
	for _, e := range rest {
		seen[e.RV]++
		switch c, ok := want[e.RV]; {
		case !ok:
			report("extra event %v: no change at that revision", e)
		case seen[e.RV] > 1:
			report("duplicate event %v", e)
		case c.Type != e.Type || c.Key != e.Key:
			report("event %v, but the change at that revision is %v", e, c)
		}
	}
	for _, c := range changes {
		if seen[c.RV] == 0 {
			report("missed %v", c)
		}
	}
	t.Errorf("%s: %d events after the initial list, change log has %d; %d problems (first 20 shown)", who, len(rest), len(changes), bad)
}

// normalizeJSON returns v as generic JSON values (numbers as float64), for comparisons.
func normalizeJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// requestLog records the requests a client configuration sends.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	Method, Path string
	Query        url.Values
	Accept       string
	At           time.Time
}

func (r loggedRequest) String() string {
	return r.Method + " " + r.Path + "?" + r.Query.Encode()
}

func (r loggedRequest) isWatch() bool {
	return r.Query.Get("watch") == "true" || r.Query.Get("watch") == "1"
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// wrap returns a copy of cfg whose requests are logged.
func (l *requestLog) wrap(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			l.mu.Lock()
			l.reqs = append(l.reqs, loggedRequest{
				Method: req.Method, Path: req.URL.Path, Query: req.URL.Query(),
				Accept: req.Header.Get("Accept"), At: time.Now(),
			})
			l.mu.Unlock()
			return rt.RoundTrip(req)
		})
	})
	return c
}

func (l *requestLog) requests() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// isWatchList tells whether r is the request an informer starts with in WatchList mode.
func (r loggedRequest) isWatchList() bool {
	return r.isWatch() && r.Query.Get("sendInitialEvents") == "true" &&
		r.Query.Get("allowWatchBookmarks") == "true" && r.Query.Get("resourceVersionMatch") == "NotOlderThan"
}

// checkWatchListOnly checks that an informer synced through WatchList alone: its requests are
// watches, the first one with sendInitialEvents, and it never fell back to a LIST. metadataOnly
// also checks it asked for PartialObjectMetadata.
func checkWatchListOnly(t *testing.T, who string, log *requestLog, wantWatches int, metadataOnly bool) {
	t.Helper()
	reqs := log.requests()
	if len(reqs) == 0 {
		t.Errorf("%s sent no request", who)
		return
	}
	if !reqs[0].isWatchList() {
		t.Errorf("%s: first request %s is not a WatchList request (sendInitialEvents=true, allowWatchBookmarks=true, resourceVersionMatch=NotOlderThan)", who, reqs[0])
	}
	for _, r := range reqs {
		if !r.isWatch() {
			t.Errorf("%s sent %s: a LIST, so WatchList was not used or failed", who, r)
		}
		if metadataOnly && !strings.Contains(r.Accept, "as=PartialObjectMetadata;g=meta.k8s.io;v=v1") {
			t.Errorf("%s sent Accept %q, want PartialObjectMetadata", who, r.Accept)
		}
	}
	if wantWatches > 0 && len(reqs) != wantWatches {
		t.Errorf("%s sent %d requests, want %d (a watch that ended or failed was re-opened): %v", who, len(reqs), wantWatches, reqs)
	}
}

// collectEvents reads events from w until stop returns true for one (which is included) and
// returns them. Error events and a closed watch fail the test.
func collectEvents(t *testing.T, who string, w watch.Interface, timeout time.Duration, stop func(watch.Event) bool) []watch.Event {
	t.Helper()
	var out []watch.Event
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("%s: watch closed after %d events: %v", who, len(out), reduce(t, out))
			}
			if ev.Type == watch.Error {
				t.Fatalf("%s: error event after %d events: %s", who, len(out), statusOf(ev.Object))
			}
			out = append(out, ev)
			if stop(ev) {
				return out
			}
		case <-timer.C:
			t.Fatalf("%s: watch did not reach its end within %v; got %d events: %v", who, timeout, len(out), reduce(t, out))
		}
	}
}

// collect reads the events of w up to the one at resourceVersion until, ignoring bookmarks.
func collect(t *testing.T, who string, w watch.Interface, until int64) []event {
	t.Helper()
	evs := collectEvents(t, who, w, 30*time.Second, func(ev watch.Event) bool {
		if ev.Type == watch.Bookmark {
			return false
		}
		_, rv, err := objectKey(ev.Object)
		return err != nil || rv >= until
	})
	return reduce(t, evs)
}

// reduce turns watch events into events, dropping bookmarks.
func reduce(t *testing.T, evs []watch.Event) []event {
	t.Helper()
	var out []event
	for _, ev := range evs {
		if ev.Type == watch.Bookmark {
			continue
		}
		key, rv, err := objectKey(ev.Object)
		if err != nil {
			t.Errorf("%s event: %v", ev.Type, err)
			continue
		}
		out = append(out, event{Type: changeEventTypes[string(ev.Type)], Key: key, RV: rv})
	}
	return out
}

// sameEvents compares two event sequences and reports the first difference.
func sameEvents(t *testing.T, who string, got, want []event) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: got %d events, want %d; first difference at %d:\ngot:  %v\nwant: %v", who, len(got), len(want), i, got, want)
}

func statusOf(obj runtime.Object) string {
	b, _ := json.Marshal(obj)
	return string(b)
}

// apiPath is the collection path of kind (in namespace, for namespaced kinds).
func apiPath(k reports.Kind, namespace string) string {
	p := "/apis/" + k.GroupVersion.Group + "/" + k.GroupVersion.Version
	if k.Namespaced {
		p += "/namespaces/" + namespace
	}
	return p + "/" + k.Resource
}

// partition is a network link between a client and a server that the test can cut: while it is
// cut, every new request fails as if the server refused the connection (requests already
// answered, such as an open watch, go on until they end).
type partition struct {
	mu     sync.Mutex
	down   bool
	denied int
	open   int // responses whose bodies are not closed yet (open watches)
}

func (p *partition) cut()     { p.mu.Lock(); p.down = true; p.mu.Unlock() }
func (p *partition) restore() { p.mu.Lock(); p.down = false; p.mu.Unlock() }

// refused is the number of requests refused while the link was cut.
func (p *partition) refused() int { p.mu.Lock(); defer p.mu.Unlock(); return p.denied }

// opened is the number of responses through the link whose bodies are still open: 0 once every
// watch that was open when the link was cut has ended.
func (p *partition) opened() int { p.mu.Lock(); defer p.mu.Unlock(); return p.open }

// wrap returns a copy of cfg whose requests go through the link.
func (p *partition) wrap(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(p.wrapTransport)
	return c
}

// wrapTransport returns rt behind the link.
func (p *partition) wrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		p.mu.Lock()
		down := p.down
		if down {
			p.denied++
		}
		p.mu.Unlock()
		if down {
			return nil, fmt.Errorf("dial %s: test partition: %w", req.URL.Host, syscall.ECONNREFUSED)
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.open++
		p.mu.Unlock()
		resp.Body = &partitionBody{ReadCloser: resp.Body, p: p}
		return resp, nil
	})
}

// partitionBody counts itself out of the link's open responses when it is closed.
type partitionBody struct {
	io.ReadCloser
	p    *partition
	once sync.Once
}

func (b *partitionBody) Close() error {
	b.once.Do(func() {
		b.p.mu.Lock()
		b.p.open--
		b.p.mu.Unlock()
	})
	return b.ReadCloser.Close()
}
