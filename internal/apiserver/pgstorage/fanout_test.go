package pgstorage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/api/apitesting"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// The watch fan-out of issue 3: one follower per process reads each change once and every
// watcher filters it itself; watchers behind the memory window read the log; slow watchers
// are dropped without holding up anybody.

const testCluster = "test"

var testCodec = apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion)

// watchEnv is one "process": a pool, a notifier, a follower and a pod store on a test database.
type watchEnv struct {
	ctx      context.Context
	url      string
	pool     *pgxpool.Pool
	follower *pgstorage.Follower
	store    *pgstorage.Store
}

func newWatchEnv(t testing.TB, url string, fopts pgstorage.FollowerOptions, cfg pgstorage.Config) *watchEnv {
	t.Helper()
	if url == "" {
		url = dbtest.URL(t)
	}
	p := openProcess(t, url)
	f := pgstorage.NewFollower(p.pool, testCluster, p.followerOptions(fopts))
	base := podConfig(p.pool, testCluster)
	cfg.Pool, cfg.Cluster, cfg.Codec, cfg.ResourcePrefix = base.Pool, base.Cluster, base.Codec, base.ResourcePrefix
	cfg.NewFunc, cfg.NewListFunc = base.NewFunc, base.NewListFunc
	// As the registry configures it: the resource's attribute function, which the watchers'
	// predicates use too, so labels and fields are computed once per event.
	cfg.GetAttrs = storage.DefaultNamespaceScopedAttr
	cfg.Follower = f
	s, err := pgstorage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &watchEnv{ctx: p.ctx, url: url, pool: p.pool, follower: f, store: s}
}

func (e *watchEnv) current(t testing.TB) int64 {
	t.Helper()
	rv, err := e.store.GetCurrentResourceVersion(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int64(rv)
}

// waitSynced waits until the follower has read up to rev (it starts with the first watcher).
func (e *watchEnv) waitSynced(t testing.TB, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.follower.Stats().Current < rev {
		if time.Now().After(deadline) {
			t.Fatalf("follower did not reach revision %d: %+v", rev, e.follower.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func podAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	p := obj.(*example.Pod)
	return labels.Set(p.Labels), fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace}, nil
}

func pod(ns, name string, lbls map[string]string) *example.Pod {
	return &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
}

func (e *watchEnv) create(t testing.TB, p *example.Pod) int64 {
	t.Helper()
	out := &example.Pod{}
	if err := e.store.Create(e.ctx, "/pods/"+p.Namespace+"/"+p.Name, p, out, 0); err != nil {
		t.Error(err)
		return 0
	}
	rv, _ := e.store.Versioner().ObjectResourceVersion(out)
	return int64(rv)
}

// got is an event reduced to what the tests compare.
type got struct {
	Type watch.EventType
	Name string // namespace/name
	RV   int64
}

func (g got) String() string { return fmt.Sprintf("%s %s@%d", g.Type, g.Name, g.RV) }

func reduce(t testing.TB, ev watch.Event) got {
	t.Helper()
	if ev.Type == watch.Error {
		t.Fatalf("watch error: %v", apierrors.FromObject(ev.Object))
	}
	p := ev.Object.(*example.Pod)
	rv, err := storage.APIObjectVersioner{}.ObjectResourceVersion(p)
	if err != nil {
		t.Fatal(err)
	}
	return got{Type: ev.Type, Name: p.Namespace + "/" + p.Name, RV: int64(rv)}
}

// collect reads n events from w, failing after timeout.
func collect(t testing.TB, w watch.Interface, n int, timeout time.Duration) []got {
	t.Helper()
	var out []got
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			out = append(out, reduce(t, ev))
		case <-deadline:
			t.Fatalf("timed out after %d of %d events; last: %v", len(out), n, out[max(0, len(out)-3):])
		}
	}
	return out
}

// expectQuiet fails if w delivers anything within d.
func expectQuiet(t testing.TB, w watch.Interface, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if ok {
			t.Errorf("unexpected extra event %v", reduce(t, ev))
		} else {
			t.Errorf("watch closed unexpectedly")
		}
	case <-time.After(d):
	}
}

