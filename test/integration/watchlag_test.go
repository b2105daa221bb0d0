package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// TestWatchLaggingWatcherAcrossCompaction compacts the change log past a watcher that is far
// behind: its client does not read, so the server-side watcher is stuck in the middle of the
// changes it has read. The compaction happens while the servers' LISTEN connections are down, so
// server B's watch machinery does not hear of it at once. When the client reads again, the watch
// must deliver a gap-free prefix of the change log and then either catch up or end (410 Expired,
// or closed), so that the client relists. Skipping the compacted changes and carrying on silently
// is the failure: the client would never learn of them.
//
// The contract is implementation-independent; the numbers are chosen to catch the watcher of
// the first implementation, which reads the change log in batches of 500 and checked the
// compacted revision it last heard of (not one read with the changes) before each batch.
func TestWatchLaggingWatcherAcrossCompaction(t *testing.T) {
	t.Parallel()
	began := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	a := startServer(t)
	b := startServerOn(t, a.DatabaseURL)
	phase("servers started")
	store := openStore(t, a.DatabaseURL)
	polr := kindNamed(t, "PolicyReport")
	gvr := polr.GroupVersionResource()
	const ns = "lag"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientA, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The watching client speaks HTTP/1.1 without compression over a socket with a small receive
	// buffer: without HTTP/2's 4 MB stream window and the kernel's receive buffer autotuning,
	// a few hundred events fill what sits between the server and a client that does not read.
	cfgB := rest.CopyConfig(b.Config)
	cfgB.TLSClientConfig.NextProtos = []string{"http/1.1"}
	cfgB.DisableCompression = true
	cfgB.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, address)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.SetReadBuffer(32 << 10)
		}
		return conn, err
	}
	clientB, err := dynamic.NewForConfig(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	resA := resourceFor(clientA, polr, ns)

	// Objects with 16 KB of incompressible text, so that a few hundred events fill every
	// buffer between the server-side watcher and the client that does not read.
	big := func() string {
		b := make([]byte, 12<<10)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	const writers, updatesEach = 4, 145
	var objs []*unstructured.Unstructured
	for w := range writers {
		obj, err := resA.Create(ctx, sample(polr, ns, "lag-"+strconv.Itoa(w), nil, "Pod", "pass"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, obj)
	}
	list, err := clientB.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := strconv.ParseInt(list.GetResourceVersion(), 10, 64)
	var wg sync.WaitGroup
	for w, obj := range objs {
		wg.Go(func() {
			var err error
			for i := range updatesEach {
				results := obj.Object["results"].([]any)
				// The changes the watcher gets stuck in are large; the ones after need not be,
				// but each must change something (an update that changes nothing writes nothing).
				msg := "small " + strconv.Itoa(i)
				if i < 100 {
					msg = big()
				}
				results[0].(map[string]any)["message"] = msg
				if obj, err = resA.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
					t.Errorf("update %d of lag-%d: %v", i, w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	phase("updates written")
	changes := store.changes(t, keyPrefix(polr), from)
	if len(changes) < 560 {
		t.Fatalf("%d changes after %d, want at least 560", len(changes), from)
	}
	last := changes[len(changes)-1].RV

	// The watch from before the updates, not read: the server-side watcher reads a batch of
	// changes and blocks sending it.
	w, err := clientB.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: strconv.FormatInt(from, 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	time.Sleep(2 * time.Second)

	// Take the LISTEN connections down a few times, so that their reconnection backs off, then
	// compact past the watcher's position (just after the first 500 changes) while they are
	// down, and hold server B's view of the revisions still: an ACCESS EXCLUSIVE lock on the
	// revisions table keeps its revision follower (safety poll, resync after reconnecting) from
	// reading the new compacted revision until the client has read on. Writes would wait too;
	// none are made.
	if !waitFor(20*time.Second, func() bool { return store.listenerConnections(t) == 2 }) {
		t.Fatalf("the two servers' LISTEN connections are not both up")
	}
	phase("watch stuck")
	compact := compactor(t, a.DatabaseURL)
	for range 4 {
		store.killListeners(t)
		if !waitFor(20*time.Second, func() bool { return store.listenerConnections(t) == 2 }) {
			t.Fatalf("LISTEN connections not back within 20s")
		}
	}
	store.killListeners(t) // back in 1.6s
	time.Sleep(100 * time.Millisecond)
	compactAt := changes[529].RV
	compact(compactAt)
	phase("compacted")
	tx, err := store.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE revisions IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var got []event
	var unlock sync.Once
	release := func() {
		unlock.Do(func() {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			phase(fmt.Sprintf("revisions unlocked after %d events", len(got)))
		})
	}
	defer release()

	// Now read everything. The lock goes once the watch is past the batch it was stuck in, or
	// when no event has come for 2 seconds (a watch that waits for the revisions, as it may).
	var end string
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastEvent := time.Now()
read:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				end = "closed"
				break read
			}
			lastEvent = time.Now()
			if ev.Type == watch.Error {
				status, _ := ev.Object.(*metav1.Status)
				if status == nil || status.Code != 410 {
					t.Fatalf("error event after %d events: %s", len(got), statusOf(ev.Object))
				}
				end = "410 Expired"
				break read
			}
			got = append(got, reduce(t, []watch.Event{ev})...)
			if len(got) == 510 {
				release()
			}
			if len(got) > 0 && got[len(got)-1].RV >= last {
				end = "caught up"
				break read
			}
		case <-tick.C:
			if time.Since(lastEvent) > 2*time.Second {
				release()
			}
		case <-timer.C:
			t.Fatalf("watch neither caught up nor ended within 60s; %d events", len(got))
		}
	}
	release()
	// A gap-free prefix of the change log: everything from the watch's start, in order.
	for i, e := range got {
		if i >= len(changes) || e != changes[i] {
			want := "nothing"
			if i < len(changes) {
				want = changes[i].String()
			}
			t.Fatalf("event %d is %v, the change log has %s there: the watch skipped %d changes "+
				"(compacted to %d while it was behind) and went on without an error; it ended: %s",
				i, e, want, e.RV-changes[min(i, len(changes)-1)].RV, compactAt, end)
		}
	}
	t.Logf("%d of %d changes delivered, compacted to %d; the watch ended: %s", len(got), len(changes), compactAt, end)
}
