package pgstorage_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestObjectCache lists through the object cache (objectcache.go) and compares every list with
// the same list read by a store without one: a second list finds every object in the cache and
// returns the same; an update, a delete and a create are seen at once; label selections, pages
// and lists at an older revision are exact; metadata-only lists keep and find the metadata
// beside the objects; what the cache keeps is the stored JSON with its resourceVersion, as
// clients receive it, unchanged by the lists that used it.
func TestObjectCache(t *testing.T) {
	p := openProcess(t, dbtest.URL(t))
	cfg := podConfig(p.pool, testCluster)
	cache := cfg.Objects
	s, err := pgstorage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := podConfig(p.pool, testCluster)
	ref.Objects = nil
	plain, err := pgstorage.New(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx := p.ctx
	for i := range 20 {
		po := pod("a", fmt.Sprintf("p%02d", i), map[string]string{"parity": strconv.Itoa(i % 2)})
		if err := s.Create(ctx, "/pods/a/"+po.Name, po, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	list := func(st *pgstorage.Store, pred storage.SelectionPredicate, rv string) *example.PodList {
		t.Helper()
		opts := storage.ListOptions{Recursive: true, Predicate: pred, ResourceVersion: rv}
		if rv != "" {
			opts.ResourceVersionMatch = metav1.ResourceVersionMatchExact
		}
		out := &example.PodList{}
		if err := st.GetList(ctx, "/pods/", opts, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// same lists with and without the cache and returns the cached list.
	same := func(step string, pred storage.SelectionPredicate, rv string) *example.PodList {
		t.Helper()
		got, want := list(s, pred, rv), list(plain, pred, rv)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: through the cache\n%v\nwithout\n%v", step, got, want)
		}
		return got
	}
	stats := func(step string, hits, misses int64) {
		t.Helper()
		if st := cache.Stats(); st.Hits != hits || st.Misses != misses {
			t.Fatalf("%s: %d hits and %d misses so far, want %d and %d", step, st.Hits, st.Misses, hits, misses)
		}
	}

	first := same("first list", storage.Everything, "")
	stats("first list", 0, 20)
	same("second list", storage.Everything, "")
	stats("second list", 20, 20)

	if err := s.GuaranteedUpdate(ctx, "/pods/a/p05", &example.Pod{}, false, nil,
		storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
			po := obj.(*example.Pod)
			po.Spec.NodeName = "changed"
			return po, nil
		}), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/pods/a/p06", &example.Pod{}, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "/pods/a/p99", pod("a", "p99", nil), nil, 0); err != nil {
		t.Fatal(err)
	}
	after := same("after writes", storage.Everything, "")
	stats("after writes", 38, 22) // 18 unchanged found, p05 and p99 read
	if n := len(after.Items); n != 20 || after.Items[5].Spec.NodeName != "changed" {
		t.Fatalf("after writes: %d items, p05's nodeName %q", n, after.Items[5].Spec.NodeName)
	}

	odd := storage.Everything
	odd.Label = labels.SelectorFromSet(labels.Set{"parity": "1"})
	same("label selection", odd, "")
	same("the first list's revision", storage.Everything, first.ResourceVersion)
	paged := storage.Everything
	paged.Limit = 7
	for page := 0; ; page++ {
		l := same(fmt.Sprintf("page %d", page), paged, "")
		if l.Continue == "" {
			break
		}
		paged.Continue = l.Continue
	}

	// Metadata-only reads keep and find each object's metadata beside its stored JSON: the
	// same lists, hits and misses as whole objects.
	mctx := pgstorage.WithMetadataOnly(ctx)
	metadataList := func(st *pgstorage.Store, pred storage.SelectionPredicate) *example.PodList {
		t.Helper()
		out := &example.PodList{}
		if err := st.GetList(mctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: pred}, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	sameMetadata := func(step string, pred storage.SelectionPredicate, hits, misses int64) {
		t.Helper()
		before := cache.Stats()
		got, want := metadataList(s, pred), metadataList(plain, pred)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: through the cache\n%v\nwithout\n%v", step, got, want)
		}
		if st := cache.Stats(); st.Hits-before.Hits != hits || st.Misses-before.Misses != misses {
			t.Fatalf("%s: %d hits and %d misses, want %d and %d", step, st.Hits-before.Hits, st.Misses-before.Misses, hits, misses)
		}
	}
	sameMetadata("first metadata list", storage.Everything, 0, 20)
	sameMetadata("second metadata list", storage.Everything, 20, 0)
	if err := s.GuaranteedUpdate(ctx, "/pods/a/p07", &example.Pod{}, false, nil,
		storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
			po := obj.(*example.Pod)
			po.Labels = map[string]string{"parity": "1", "changed": "yes"}
			return po, nil
		}), nil); err != nil {
		t.Fatal(err)
	}
	sameMetadata("metadata after an update", storage.Everything, 19, 1)
	sameMetadata("metadata of a label selection", odd, 10, 0)
	after = same("after the metadata lists", storage.Everything, "")

	for _, po := range after.Items {
		key := "/pods/a/" + po.Name
		rev, kept, ok := cache.Kept(testCluster, key)
		if !ok || strconv.FormatInt(rev, 10) != po.ResourceVersion {
			t.Fatalf("%s: kept %v at revision %d, listed at %s", key, ok, rev, po.ResourceVersion)
		}
		stored, err := s.RawObject(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		// Kept as clients receive it: the stored JSON with its resourceVersion.
		sent, err := storedjson.WithResourceVersion(stored, rev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kept, sent) {
			t.Fatalf("%s: kept\n%s\nstored, with its resourceVersion\n%s", key, kept, sent)
		}
	}
}
