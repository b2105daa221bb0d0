package pgstorage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// fuzzPods stores a few pods with labels and names that selectors can aim at, text with
// characters that matter to SQL included.
func fuzzPods(ctx context.Context, t testing.TB, s testStore) []*example.Pod {
	t.Helper()
	var pods []*example.Pod
	for i, v := range []string{"a", "b", "a-b", "a.b", "a_b", "x", ""} {
		p := &example.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("ns%d", i%2), Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"app": v, "n": fmt.Sprint(i)},
		}}
		if v == "" {
			p.Labels = nil
		}
		out := &example.Pod{}
		if err := s.Create(ctx, fmt.Sprintf("/pods/%s/%s", p.Namespace, p.Name), p, out, 0); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, out)
	}
	return pods
}

// clientError tells whether err is an answer a client may get: nil, an API status below 500,
// or the apiserver's "too large resource version" (504 with a retry: the revision may come).
func clientError(err error) bool {
	if err == nil || storage.IsTooLargeResourceVersion(err) {
		return true
	}
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code < 500
}

// FuzzSelectorsToSQL: any label and field selector the apiserver parses, translated to SQL and
// run on PostgreSQL, selects exactly what apimachinery's matchers select, and never fails with
// a server error. Its seed corpus runs with every go test.
func FuzzSelectorsToSQL(f *testing.F) {
	ctx, s := newStore(f)
	pods := fuzzPods(ctx, f, s)
	for _, seed := range [][2]string{
		{"", ""}, {"app=a", ""}, {"app!=a", "metadata.name!=p1"}, {"app in (a,b),n", ""}, {"!app", "metadata.namespace=ns1"},
		{"app notin (a_b)", "metadata.name=p%"}, {"n=3", "metadata.name=p3"}, {"app=a.b", "metadata.name=\x00"},
		{"app", "metadata.namespace=ns0,metadata.name!=p2"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, ls, fs string) {
		lsel, err := labels.Parse(ls)
		if err != nil {
			return
		}
		fsel, err := fields.ParseSelector(fs)
		if err != nil {
			return
		}
		var want []string
		for _, p := range pods {
			if lsel.Matches(labels.Set(p.Labels)) && fsel.Matches(fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace}) {
				want = append(want, p.Namespace+"/"+p.Name)
			}
		}
		pred := storage.SelectionPredicate{Label: lsel, Field: fsel, GetAttrs: storage.DefaultNamespaceScopedAttr}
		list := &example.PodList{}
		err = s.GetList(ctx, "/pods/", storage.ListOptions{Predicate: pred, Recursive: true}, list)
		if !clientError(err) {
			t.Fatalf("labels %q fields %q: %v", ls, fs, err)
		}
		if err != nil {
			return
		}
		var got []string
		for _, p := range list.Items {
			got = append(got, p.Namespace+"/"+p.Name)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("labels %q fields %q: got %v, want %v", ls, fs, got, want)
		}
	})
}

// FuzzContinueTokens: a list with any continue token, limit and resourceVersion answers with a
// page or a client error (400, 410), never a server error.
func FuzzContinueTokens(f *testing.F) {
	ctx, s := newStore(f)
	fuzzPods(ctx, f, s)
	first := &example.PodList{}
	pred := storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything(), Limit: 2, GetAttrs: storage.DefaultNamespaceScopedAttr}
	if err := s.GetList(ctx, "/pods/", storage.ListOptions{Predicate: pred, Recursive: true}, first); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		token, rv string
		limit     int64
	}{
		{first.Continue, "", 2}, {"", "", 1}, {"garbage", "", 1}, {first.Continue, "1", 2},
		{"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJhXHUwMDAwYiJ9", "", 1}, {"", "9223372036854775808", 5},
		{"", "abc", 0}, {first.Continue, "", 9223372036854775807},
	} {
		f.Add(seed.token, seed.rv, seed.limit)
	}
	f.Fuzz(func(t *testing.T, token, rv string, limit int64) {
		if limit < 0 {
			return // the apiserver refuses negative limits before storage
		}
		p := pred
		p.Limit, p.Continue = limit, token
		list := &example.PodList{}
		err := s.GetList(ctx, "/pods/", storage.ListOptions{Predicate: p, Recursive: true, ResourceVersion: rv}, list)
		if !clientError(err) {
			t.Fatalf("continue %q resourceVersion %q limit %d: %v", token, rv, limit, err)
		}
	})
}
