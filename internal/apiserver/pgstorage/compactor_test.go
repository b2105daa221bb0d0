package pgstorage_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func (e *watchEnv) changeRows(t testing.TB, cond string, args ...any) int64 {
	t.Helper()
	var n int64
	q := "SELECT count(*) FROM changes WHERE cluster = '" + testCluster + "'"
	if cond != "" {
		q += " AND " + cond
	}
	if err := e.pool.QueryRow(e.ctx, q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// firstEvent returns the first event of a watch.
func firstEvent(t testing.TB, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed without an event")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return watch.Event{}
}

func isExpired(ev watch.Event) bool {
	if ev.Type != watch.Error {
		return false
	}
	st, ok := ev.Object.(*metav1.Status)
	return ok && st.Reason == metav1.StatusReasonExpired && st.Code == 410
}

// TestCompactionRetention: a pass compacts what is older than the window (and no more), takes
// one revision, does nothing when nothing is due (an idle cluster does not spend revisions),
// and then watches and exact lists before the compacted revision get 410 while those at or
// after it work. MaxEvents caps the history whatever the window says.
func TestCompactionRetention(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	var revs []int64
	for i := range 5 {
		revs = append(revs, e.create(t, pod("ns", fmt.Sprintf("p%d", i), nil)))
	}
	// The first three changes were recorded an hour ago.
	if _, err := e.pool.Exec(e.ctx, "UPDATE changes SET recorded_at = now() - interval '1 hour' WHERE cluster = $1 AND resource_version <= $2", testCluster, revs[2]); err != nil {
		t.Fatal(err)
	}
	c := pgstorage.NewCompactor(e.pool, testCluster, pgstorage.CompactorOptions{Window: 10 * time.Minute, Follower: e.follower, Log: quietLog})
	before := e.current(t)
	if led, err := c.Pass(e.ctx); err != nil || !led {
		t.Fatalf("pass: led=%v err=%v", led, err)
	}
	if got := e.store.CompactRevision(); got != revs[2] {
		t.Errorf("CompactRevision()=%d, want %d (the last change older than the window)", got, revs[2])
	}
	if n := e.changeRows(t, "resource_version <= $1", revs[2]); n != 0 {
		t.Errorf("%d compacted change rows are left", n)
	}
	if n := e.changeRows(t, "resource_version > $1", revs[2]); n != 2 {
		t.Errorf("%d change rows within the window, want 2", n)
	}
	if cur := e.current(t); cur != before+1 {
		t.Errorf("compaction moved the revision from %d to %d, want one step", before, cur)
	}
	if led, err := c.Pass(e.ctx); err != nil || !led {
		t.Fatalf("second pass: led=%v err=%v", led, err)
	}
	if cur := e.current(t); cur != before+1 {
		t.Errorf("a pass with nothing due moved the revision to %d", cur)
	}

	// 410 before the compacted revision, for watches and exact lists.
	old, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(revs[1]), Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Stop()
	if ev := firstEvent(t, old); !isExpired(ev) {
		t.Errorf("watch from a compacted revision: %v, want 410 Expired", ev)
	}
	list := &example.PodList{}
	err = e.store.GetList(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(revs[1]), ResourceVersionMatch: metav1.ResourceVersionMatchExact, Recursive: true, Predicate: storage.Everything}, list)
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("exact list at a compacted revision: %v, want 410", err)
	}
	// At the compacted revision itself: the changes after it are all there.
	if err := e.store.GetList(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(revs[2]), ResourceVersionMatch: metav1.ResourceVersionMatchExact, Recursive: true, Predicate: storage.Everything}, list); err != nil {
		t.Errorf("exact list at the compacted revision: %v", err)
	} else if len(list.Items) != 3 {
		t.Errorf("exact list at the compacted revision has %d items, want 3", len(list.Items))
	}
	w, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(revs[2]), Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	equalEvents(t, "watch from the compacted revision", []got{{watch.Added, "ns/p3", revs[3]}, {watch.Added, "ns/p4", revs[4]}}, collect(t, w, 2, 10*time.Second))

	// MaxEvents caps the history whatever the window says.
	capped := pgstorage.NewCompactor(e.pool, testCluster, pgstorage.CompactorOptions{Window: time.Hour, MaxEvents: 1, Follower: e.follower, Log: quietLog})
	if _, err := capped.Pass(e.ctx); err != nil {
		t.Fatal(err)
	}
	cur := e.current(t)
	if got := e.store.CompactRevision(); got != cur-2 {
		// The pass compacted to (revision before it) - MaxEvents, then took a revision.
		t.Errorf("with MaxEvents=1: CompactRevision()=%d, want %d", got, cur-2)
	}
	expectQuiet(t, w, 100*time.Millisecond) // it is past the compacted revision
}

