package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/server"
)

// TestWatchResumesFromResourceVersion opens raw watches on server B from the resourceVersion of
// a list, and writes on server A: each watch receives exactly the changes after that revision,
// in order, whether it was opened before the writes (live) or after them (replayed from the
// change log), for all namespaces or one, and from a revision in the middle of the writes.
func TestWatchResumesFromResourceVersion(t *testing.T) {
	t.Parallel()
	a := startServer(t)
	b := startServerOn(t, a.DatabaseURL)
	store := openStore(t, a.DatabaseURL)
	polr := kindNamed(t, "PolicyReport")
	gvr := polr.GroupVersionResource()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientA, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	clientB, err := dynamic.NewForConfig(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	namespaces := []string{"resume-1", "resume-2"}
	for _, ns := range namespaces {
		for i := range 4 {
			if _, err := resourceFor(clientA, polr, ns).Create(ctx, sample(polr, ns, fmt.Sprintf("pre-%d", i), nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := clientB.Resource(gvr).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 8 {
		t.Fatalf("list on B has %d items, want the 8 created on A", len(list.Items))
	}
	rv0 := list.GetResourceVersion()
	from, err := strconv.ParseInt(rv0, 10, 64)
	if err != nil {
		t.Fatalf("list resourceVersion %q: %v", rv0, err)
	}
	watchB := func(ns, rv string) watch.Interface {
		t.Helper()
		r := dynamic.ResourceInterface(clientB.Resource(gvr))
		if ns != "" {
			r = clientB.Resource(gvr).Namespace(ns)
		}
		w, err := r.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			t.Fatalf("watch %q from %s: %v", ns, rv, err)
		}
		t.Cleanup(w.Stop)
		return w
	}
	liveAll := watchB("", rv0)
	liveNS := watchB("resume-2", rv0)

	// Writes on A: updates, deletes, creates, and a name deleted and created again.
	var mid int64
	for i, ns := range namespaces {
		res := resourceFor(clientA, polr, ns)
		for step, write := range []func() error{
			func() error { return relabel(ctx, res, "pre-0", "step", "1") },
			func() error { return res.Delete(ctx, "pre-1", metav1.DeleteOptions{}) },
			func() error {
				_, err := res.Create(ctx, sample(polr, ns, "new", nil, "Pod", "fail"), metav1.CreateOptions{})
				return err
			},
			func() error { return relabel(ctx, res, "new", "step", "2") },
			func() error { return res.Delete(ctx, "new", metav1.DeleteOptions{}) },
			func() error {
				_, err := res.Create(ctx, sample(polr, ns, "new", nil, "Pod", "warn"), metav1.CreateOptions{})
				return err
			},
			func() error { return relabel(ctx, res, "pre-2", "step", "3") },
			func() error { return relabel(ctx, res, "pre-2", "step", "4") },
		} {
			if err := write(); err != nil {
				t.Fatalf("write %d in %s: %v", step, ns, err)
			}
			if i == 0 && step == 4 {
				mid, _ = store.revisions(t)
			}
		}
	}
	replayAll := watchB("", rv0)
	replayNS := watchB("resume-2", rv0)
	replayMid := watchB("", strconv.FormatInt(mid, 10))
	// A last write ends every watch's expected sequence: nothing may come between.
	sentinel, err := resourceFor(clientA, polr, "resume-2").Create(ctx, sample(polr, "resume-2", "sentinel", nil, "Pod", "pass"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.ParseInt(sentinel.GetResourceVersion(), 10, 64)

	changes := store.changes(t, keyPrefix(polr), from)
	if len(changes) != 2*8+1 || changes[len(changes)-1].RV != last {
		t.Fatalf("change log after %d: %v, want the 17 writes ending at %d", from, changes, last)
	}
	var inNS, afterMid []event
	for _, c := range changes {
		if strings.HasPrefix(c.Key, "resume-2/") {
			inNS = append(inNS, c)
		}
		if c.RV > mid {
			afterMid = append(afterMid, c)
		}
	}
	sameEvents(t, "live watch, all namespaces", collect(t, "live watch, all namespaces", liveAll, last), changes)
	sameEvents(t, "live watch, namespace resume-2", collect(t, "live watch, namespace resume-2", liveNS, last), inNS)
	sameEvents(t, "replayed watch, all namespaces", collect(t, "replayed watch, all namespaces", replayAll, last), changes)
	sameEvents(t, "replayed watch, namespace resume-2", collect(t, "replayed watch, namespace resume-2", replayNS, last), inNS)
	sameEvents(t, "replayed watch from the middle", collect(t, "replayed watch from the middle", replayMid, last), afterMid)
}

// relabel sets one label of name (a full PUT with the resourceVersion read).
func relabel(ctx context.Context, res dynamic.ResourceInterface, name, key, value string) error {
	obj, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[key] = value
	obj.SetLabels(labels)
	_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
	return err
}

// compactTo compacts the change log of the servers' cluster to rev.
func compactTo(t *testing.T, databaseURL string, rev int64) {
	t.Helper()
	compactor(t, databaseURL)(rev)
}

// compactor returns a function that compacts the change log of the servers' cluster, through the
// storage's own compaction (pgstorage.Store.Compact, as the server's compactor does it).
func compactor(t *testing.T, databaseURL string) func(rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgstorage.New(pgstorage.Config{
		Pool:        pool,
		Cluster:     server.DefaultClusterName,
		Codec:       unstructured.UnstructuredJSONScheme,
		NewFunc:     func() runtime.Object { return &unstructured.Unstructured{} },
		NewListFunc: func() runtime.Object { return &unstructured.UnstructuredList{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return func(rev int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Compact(ctx, rev); err != nil {
			t.Fatalf("compact to %d: %v", rev, err)
		}
	}
}

// TestWatchFromCompactedResourceVersion compacts the change log under two servers: a watch from
// a compacted resourceVersion gets 410 Expired, a list at an exact compacted revision too, a
// watch from the compacted revision itself still works, and a client-go informer cut off from
// the server while changes were made and compacted away recovers by relisting (its re-watch
// from its last resourceVersion gets 410) and ends up equal to the database.
func TestWatchFromCompactedResourceVersion(t *testing.T) {
	t.Parallel()
	a := startServer(t)
	b := startServerOn(t, a.DatabaseURL)
	store := openStore(t, a.DatabaseURL)
	polr := kindNamed(t, "PolicyReport")
	gvr := polr.GroupVersionResource()
	const ns = "compact"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientA, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	clientB, err := dynamic.NewForConfig(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	resA := resourceFor(clientA, polr, ns)
	for _, name := range []string{"c-1", "c-2"} {
		if _, err := resA.Create(ctx, sample(polr, ns, name, nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := clientB.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rvOld := list.GetResourceVersion()
	if err := relabel(ctx, resA, "c-1", "after", "list"); err != nil {
		t.Fatal(err)
	}

	// An informer on B, behind a network link the test can cut, whose watches end every 3
	// seconds (timeoutSeconds), so that it re-watches from its last resourceVersion soon after
	// the link is back.
	log, link := &requestLog{}, &partition{}
	dynB, err := dynamic.NewForConfig(log.wrap(link.wrap(b.Config)))
	if err != nil {
		t.Fatal(err)
	}
	timeout := int64(3)
	informer := dynamicinformer.NewFilteredDynamicInformer(dynB, gvr, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.TimeoutSeconds = &timeout }).Informer()
	rec := &recorder{}
	if _, err := informer.AddEventHandler(rec.handler()); err != nil {
		t.Fatal(err)
	}
	informerCtx, stopInformer := context.WithCancel(ctx)
	informerDone := make(chan struct{})
	go func() { defer close(informerDone); informer.RunWithContext(informerCtx) }()
	defer func() { stopInformer(); <-informerDone }()
	if !waitFor(30*time.Second, informer.HasSynced) {
		t.Fatalf("informer not synced within 30s; requests: %v", log.requests())
	}

	// Cut the link and wait until the informer's open watch has ended (it tried another).
	link.cut()
	if !waitFor(30*time.Second, func() bool { return link.refused() > 0 }) {
		t.Fatalf("informer's watch did not end within 30s of cutting the link")
	}
	// Changes it cannot see, then compaction past them: its last resourceVersion is gone.
	if err := resA.Delete(ctx, "c-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := relabel(ctx, resA, "c-2", "after", "cut"); err != nil {
		t.Fatal(err)
	}
	if _, err := resA.Create(ctx, sample(polr, ns, "c-3", nil, "Pod", "fail"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	target, _ := store.revisions(t)
	compactTo(t, a.DatabaseURL, target)
	if _, compacted := store.revisions(t); compacted != target {
		t.Fatalf("compacted revision is %d after compacting to %d", compacted, target)
	}
	if rv := rec.lastRV(); rv >= target {
		t.Fatalf("informer saw revision %d while cut off; compacted to %d", rv, target)
	}

	// A watch from a compacted revision: 410 Expired, either as the answer or as its first event.
	w, err := clientB.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rvOld})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("watch from compacted %s: %v, want 410 Expired", rvOld, err)
		}
	} else {
		select {
		case ev := <-w.ResultChan():
			status, ok := ev.Object.(*metav1.Status)
			if ev.Type != watch.Error || !ok || status.Code != 410 || status.Reason != metav1.StatusReasonExpired {
				t.Errorf("watch from compacted %s: first event %s %s, want an ERROR with 410 Expired", rvOld, ev.Type, statusOf(ev.Object))
			}
		case <-time.After(30 * time.Second):
			t.Errorf("watch from compacted %s: no event within 30s, want an ERROR with 410 Expired", rvOld)
		}
		w.Stop()
	}
	// So is a list at exactly that revision.
	_, err = clientB.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{ResourceVersion: rvOld, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("list at compacted %s: %v, want 410 Expired", rvOld, err)
	}
	// A watch from the compacted revision itself sees everything after it.
	fromCompacted, err := clientB.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: strconv.FormatInt(target, 10)})
	if err != nil {
		t.Fatalf("watch from the compacted revision %d: %v", target, err)
	}
	defer fromCompacted.Stop()

	// The link is back: the informer re-watches from its compacted resourceVersion, gets 410,
	// and relists (a WatchList request).
	restored := time.Now()
	link.restore()
	relisted := func() bool {
		for _, r := range log.requests() {
			if r.At.After(restored) && r.isWatchList() {
				return true
			}
		}
		return false
	}
	if !waitFor(30*time.Second, relisted) {
		t.Fatalf("informer did not relist (WatchList request) within 30s of the link coming back; requests: %v", log.requests())
	}
	if !waitFor(30*time.Second, func() bool { return rec.lastRV() >= target-1 }) {
		t.Fatalf("informer did not reach revision %d within 30s of relisting (at %d)", target-1, rec.lastRV())
	}
	checkCache(t, "informer after relisting", informer.GetStore(), store.objects(t, keyPrefix(polr)), true)
	// It learnt of the deletion it missed from the relist.
	events, _ := rec.snapshot()
	if !slices.ContainsFunc(events, func(e event) bool { return e.Type == "delete-unknown" && e.Key == ns+"/c-1" }) {
		t.Errorf("informer events %v: no DeletedFinalStateUnknown for %s/c-1, deleted while it was cut off", events, ns)
	}

	// And it follows new changes again.
	created, err := resA.Create(ctx, sample(polr, ns, "c-4", nil, "Pod", "fail"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.ParseInt(created.GetResourceVersion(), 10, 64)
	if !waitFor(30*time.Second, func() bool { return rec.lastRV() >= last }) {
		t.Fatalf("informer did not see revision %d within 30s (at %d)", last, rec.lastRV())
	}
	checkCache(t, "informer", informer.GetStore(), store.objects(t, keyPrefix(polr)), true)
	sameEvents(t, "watch from the compacted revision", collect(t, "watch from the compacted revision", fromCompacted, last),
		store.changes(t, keyPrefix(polr), target))
	t.Logf("informer requests: %v", log.requests())
}
