package pgstorage_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// TestWatchersShareStoredJSON: a change is serialized once for all its plain-JSON watchers, as
// the watch cache's cachingObject does. Each watcher's event writes the very same bytes, the
// stored JSON with the change's resourceVersion set in it, and none of them encodes the object.
func TestWatchersShareStoredJSON(t *testing.T) {
	t.Parallel()
	e := newWatchEnv(t, "", pgstorage.FollowerOptions{}, pgstorage.Config{})
	ctx := pgstorage.WithStoredJSON(e.ctx)
	from := e.current(t)
	var watchers []<-chan watch.Event
	for range 3 {
		w, err := e.store.Watch(ctx, "/pods/", storage.ListOptions{ResourceVersion: fmt.Sprint(from), Recursive: true, Predicate: storage.Everything})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		watchers = append(watchers, w.ResultChan())
	}
	// Watchers that have caught up share the follower's reading of each change (a watcher
	// behind the follower's window reads the change log itself).
	e.waitSynced(t, from)
	rev := e.create(t, pod("ns", "shared", map[string]string{"a": "b"}))

	// A plain JSON watch event of the served version, as the API server's watch handler asks.
	plain := `{"name":"json","pretty":"false","strict":"false","yaml":"false"}`
	codec, _ := json.Marshal(map[string]string{"name": "versioning", "encodeGV": examplev1.SchemeGroupVersion.String(), "encoder": plain})
	id, _ := json.Marshal(map[string]string{"name": "watch", "embeddedEncoder": string(codec), "encoder": string(codec), "eventType": "ADDED"})

	var first []byte
	for i, events := range watchers {
		var ev watch.Event
		select {
		case ev = <-events:
		case <-time.After(10 * time.Second):
			t.Fatalf("watcher %d: no event", i)
		}
		obj, ok := ev.Object.(*storedjson.Object)
		if !ok {
			t.Fatalf("watcher %d got a %T, not a storedjson.Object", i, ev.Object)
		}
		var w writes
		if err := obj.CacheEncode(runtime.Identifier(id), func(runtime.Object, io.Writer) error {
			t.Errorf("watcher %d encoded the object", i)
			return nil
		}, &w); err != nil {
			t.Fatal(err)
		}
		if len(w) != 3 {
			t.Fatalf("watcher %d wrote %q, want the event's start, the object and its end", i, w)
		}
		data := w[1]
		if !bytes.Contains(data, fmt.Appendf(nil, `"resourceVersion":"%d"`, rev)) {
			t.Errorf("watcher %d's object lacks the change's resourceVersion %d: %s", i, rev, data)
		}
		if first == nil {
			first = data
			continue
		}
		if &data[0] != &first[0] || len(data) != len(first) {
			t.Errorf("watcher %d wrote its own copy of the object, not the shared bytes", i)
		}
	}
}

// writes records each slice written, as it was passed (not a copy).
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, p)
	return len(p), nil
}
