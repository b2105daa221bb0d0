package pgstorage

import (
	"testing"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/storage"
)

// Every label operator a client can send except the numeric gt/lt, and every selectable field
// of the report kinds, must be evaluated by SQL: no rows are fetched just to be dropped in Go.
func TestTranslateRunsSelectorsInSQL(t *testing.T) {
	for _, ls := range []string{"a=b", "a==b", "a!=b", "a in (x,y)", "a notin (x)", "a", "!a", "a=b,c in (d),!e"} {
		for _, fs := range []string{"", "metadata.name=x", "metadata.namespace!=y", "scope.kind=Pod,scope.name=n,scope.namespace=ns"} {
			f := translate(storage.SelectionPredicate{Label: labels.SelectorFromSet(nil).Add(mustReqs(t, ls)...), Field: fields.ParseSelectorOrDie(fs)})
			if !f.complete {
				t.Errorf("labels %q fields %q: not fully translated to SQL", ls, fs)
			}
		}
	}
	for _, tc := range []struct{ labels, fields string }{{"a>1", ""}, {"", "spec.nodeName=n"}} {
		sel, err := labels.Parse(tc.labels)
		if err != nil {
			t.Fatal(err)
		}
		if f := translate(storage.SelectionPredicate{Label: sel, Field: fields.ParseSelectorOrDie(tc.fields)}); f.complete {
			t.Errorf("%+v: claims SQL covers a requirement it cannot express", tc)
		}
	}
}

func mustReqs(t *testing.T, s string) []labels.Requirement {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	reqs, _ := sel.Requirements()
	return reqs
}