// replay computes, straight from the change log, the events a watcher of [from, before) with
// selector pred must see after revision after: the specification the fan-out is checked against.
func replay(t testing.TB, pool *pgxpool.Pool, after int64, from, before string, pred storage.SelectionPredicate) []got {
	t.Helper()
	// A change keeps the version it replaced; the one it wrote is the key's next change's
	// prev_object, else the current row (sql/schema/00008_lean_changes.sql).
	rows, err := pool.Query(context.Background(), `SELECT c.resource_version, c.key,
			CASE WHEN c.event <> 'DELETED' THEN coalesce(
				(SELECT n.prev_object FROM changes n WHERE n.cluster = c.cluster AND n.key = c.key
				   AND n.resource_version > c.resource_version ORDER BY n.resource_version LIMIT 1),
				(SELECT r.object FROM reports r WHERE r.cluster = c.cluster AND r.key = c.key
				   AND r.resource_version = c.resource_version)) END,
			c.prev_object
		FROM changes c
		WHERE c.cluster = $1 AND c.resource_version > $2 AND c.key >= $3 AND c.key < $4 ORDER BY c.resource_version`,
		testCluster, after, from, before)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	decode := func(b []byte) *example.Pod {
		if b == nil {
			return nil
		}
		obj, err := runtime.Decode(testCodec, b)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*example.Pod)
	}
	matches := func(p *example.Pod) bool {
		if p == nil {
			return false
		}
		ok, err := pred.Matches(p)
		return err == nil && ok
	}
	var out []got
	for rows.Next() {
		var rev int64
		var key string
		var obj, prev []byte
		if err := rows.Scan(&rev, &key, &obj, &prev); err != nil {
			t.Fatal(err)
		}
		cur, old := decode(obj), decode(prev)
		switch {
		case matches(cur) && matches(old):
			out = append(out, got{watch.Modified, cur.Namespace + "/" + cur.Name, rev})
		case matches(cur):
			out = append(out, got{watch.Added, cur.Namespace + "/" + cur.Name, rev})
		case matches(old):
			out = append(out, got{watch.Deleted, old.Namespace + "/" + old.Name, rev})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func selector(t testing.TB, label, field string) storage.SelectionPredicate {
	t.Helper()
	p := storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything(), GetAttrs: podAttrs}
	if label != "" {
		sel, err := labels.Parse(label)
		if err != nil {
			t.Fatal(err)
		}
		p.Label = sel
	}
	if field != "" {
		sel, err := fields.ParseSelector(field)
		if err != nil {
			t.Fatal(err)
		}
		p.Field = sel
	}
	return p
}

func equalEvents(t testing.TB, name string, want, have []got) {
	t.Helper()
	if len(want) != len(have) {
		t.Errorf("%s: %d events, want %d", name, len(have), len(want))
	}
	for i := range min(len(want), len(have)) {
		if want[i] != have[i] {
			t.Errorf("%s: event %d is %v, want %v (want %v, got %v)", name, i, have[i], want[i],
				want[max(0, i-2):min(len(want), i+3)], have[max(0, i-2):min(len(have), i+3)])
			return
		}
	}
}

// TestFanOutMatchesLogReplay: concurrent writers create, relabel and delete pods in several
// namespaces; watchers with different key ranges and selectors each receive exactly the
// events a replay of the change log gives them (order, types, revisions; objects that start
// or stop matching are ADDED or DELETED), all served from the follower's window with one
// change-log read per revision advance, whatever the number of watchers.
func TestFanOutMatchesLogReplay(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	for i := range 6 {
		e.create(t, pod(fmt.Sprintf("ns%d", i%3), fmt.Sprintf("seed%d", i), map[string]string{"team": "a"}))
	}
	start := e.current(t)

	type spec struct {
		name, key    string
		recursive    bool
		label, field string
	}
	specs := []spec{
		{name: "all", key: "/pods/", recursive: true},
		{name: "ns1", key: "/pods/ns1", recursive: true},
		{name: "team=a", key: "/pods/", recursive: true, label: "team=a"},
		{name: "team in (a,b) in ns2", key: "/pods/", recursive: true, label: "team in (a,b)", field: "metadata.namespace=ns2"},
		{name: "team!=a,tier", key: "/pods/", recursive: true, label: "team!=a,tier"},
		{name: "one key", key: "/pods/ns0/p3"},
		{name: "ns0 without team", key: "/pods/ns0", recursive: true, label: "!team"},
		{name: "tier", key: "/pods/", recursive: true, label: "tier"},
		{name: "team=b,tier=x in ns1", key: "/pods/ns1", recursive: true, label: "team=b,tier=x"},
		{name: "team notin (a),team", key: "/pods/", recursive: true, label: "team notin (a),team"},
	}
	watchers := make([]watch.Interface, len(specs))
	preds := make([]storage.SelectionPredicate, len(specs))
	for i, sp := range specs {
		preds[i] = selector(t, sp.label, sp.field)
		w, err := e.store.Watch(e.ctx, sp.key, storage.ListOptions{
			ResourceVersion: fmt.Sprint(start), Recursive: sp.recursive, Predicate: preds[i],
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		watchers[i] = w
	}
	e.waitSynced(t, start)
	before := e.follower.Stats()

	const writers, ops = 4, 40
	teams := []string{"a", "b", "c", ""}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for range ops {
				ns, name := fmt.Sprintf("ns%d", rnd.IntN(3)), fmt.Sprintf("p%d", rnd.IntN(6))
				key := "/pods/" + ns + "/" + name
				if rnd.IntN(5) == 0 {
					err := e.store.Delete(e.ctx, key, &example.Pod{}, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{})
					if err != nil && !storage.IsNotFound(err) {
						t.Error(err)
					}
					continue
				}
				lbls := map[string]string{}
				if team := teams[rnd.IntN(len(teams))]; team != "" {
					lbls["team"] = team
				}
				if rnd.IntN(2) == 0 {
					lbls["tier"] = "x"
				}
				err := e.store.GuaranteedUpdate(e.ctx, key, &example.Pod{}, true, nil,
					storage.SimpleUpdate(func(runtime.Object) (runtime.Object, error) { return pod(ns, name, lbls), nil }), nil)
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	end := e.current(t)

	for i, sp := range specs {
		from, to := sp.key, sp.key+"\x01"
		if sp.recursive {
			from, to = strings.TrimSuffix(sp.key, "/")+"/", strings.TrimSuffix(sp.key, "/")+"0"
		}
		want := replay(t, e.pool, start, from, to, preds[i])
		have := collect(t, watchers[i], len(want), 30*time.Second)
		equalEvents(t, sp.name, want, have)
	}
	for _, w := range watchers {
		expectQuiet(t, w, 200*time.Millisecond)
	}
	after := e.follower.Stats()
	if after.LogReads != 0 {
		t.Errorf("watchers read the change log %d times; everything was in the window", after.LogReads)
	}
	if reads, revs := after.FollowerReads-before.FollowerReads, end-start; reads > revs+2 {
		t.Errorf("follower read the change log %d times for %d revisions and %d watchers; want at most one read per revision", reads, revs, len(specs))
	}
}

// TestWatcherBehindWindowReadsLog: with a tiny window, a watcher whose consumer pauses falls
// behind it and catches up from the change log, without gaps or duplicates; so does a watcher
// that starts before the window. Both bounds of the window (events, bytes) hold.
func TestWatcherBehindWindowReadsLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fopts pgstorage.FollowerOptions
	}{
		{"events", pgstorage.FollowerOptions{WindowEvents: 8}},
		{"bytes", pgstorage.FollowerOptions{WindowBytes: 16 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatchEnv(t, "", tc.fopts, pgstorage.Config{})
			start := e.current(t)
			paused, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: storage.Everything})
			if err != nil {
				t.Fatal(err)
			}
			defer paused.Stop()
			e.waitSynced(t, start)

			// More than the watcher's buffer (10), so it stops taking changes for a while.
			const n = 180
			payload := strings.Repeat("x", 1500)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += 4 {
						p := pod("ns", fmt.Sprintf("p%03d", i), nil)
						p.Annotations = map[string]string{"payload": payload}
						e.create(t, p)
					}
				}()
			}
			wg.Wait()
			e.waitSynced(t, e.current(t))
			st := e.follower.Stats()
			if tc.fopts.WindowEvents > 0 && st.WindowEvents > tc.fopts.WindowEvents {
				t.Errorf("window holds %d events, bound %d", st.WindowEvents, tc.fopts.WindowEvents)
			}
			if tc.fopts.WindowBytes > 0 && st.WindowBytes > tc.fopts.WindowBytes {
				t.Errorf("window holds %d bytes, bound %d", st.WindowBytes, tc.fopts.WindowBytes)
			}
			if st.WindowStart <= start {
				t.Fatalf("window still starts at %d (test start %d): it was not bounded", st.WindowStart, start)
			}

			want := replay(t, e.pool, start, "/pods/", "/pods0", storage.Everything)
			if len(want) != n {
				t.Fatalf("change log has %d changes, want %d", len(want), n)
			}
			equalEvents(t, "paused watcher", want, collect(t, paused, n, 30*time.Second))

			late, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: storage.Everything})
			if err != nil {
				t.Fatal(err)
			}
			defer late.Stop()
			equalEvents(t, "watcher starting before the window", want, collect(t, late, n, 30*time.Second))
			expectQuiet(t, paused, 100*time.Millisecond)
			expectQuiet(t, late, 100*time.Millisecond)
			if reads := e.follower.Stats().LogReads; reads == 0 {
				t.Errorf("no watcher read the change log, but both were behind the window")
			}
		})
	}
}

