package pgstorage_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// TestInitialEventsArePagedAtOneRevision: the initial state of a watch spans several pages and
// objects change while the watcher is still reading it. The ADDED events must be exactly the
// state at the watch's starting revision (not a mix of old and new), followed by the changes.
func TestInitialEventsArePagedAtOneRevision(t *testing.T) {
	ctx, s := newStore(t)
	const n = 1234 // more than two pages of initial events
	for i := range n {
		p := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%04d", i)}}
		if err := s.Create(ctx, "/pods/ns/"+p.Name, p, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.Watch(ctx, "/pods/", storage.ListOptions{ResourceVersion: "", Recursive: true, Predicate: storage.Everything})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() watch.Event {
		t.Helper()
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event within 30s")
		}
		return watch.Event{}
	}
	first := next()
	if first.Type != watch.Added || first.Object.(*example.Pod).Name != "p0000" {
		t.Fatalf("first event %v %v", first.Type, first.Object)
	}
	// While the watcher is in its first page: delete an object of the last page and add one.
	last := &example.Pod{}
	if err := s.Delete(ctx, "/pods/ns/p1233", last, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "/pods/ns/p9999", &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p9999"}}, nil, 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		ev := next()
		if want := fmt.Sprintf("p%04d", i); ev.Type != watch.Added || ev.Object.(*example.Pod).Name != want {
			t.Fatalf("initial event %d: %v %s, want ADDED %s", i, ev.Type, ev.Object.(*example.Pod).Name, want)
		}
	}
	if ev := next(); ev.Type != watch.Deleted || ev.Object.(*example.Pod).Name != "p1233" {
		t.Fatalf("after the initial state: %v %s, want DELETED p1233", ev.Type, ev.Object.(*example.Pod).Name)
	}
	if ev := next(); ev.Type != watch.Added || ev.Object.(*example.Pod).Name != "p9999" {
		t.Fatalf("after the deletion: %v %s, want ADDED p9999", ev.Type, ev.Object.(*example.Pod).Name)
	}
}
