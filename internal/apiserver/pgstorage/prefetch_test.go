package pgstorage_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// TestListReadAhead pages through lists whose next page the store reads ahead (prefetch.go):
// every continuation takes the page read for it, and gets exactly what reading it would give,
// the state at the list's revision, also when objects change between pages; a continuation
// with other selectors reads its own page; after compaction a continuation is 410 Gone even
// with its page read ahead.
func TestListReadAhead(t *testing.T) {
	ctx, s := newStore(t)
	for i := range 23 {
		lbls := map[string]string{"parity": strconv.Itoa(i % 2)}
		for _, ns := range []string{"a", "b"} {
			p := pod(ns, fmt.Sprintf("p%02d", i), lbls)
			if err := s.Create(ctx, "/pods/"+ns+"/"+p.Name, p, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(key string, pred storage.SelectionPredicate, rv string) (*example.PodList, error) {
		out := &example.PodList{}
		opts := storage.ListOptions{Recursive: true, Predicate: pred, ResourceVersion: rv}
		if rv != "" {
			opts.ResourceVersionMatch = "Exact"
		}
		return out, s.GetList(ctx, key, opts, out)
	}
	names := func(l *example.PodList) []string {
		var out []string
		for _, p := range l.Items {
			out = append(out, p.Namespace+"/"+p.Name+"@"+p.ResourceVersion)
		}
		return out
	}
	// pages lists key in pages of limit, running between after each page, and returns every
	// item and the first page's revision.
	pages := func(key string, sel labels.Selector, limit int64, between func(page int)) ([]string, string) {
		t.Helper()
		pred := storage.Everything
		pred.Label, pred.Limit = sel, limit
		var all []string
		rv := ""
		for page := 0; ; page++ {
			l, err := list(key, pred, "")
			if err != nil {
				t.Fatal(err)
			}
			if page == 0 {
				rv = l.ResourceVersion
			} else if l.ResourceVersion != rv {
				t.Fatalf("page %d at revision %s, the list's is %s", page, l.ResourceVersion, rv)
			}
			all = append(all, names(l)...)
			if l.Continue == "" {
				return all, rv
			}
			between(page)
			pred.Continue = l.Continue
		}
	}
	// want is the list of key at revision rv, read in one page.
	want := func(key string, sel labels.Selector, rv string) []string {
		t.Helper()
		pred := storage.Everything
		pred.Label = sel
		l, err := list(key, pred, rv)
		if err != nil {
			t.Fatal(err)
		}
		return names(l)
	}
	used := func() int64 { return s.PrefetchStats().Used }

	t.Run("every continuation takes its page", func(t *testing.T) {
		before := used()
		got, rv := pages("/pods/", labels.Everything(), 5, func(int) {})
		if w := want("/pods/", labels.Everything(), rv); !slices.Equal(got, w) {
			t.Fatalf("paged list:\n%v\nwant\n%v", got, w)
		}
		// 46 pods in pages of 5: ten pages, nine continuations.
		if n := used() - before; n != 9 {
			t.Errorf("%d pages taken from the read-ahead, want 9", n)
		}
	})

	t.Run("changes between pages are not seen", func(t *testing.T) {
		sel := labels.SelectorFromSet(labels.Set{"parity": "1"})
		before := used()
		created := 0
		got, rv := pages("/pods/b/", sel, 3, func(page int) {
			// Change the keys ahead of the page read ahead and behind it.
			for _, name := range []string{fmt.Sprintf("p%02d", 21-page), fmt.Sprintf("p%02d", page)} {
				if err := s.Delete(ctx, "/pods/b/"+name, &example.Pod{}, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil && !storage.IsNotFound(err) {
					t.Fatal(err)
				}
			}
			created++
			p := pod("b", fmt.Sprintf("p%02dx", created), map[string]string{"parity": "1"})
			if err := s.Create(ctx, "/pods/b/"+p.Name, p, nil, 0); err != nil {
				t.Fatal(err)
			}
		})
		if w := want("/pods/b/", sel, rv); !slices.Equal(got, w) || len(w) != 11 {
			t.Fatalf("paged list:\n%v\nwant (the state at %s, 11 pods)\n%v", got, rv, w)
		}
		if n := used() - before; n != 3 {
			t.Errorf("%d pages taken from the read-ahead, want 3", n)
		}
	})

	t.Run("other selectors read their own page", func(t *testing.T) {
		pred := storage.Everything
		pred.Limit = 4
		first, err := list("/pods/a/", pred, "")
		if err != nil {
			t.Fatal(err)
		}
		before := used()
		pred.Continue = first.Continue
		pred.Label = labels.SelectorFromSet(labels.Set{"parity": "0"})
		next, err := list("/pods/a/", pred, "")
		if err != nil {
			t.Fatal(err)
		}
		if n := used() - before; n != 0 {
			t.Errorf("a continuation with another label selector took %d pages read ahead for the first", n)
		}
		for _, p := range next.Items {
			if p.Labels["parity"] != "0" || p.Name <= first.Items[len(first.Items)-1].Name {
				t.Errorf("continuation returned %s/%s (labels %v)", p.Namespace, p.Name, p.Labels)
			}
		}
	})

	t.Run("after compaction a continuation is gone", func(t *testing.T) {
		pred := storage.Everything
		pred.Limit = 4
		first, err := list("/pods/a/", pred, "")
		if err != nil {
			t.Fatal(err)
		}
		// A change after the list's revision, then compaction past it.
		p := pod("a", "late", nil)
		if err := s.Create(ctx, "/pods/a/late", p, nil, 0); err != nil {
			t.Fatal(err)
		}
		cur, err := s.GetCurrentResourceVersion(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Compact(ctx, int64(cur)); err != nil {
			t.Fatal(err)
		}
		pred.Continue = first.Continue
		_, err = list("/pods/a/", pred, "")
		if !apierrors.IsResourceExpired(err) {
			t.Fatalf("continuation after compaction: %v, want 410 Gone", err)
		}
	})

	if st := s.PrefetchStats(); st.Skipped != 0 {
		t.Errorf("read-ahead skipped %d pages, with one list at a time", st.Skipped)
	}
}