// TestSlowWatchersAreDropped: 50 watchers that never read and one that does. Writes keep
// flowing, the reader sees every event in order, and the stuck watchers are closed once their
// buffer has stayed full for the slow-watcher timeout (after delivering what they buffered).
func TestSlowWatchersAreDropped(t *testing.T) {
	const timeout = time.Second
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{SlowWatcherTimeout: timeout})
	start := e.current(t)
	opts := storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: storage.Everything}
	stuck := make([]watch.Interface, 50)
	for i := range stuck {
		w, err := e.store.Watch(e.ctx, "/pods/", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		stuck[i] = w
	}
	reader, err := e.store.Watch(e.ctx, "/pods/", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Stop()
	e.waitSynced(t, start)

	const n = 250 // more than a watcher's buffer
	began := time.Now()
	var wg sync.WaitGroup
	for w := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 5 {
				e.create(t, pod("ns", fmt.Sprintf("p%03d", i), nil))
			}
		}()
	}
	events := collect(t, reader, n, 60*time.Second)
	wg.Wait()
	t.Logf("%d writes and their events with 50 stuck watchers: %v", n, time.Since(began))
	for i := 1; i < len(events); i++ {
		if events[i].RV <= events[i-1].RV || events[i].Type != watch.Added {
			t.Fatalf("reader events out of order or wrong: %v then %v", events[i-1], events[i])
		}
	}

	// Nobody reads the stuck watchers: each is closed once its send has waited for the timeout.
	// (Reading one before that would unblock it: a consumer that comes back is not dropped.)
	deadline := time.Now().Add(timeout + 30*time.Second)
	for e.follower.Stats().Dropped < int64(len(stuck)) {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d of %d stuck watchers", e.follower.Stats().Dropped, len(stuck))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, w := range stuck {
		buffered := 0
		timeout := time.After(10 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-w.ResultChan():
				if !ok {
					break drain
				}
				buffered++
			case <-timeout:
				t.Fatalf("stuck watcher %d was not closed", i)
			}
		}
		if buffered == 0 || buffered >= n {
			t.Errorf("stuck watcher %d delivered %d buffered events, want some but not all %d", i, buffered, n)
		}
	}
	if d := e.follower.Stats().Dropped; d != int64(len(stuck)) {
		t.Errorf("dropped %d watchers, want %d", d, len(stuck))
	}
	// The reader is still fine.
	rv := e.create(t, pod("ns", "after", nil))
	if ev := collect(t, reader, 1, 10*time.Second); ev[0].RV != rv {
		t.Errorf("reader after the drop: %v, want revision %d", ev[0], rv)
	}
}