// TestCompactionLeadership: two compactors of separate "processes" (pools) on one database
// never compact at the same time: the leader's critical section is checked in-process (only
// the advisory lock can serialise two database sessions) and against pg_locks, while writes
// keep coming. A session holding the lock keeps both out.
func TestCompactionLeadership(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	var inside atomic.Int32
	var overlaps, lockErrs atomic.Int64
	var led [2]atomic.Int64
	compactors := make([]*pgstorage.Compactor, 2)
	for i := range compactors {
		pool, err := db.Open(e.ctx, e.url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		c := pgstorage.NewCompactor(pool, testCluster, pgstorage.CompactorOptions{MaxEvents: 5, Interval: 2 * time.Millisecond, BatchSize: 2, Log: quietLog})
		c.OnLeading(func(ctx context.Context) {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			var holders int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND classid::bigint = $1 AND objid::bigint = (hashtext($2)::bigint & 4294967295) AND objsubid = 2`,
				pgstorage.CompactionLockClass, testCluster).Scan(&holders)
			if ctx.Err() == nil && (err != nil || holders != 1) { // (a pass stopped by the test's end may fail)
				lockErrs.Add(1)
				t.Errorf("compaction lock holders: %d (%v), want 1", holders, err)
			}
			time.Sleep(2 * time.Millisecond)
			led[i].Add(1)
			inside.Add(-1)
		})
		compactors[i] = c
	}

	// Deterministic part: while another session holds the lock, nobody leads.
	holder, err := pgx.Connect(e.ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(e.ctx)
	if _, err := holder.Exec(e.ctx, "SELECT pg_advisory_lock($1, hashtext($2))", pgstorage.CompactionLockClass, testCluster); err != nil {
		t.Fatal(err)
	}
	for i, c := range compactors {
		if ok, err := c.Pass(e.ctx); err != nil || ok {
			t.Fatalf("compactor %d led while another session held the lock (err %v)", i, err)
		}
	}
	if _, err := holder.Exec(e.ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", pgstorage.CompactionLockClass, testCluster); err != nil {
		t.Fatal(err)
	}

	// Both run on a short interval while a writer writes.
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for _, c := range compactors {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			p := pod("ns", fmt.Sprintf("p%d", i), nil)
			if err := e.store.Create(ctx, "/pods/ns/"+p.Name, p, nil, 0); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for led[0].Load()+led[1].Load() < 40 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("passes led: %d and %d; writes: %d", led[0].Load(), led[1].Load(), writes.Load())
	if n := overlaps.Load(); n > 0 {
		t.Errorf("compactors overlapped %d times", n)
	}
	if total := led[0].Load() + led[1].Load(); total < 40 {
		t.Errorf("only %d passes led in 20s", total)
	}
	// The history is capped: one more pass leaves at most MaxEvents revisions of changes. (A
	// pass cancelled above may have closed its connection, whose lock the server releases
	// when that backend has exited: retry until this pass leads.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		led, err := compactors[0].Pass(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if led {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pass led after the compactors stopped")
		}
	}
	if n := e.changeRows(t, ""); n > 5 {
		t.Errorf("%d change rows left with MaxEvents=5", n)
	}
}

// TestCompactionDoesNotBlockWriters: while the bulk DELETE of a large compaction is in progress
// (held up here by a row lock on one of the rows it deletes), writes complete, and the
// compacted revision is already in force (410 for older exact lists).
func TestCompactionDoesNotBlockWriters(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	e.create(t, pod("ns", "first", nil))
	// A large history, written straight into the change log of another resource.
	const rows = 20_000
	var base int64
	err := db.Tx(e.ctx, e.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(e.ctx, "SELECT current FROM revisions WHERE cluster = $1 FOR UPDATE", testCluster).Scan(&base); err != nil {
			return err
		}
		if _, err := tx.Exec(e.ctx, `INSERT INTO changes (cluster, resource_version, key, event)
			SELECT $1, $2 + g, '/history/ns/h' || g, 'ADDED' FROM generate_series(1, $3::int) g`, testCluster, base, rows); err != nil {
			return err
		}
		_, err := tx.Exec(e.ctx, "UPDATE revisions SET current = $2 WHERE cluster = $1", testCluster, base+rows)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	top := base + rows

	// Hold a lock on a row in the first DELETE batch, so the DELETE waits for us.
	blocker, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(e.ctx)
	if _, err := blocker.Exec(e.ctx, "SELECT 1 FROM changes WHERE cluster = $1 AND resource_version = $2 FOR UPDATE", testCluster, base+100); err != nil {
		t.Fatal(err)
	}
	c := pgstorage.NewCompactor(e.pool, testCluster, pgstorage.CompactorOptions{BatchSize: 1000, Follower: e.follower, Log: quietLog})
	done := make(chan error, 1)
	go func() { done <- c.Compact(e.ctx, top) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DeleteCompactedChanges%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the compaction DELETE never started")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The DELETE is in progress: writes go through.
	wctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	began := time.Now()
	out := &example.Pod{}
	p := pod("ns", "during", nil)
	if err := e.store.Create(wctx, "/pods/ns/during", p, out, 0); err != nil {
		t.Fatalf("write during compaction: %v", err)
	}
	t.Logf("write during the compaction DELETE took %v", time.Since(began))
	if out.ResourceVersion != fmt.Sprint(top+2) {
		t.Errorf("write got revision %s, want %d (after the compaction's own)", out.ResourceVersion, top+2)
	}
	if got := e.store.CompactRevision(); got != top {
		t.Errorf("CompactRevision()=%d during the DELETE, want %d", got, top)
	}
	err = e.store.GetList(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(base), ResourceVersionMatch: metav1.ResourceVersionMatchExact, Recursive: true, Predicate: storage.Everything}, &example.PodList{})
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("exact list below the compacted revision during the DELETE: %v, want 410", err)
	}
	select {
	case err := <-done:
		t.Fatalf("compaction finished while its DELETE was blocked: %v", err)
	default:
	}

	if err := blocker.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("compaction did not finish")
	}
	if n := e.changeRows(t, "resource_version <= $1", top); n != 0 {
		t.Errorf("%d change rows at or below the compacted revision are left", n)
	}
	if n := e.changeRows(t, ""); n != 1 {
		t.Errorf("%d change rows left, want the one written during the compaction", n)
	}
}

// TestExpireThrough: after the migration from CRDs expires the etcd resourceVersions, a watch
// from one of ours or from an etcd one (higher than any of ours) gets 410, an open watcher is
// ended with 410 so its client relists, exact-RV lists are too old, and new writes get revisions
// above the etcd one, still in order.
func TestExpireThrough(t *testing.T) {
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	old := e.create(t, pod("ns", "a", nil))
	open, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(old), Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Stop()
	e.waitSynced(t, old)

	const etcdRV = 7_000_000
	c := pgstorage.NewCompactor(e.pool, testCluster, pgstorage.CompactorOptions{Log: quietLog})
	if err := c.ExpireThrough(e.ctx, etcdRV); err != nil {
		t.Fatal(err)
	}
	if ev := firstEvent(t, open); !isExpired(ev) {
		t.Errorf("open watcher got %v, want 410 Expired", ev)
	}
	for _, rv := range []int64{old, etcdRV} {
		w, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(rv), Recursive: true, Predicate: storage.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if ev := firstEvent(t, w); !isExpired(ev) {
			t.Errorf("watch from %d got %v, want 410 Expired", rv, ev)
		}
		w.Stop()
	}
	var list example.PodList
	err = e.store.GetList(e.ctx, "/pods/", storage.ListOptions{
		ResourceVersion: fmt.Sprint(old), ResourceVersionMatch: metav1.ResourceVersionMatchExact, Recursive: true, Predicate: storage.Everything,
	}, &list)
	if !storage.IsTooLargeResourceVersion(err) && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("exact list at %d: %v, want too old", old, err)
	}
	next := e.create(t, pod("ns", "b", nil))
	if next <= etcdRV {
		t.Errorf("new write got revision %d, want above %d", next, etcdRV)
	}
	w, err := e.store.Watch(e.ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(next - 1), Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := firstEvent(t, w); ev.Type != watch.Added {
		t.Errorf("watch from the new revision got %v, want ADDED", ev.Type)
	}
}
