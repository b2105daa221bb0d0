package pgstorage_test

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// TestRemainingItemCount checks remainingItemCount around its counting limit, at the current
// revision and at an older one with changes since (created, updated and deleted keys in the
// remaining range): exact below the limit, left out from it on.
func TestRemainingItemCount(t *testing.T) {
	ctx, s := newStore(t)
	s.SetRemainingCountLimit(10)
	for i := range 30 {
		p := pod("a", fmt.Sprintf("p%02d", i), nil)
		if err := s.Create(ctx, "/pods/a/"+p.Name, p, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	// page lists 5 pods after key "after" ("" for the first page) at revision rev (0: current).
	page := func(after string, rev int64) *example.PodList {
		t.Helper()
		pred := storage.Everything
		pred.Limit = 5
		if after != "" {
			if rev == 0 {
				cur, err := s.GetCurrentResourceVersion(ctx)
				if err != nil {
					t.Fatal(err)
				}
				rev = int64(cur)
			}
			token, err := storage.EncodeContinue("/pods/a/"+after+"\x00", "/pods/", rev)
			if err != nil {
				t.Fatal(err)
			}
			pred.Continue = token
		}
		list := &example.PodList{}
		if err := s.GetList(ctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: pred}, list); err != nil {
			t.Fatal(err)
		}
		return list
	}
	remaining := func(l *example.PodList) string {
		if l.RemainingItemCount == nil {
			return "none"
		}
		return fmt.Sprint(*l.RemainingItemCount)
	}
	names := func(l *example.PodList) []string {
		var out []string
		for _, p := range l.Items {
			out = append(out, p.Name)
		}
		return out
	}

	first := page("", 0)
	rev := int64(0)
	if _, err := fmt.Sscan(first.ResourceVersion, &rev); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		after string
		want  string
	}{
		{"", "none"},    // 30 from the first key: beyond the limit
		{"p19", "none"}, // 10 from p20: the limit itself
		{"p20", "4"},    // 9 from p21, 5 on this page
		{"p24", "0"},    // the last page has no token and no count
	} {
		l := page(c.after, rev)
		if c.want == "0" {
			if l.Continue != "" || l.RemainingItemCount != nil {
				t.Errorf("after %q: continue %q, remaining %s; want neither", c.after, l.Continue, remaining(l))
			}
			continue
		}
		if got := remaining(l); got != c.want {
			t.Errorf("after %q at the current revision: remainingItemCount %s, want %s", c.after, got, c.want)
		}
	}

	// Changes after rev: p22 updated, p25 deleted, p26b created, and p27 deleted and
	// re-created. As of rev the remaining range after p20 still holds p21..p29.
	out := &example.Pod{}
	if err := s.GuaranteedUpdate(ctx, "/pods/a/p22", out, false, nil,
		func(obj runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
			p := obj.(*example.Pod)
			p.Labels = map[string]string{"updated": "yes"}
			return p, nil, nil
		}, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p25", "p27"} {
		if err := s.Delete(ctx, "/pods/a/"+name, &example.Pod{}, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"p26b", "p27"} {
		if err := s.Create(ctx, "/pods/a/"+name, pod("a", name, nil), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	l := page("p20", rev)
	if got, want := names(l), []string{"p21", "p22", "p23", "p24", "p25"}; !slices.Equal(got, want) {
		t.Errorf("after p20 at revision %d: %v, want %v", rev, got, want)
	}
	if l.Items[1].Labels["updated"] != "" {
		t.Errorf("after p20 at revision %d: p22 is the version written after it", rev)
	}
	if got := remaining(l); got != "4" {
		t.Errorf("after p20 at revision %d: remainingItemCount %s, want 4", rev, got)
	}
	if got := remaining(page("p20", 0)); got != "4" { // p21..p29 without p25, with p26b
		t.Errorf("after p20 at the current revision: remainingItemCount %s, want 4", got)
	}
	if got := remaining(page("p15", rev)); got != "none" {
		t.Errorf("after p15 at revision %d: remainingItemCount %s, want none (14 remain)", rev, got)
	}
}