// TestPeriodicBookmarks: a watcher that allows bookmarks gets them at the configured interval,
// carrying the current revision once it has caught up, even when the revision moved outside
// its key range.
func TestPeriodicBookmarks(t *testing.T) {
	t.Parallel()
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{BookmarkInterval: 200 * time.Millisecond})
	start := e.current(t)
	pred := storage.Everything
	pred.AllowWatchBookmarks = true
	w, err := e.store.Watch(e.ctx, "/pods/ns1", storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: pred})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.create(t, pod("ns1", "a", nil))
	other := e.create(t, pod("ns2", "b", nil)) // outside the watcher's range

	nextBookmark := func(min int64) int64 {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatal("watch closed")
				}
				g := reduce(t, ev)
				if g.Type == watch.Bookmark && g.RV >= min {
					return g.RV
				}
			case <-deadline:
				t.Fatalf("no bookmark at revision %d or later", min)
			}
		}
	}
	// A bookmark may come between the two creates (at a's revision) on a slow machine; the one
	// after them carries the current revision although that change is outside the range.
	if got := nextBookmark(other); got != other {
		t.Errorf("bookmark at revision %d, want the current revision %d", got, other)
	}
	last := e.create(t, pod("ns3", "c", nil))
	if got := nextBookmark(last); got != last {
		t.Errorf("bookmark at revision %d, want %d", got, last)
	}
}

