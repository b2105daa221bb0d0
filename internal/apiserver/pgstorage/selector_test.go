package pgstorage_test

import (
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// TestSelectorsMatchApimachinery checks that selectors evaluated in SQL select exactly what
// k8s.io/apimachinery's matchers select, for every label operator and the field selectors on
// metadata.name and metadata.namespace, with and without paging.
func TestSelectorsMatchApimachinery(t *testing.T) {
	ctx, s := newStore(t)
	var pods []*example.Pod
	envs := []string{"", "prod", "dev", "test"}
	for i := range 24 {
		lbls := map[string]string{"app": fmt.Sprintf("a%d", i%3)}
		if env := envs[i%4]; env != "" {
			lbls["env"] = env
		}
		if i%5 == 0 {
			lbls["tier"] = "web"
		}
		p := &example.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("ns%d", i%2), Name: fmt.Sprintf("p%02d", i), Labels: lbls,
		}}
		out := &example.Pod{}
		if err := s.Create(ctx, fmt.Sprintf("/pods/%s/%s", p.Namespace, p.Name), p, out, 0); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, out)
	}
	labelSelectors := []string{
		"", "app=a1", "app==a1", "app!=a1", "app in (a0,a2)", "app notin (a0,a2)", "env", "!env",
		"env in (prod)", "env notin (prod,dev)", "app=a1,env=prod", "app=a1,app=a2", "tier,env!=dev",
		"!tier,app in (a1,a2),env", "missing", "!missing", "missing notin (x)",
	}
	fieldSelectors := []string{
		"", "metadata.name=p03", "metadata.name!=p03", "metadata.namespace=ns1",
		"metadata.namespace=ns1,metadata.name!=p05", "metadata.namespace==ns0,metadata.name=p05",
	}
	for _, ls := range labelSelectors {
		for _, fs := range fieldSelectors {
			lsel, err := labels.Parse(ls)
			if err != nil {
				t.Fatal(err)
			}
			fsel, err := fields.ParseSelector(fs)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, p := range pods {
				if lsel.Matches(labels.Set(p.Labels)) && fsel.Matches(fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace}) {
					want = append(want, p.Namespace+"/"+p.Name)
				}
			}
			for _, limit := range []int64{0, 1, 5} {
				pred := storage.SelectionPredicate{Label: lsel, Field: fsel, Limit: limit, GetAttrs: storage.DefaultNamespaceScopedAttr}
				var got []string
				cont := ""
				for page := 0; ; page++ {
					if page > 30 {
						t.Fatalf("%q %q limit %d: too many pages", ls, fs, limit)
					}
					pred.Continue = cont
					list := &example.PodList{}
					if err := s.GetList(ctx, "/pods/", storage.ListOptions{Predicate: pred, Recursive: true}, list); err != nil {
						t.Fatalf("%q %q: %v", ls, fs, err)
					}
					if limit > 0 && int64(len(list.Items)) > limit {
						t.Fatalf("%q %q: page of %d items for limit %d", ls, fs, len(list.Items), limit)
					}
					for _, p := range list.Items {
						got = append(got, p.Namespace+"/"+p.Name)
					}
					if cont = list.Continue; cont == "" {
						break
					}
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("labels %q fields %q limit %d:\n got %v\nwant %v", ls, fs, limit, got, want)
				}
			}
		}
	}
}
