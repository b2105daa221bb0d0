package integration

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// isEphemeral tells whether the kind keeps its content under spec (reports.kyverno.io).
func isEphemeral(k reports.Kind) bool { return k.GroupVersion.Group == "reports.kyverno.io" }

// hasScope tells whether the kind has a top-level scope that can be selected with scope.kind.
func hasScope(k reports.Kind) bool { return slices.Contains(k.SelectableFields, "scope.kind") }

// contentPath is the path of a top-level content field (summary, results) of kind.
func contentPath(k reports.Kind, field ...string) []string {
	if isEphemeral(k) {
		return append([]string{"spec"}, field...)
	}
	return field
}

// sample returns a valid report of kind: one result with the given outcome, a matching summary and,
// for kinds with a scope, a scope of scopeKind.
func sample(k reports.Kind, namespace, name string, labels map[string]string, scopeKind, result string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(k.GroupVersion.String())
	u.SetKind(k.Kind)
	u.SetName(name)
	if k.Namespaced {
		u.SetNamespace(namespace)
	}
	if labels != nil {
		u.SetLabels(labels)
	}
	set := func(value any, field ...string) {
		if err := unstructured.SetNestedField(u.Object, value, contentPath(k, field...)...); err != nil {
			panic(err)
		}
	}
	set(map[string]any{result: int64(1)}, "summary")
	set([]any{map[string]any{
		"policy":  "require-labels",
		"rule":    "check-team",
		"result":  result,
		"message": fmt.Sprintf("rule %s", result),
		"scored":  true,
		"source":  "kyverno",
		"timestamp": map[string]any{
			"seconds": int64(1698822302),
			"nanos":   int64(0),
		},
	}}, "results")
	if isEphemeral(k) {
		set(map[string]any{
			"apiVersion": "v1",
			"kind":       scopeKind,
			"name":       name + "-owner",
			"uid":        "6c737f35-260c-4e4f-8516-61a125c9fb78",
		}, "owner")
	}
	if hasScope(k) {
		set(map[string]any{"apiVersion": "v1", "kind": scopeKind, "name": name + "-scope", "namespace": namespace}, "scope")
	}
	return u
}

// resourceFor returns the dynamic client of kind, in namespace for namespaced kinds.
func resourceFor(c dynamic.Interface, k reports.Kind, namespace string) dynamic.ResourceInterface {
	r := c.Resource(k.GroupVersionResource())
	if k.Namespaced {
		return r.Namespace(namespace)
	}
	return r
}

// metadataResourceFor returns the metadata client of kind, in namespace for namespaced kinds.
func metadataResourceFor(c metadata.Interface, k reports.Kind, namespace string) metadata.ResourceInterface {
	r := c.Resource(k.GroupVersionResource())
	if k.Namespaced {
		return r.Namespace(namespace)
	}
	return r
}

// names returns the names of the items of a list, sorted.
func names(l *unstructured.UnstructuredList) []string {
	var out []string
	for _, item := range l.Items {
		out = append(out, item.GetName())
	}
	slices.Sort(out)
	return out
}

func nestedInt(t *testing.T, u *unstructured.Unstructured, field ...string) int64 {
	t.Helper()
	v, found, err := unstructured.NestedInt64(u.Object, field...)
	if err != nil || !found {
		t.Fatalf("%s/%s: field %v: found=%v err=%v", u.GetKind(), u.GetName(), field, found, err)
	}
	return v
}

// kindNamed returns the served kind called name.
func kindNamed(t *testing.T, name string) reports.Kind {
	t.Helper()
	for _, k := range reports.All() {
		if k.Kind == name {
			return k
		}
	}
	t.Fatalf("no served kind %q", name)
	return reports.Kind{}
}

// createConcurrently calls create(i) for i in 1..n from workers goroutines and fails tb on the
// first error (benchmarks load their data this way).
func createConcurrently(tb testing.TB, workers, n int, create func(i int) error) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				if err := create(i); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
}