// TestIdleWatcherSurvivesCompaction: a watcher with nothing in its range is never woken, so
// its own revision gets old; when a change finally comes in range after the window has moved
// on and the log has been compacted past that revision (by another process), it gets the
// change from the window, not a 410 and not a log read.
func TestIdleWatcherSurvivesCompaction(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{WindowEvents: 8}, pgstorage.Config{})
	start := e.current(t)
	w, err := e.store.Watch(e.ctx, "/pods/quiet", storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.waitSynced(t, start)
	for i := range 40 {
		e.create(t, pod("busy", fmt.Sprintf("p%d", i), nil))
	}
	// Another process compacts: this process's follower learns of it only from the log.
	other := pgstorage.NewCompactor(e.pool, testCluster, pgstorage.CompactorOptions{MaxEvents: 5, Log: quietLog})
	if _, err := other.Pass(e.ctx); err != nil {
		t.Fatal(err)
	}
	compacted := e.current(t) - 6
	e.waitSynced(t, e.current(t))
	if st := e.follower.Stats(); st.WindowStart <= start {
		t.Fatalf("window still starts at %d, before the watcher's revision %d", st.WindowStart, start)
	}
	if compacted <= start {
		t.Fatalf("compacted %d is not past the watcher's revision %d", compacted, start)
	}
	rv := e.create(t, pod("quiet", "finally", nil))
	equalEvents(t, "idle watcher", []got{{watch.Added, "quiet/finally", rv}}, collect(t, w, 1, 10*time.Second))
	if n := e.follower.Stats().LogReads; n != 0 {
		t.Errorf("the idle watcher read the change log %d times", n)
	}
}

// TestSelectorWatchersWokenOnlyByTheirLabels: watchers whose label selector requires a value (as
// Kyverno's audit.kyverno.io/resource.uid=<uid> watches do) are woken only by changes whose new
// or replaced object carries it; each still gets exactly its events, including the DELETED of an
// object that loses the label.
func TestSelectorWatchersWokenOnlyByTheirLabels(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	start := e.current(t)
	const watchers = 200
	ws := make([]watch.Interface, watchers)
	for i := range watchers {
		w, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{
			ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: selector(t, fmt.Sprintf("uid in (u%d,x%d)", i, i), ""),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		ws[i] = w
	}
	e.waitSynced(t, start)
	before := e.follower.Stats()

	// Noise no watcher selects, then three changes for watcher 7 and one for watcher 9.
	for i := range 30 {
		e.create(t, pod("ns", fmt.Sprintf("noise%d", i), map[string]string{"uid": "none", "app": "x"}))
	}
	added := e.create(t, pod("ns", "seven", map[string]string{"uid": "u7"}))
	update := func(p *example.Pod) int64 {
		var rv int64
		err := e.store.GuaranteedUpdate(e.ctx, "/pods/ns/"+p.Name, &example.Pod{}, true, nil,
			storage.SimpleUpdate(func(runtime.Object) (runtime.Object, error) { return p, nil }), nil)
		if err != nil {
			t.Fatal(err)
		}
		rv = e.current(t)
		return rv
	}
	modified := update(pod("ns", "seven", map[string]string{"uid": "x7"}))
	lost := update(pod("ns", "seven", map[string]string{"uid": "u9"})) // leaves 7, joins 9

	equalEvents(t, "watcher 7", []got{
		{watch.Added, "ns/seven", added}, {watch.Modified, "ns/seven", modified}, {watch.Deleted, "ns/seven", lost},
	}, collect(t, ws[7], 3, 10*time.Second))
	equalEvents(t, "watcher 9", []got{{watch.Added, "ns/seven", lost}}, collect(t, ws[9], 1, 10*time.Second))
	for i, w := range ws {
		if i != 7 && i != 9 {
			expectQuiet(t, w, time.Millisecond)
		}
	}
	e.waitSynced(t, e.current(t))
	// Change 1 wakes 7; change 2 wakes 7; change 3 wakes 7 (old labels) and 9 (new ones); a
	// watcher is woken once per follower read, so changes read together wake 7 once.
	if n := e.follower.Stats().Wakeups - before.Wakeups; n < 2 || n > 4 {
		t.Errorf("%d watcher wake-ups for 33 changes; want 2 to 4 (only the watchers whose label a change carries)", n)
	}
}

// A closed follower ends its watches cleanly (the result channel closes without an error event,
// so client-go resumes from its resourceVersion) and reads nothing more: the server closes it
// when it has stopped serving, before its pool closes.
func TestClosedFollowerEndsWatches(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{PollInterval: 10 * time.Millisecond}, pgstorage.Config{})
	start := e.current(t)
	opts := storage.ListOptions{ResourceVersion: fmt.Sprint(start), Recursive: true, Predicate: storage.Everything}
	w, err := e.store.Watch(e.ctx, "/pods/", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rev := e.create(t, pod("ns", "before-close", nil))
	if got := collect(t, w, 1, 10*time.Second); got[0].RV != rev {
		t.Fatalf("event before close: %v, want revision %d", got[0], rev)
	}

	e.follower.Close()
	select {
	case ev, ok := <-w.ResultChan():
		if ok {
			t.Fatalf("after Close the watch sent %s %#v instead of ending", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end within 10s of Close")
	}

	// A watch started after Close ends too, and no run reads the change log again.
	late, err := e.store.Watch(e.ctx, "/pods/", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	for range late.ResultChan() { // the initial events up to now, then the end
	}
	reads := e.follower.Stats().FollowerReads
	e.create(t, pod("ns", "after-close", nil))
	time.Sleep(200 * time.Millisecond) // 20 poll intervals
	if after := e.follower.Stats().FollowerReads; after != reads {
		t.Fatalf("the closed follower read the change log %d more times", after-reads)
	}
}
