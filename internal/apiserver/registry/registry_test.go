package registry

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/reports-server/reports-server/internal/apis/reports"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

func kindNamed(t *testing.T, name string) reports.Kind {
	t.Helper()
	for _, k := range reports.All() {
		if k.Kind == name {
			return k
		}
	}
	t.Fatalf("no kind %s", name)
	return reports.Kind{}
}

func policyReport(name string) *wgpolicyv1alpha2.PolicyReport {
	return &wgpolicyv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "a"}},
		Scope:      &wgpolicyv1alpha2.ObjectReference{Kind: "Pod", Name: "p"},
	}
}

func TestGenerationFollowsContent(t *testing.T) {
	s := newStrategy(kindNamed(t, "PolicyReport"))
	ctx := context.Background()

	obj := policyReport("r")
	s.PrepareForCreate(ctx, obj)
	if obj.Generation != 1 {
		t.Fatalf("generation after create = %d, want 1", obj.Generation)
	}

	// Metadata changes keep the generation (the registry copied the old one onto the new object).
	meta := obj.DeepCopy()
	meta.Labels["b"] = "c"
	s.PrepareForUpdate(ctx, meta, obj)
	if meta.Generation != 1 {
		t.Errorf("generation after label change = %d, want 1", meta.Generation)
	}

	content := obj.DeepCopy()
	content.Scope.Name = "q"
	s.PrepareForUpdate(ctx, content, obj)
	if content.Generation != 2 {
		t.Errorf("generation after scope change = %d, want 2", content.Generation)
	}
}

func TestValidateNamesAndContent(t *testing.T) {
	s := newStrategy(kindNamed(t, "PolicyReport"))
	ctx := context.Background()
	if errs := s.Validate(ctx, policyReport("good-name")); len(errs) != 0 {
		t.Errorf("valid report: %v", errs)
	}
	if errs := s.Validate(ctx, policyReport("Bad_Name")); len(errs) == 0 || errs[0].Field != "metadata.name" {
		t.Errorf("invalid name: %v", errs)
	}
	noNamespace := policyReport("r")
	noNamespace.Namespace = ""
	if errs := s.Validate(ctx, noNamespace); len(errs) == 0 {
		t.Errorf("namespaced kind without namespace passed validation")
	}
	old := policyReport("r")
	old.ResourceVersion = "1"
	renamed := policyReport("r2")
	renamed.ResourceVersion = "1"
	if errs := s.ValidateUpdate(ctx, renamed, old); len(errs) == 0 {
		t.Errorf("rename passed update validation")
	}
}

func TestGetAttrs(t *testing.T) {
	s := newStrategy(kindNamed(t, "PolicyReport"))
	l, f, err := s.GetAttrs(policyReport("r"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Get("app") != "a" || f.Get("metadata.name") != "r" || f.Get("metadata.namespace") != "ns" || f.Get("scope.kind") != "Pod" {
		t.Errorf("attrs: labels %v fields %v", l, f)
	}
	p := s.MatchReport(labels.SelectorFromSet(labels.Set{"app": "a"}), fields.OneTermEqualSelector("scope.kind", "Pod"))
	if ok, err := p.Matches(policyReport("r")); err != nil || !ok {
		t.Errorf("predicate does not match: %v %v", ok, err)
	}
}

func TestTable(t *testing.T) {
	kind := kindNamed(t, "PolicyReport")
	c := newTableConvertor(kind)
	list := &wgpolicyv1alpha2.PolicyReportList{
		ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: "next"},
		Items:    []wgpolicyv1alpha2.PolicyReport{*policyReport("a"), *policyReport("b")},
	}
	table, err := c.ConvertToTable(context.Background(), list, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, col := range table.ColumnDefinitions {
		cols = append(cols, col.Name)
	}
	if want := []string{"Name", "Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"}; !slices.Equal(cols, want) {
		t.Errorf("columns %v, want %v", cols, want)
	}
	if len(table.Rows) != 2 || table.Rows[1].Cells[0] != "b" || table.Rows[0].Cells[1] != "Pod" {
		t.Errorf("rows %+v", table.Rows)
	}
	if table.Rows[0].Object.Object == nil {
		t.Errorf("rows do not carry their object; includeObject would have nothing to return")
	}
	if table.ResourceVersion != "42" || table.Continue != "next" {
		t.Errorf("list metadata not carried: rv %q continue %q", table.ResourceVersion, table.Continue)
	}

	table, err = c.ConvertToTable(context.Background(), policyReport("one"), &metav1.TableOptions{NoHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(table.ColumnDefinitions) != 0 || len(table.Rows) != 1 {
		t.Errorf("noHeaders: %d columns, %d rows", len(table.ColumnDefinitions), len(table.Rows))
	}

	// A kind whose rows do not fit its columns is a programming error, reported, not printed.
	broken := kind
	broken.TableRow = func(runtime.Object) []any { return []any{"x"} }
	if _, err := newTableConvertor(broken).ConvertToTable(context.Background(), policyReport("x"), nil); err == nil ||
		!strings.Contains(err.Error(), "cells") {
		t.Errorf("mismatched row: err %v", err)
	}
}

func TestCheckKind(t *testing.T) {
	for _, k := range reports.All() {
		if err := checkKind(k); err != nil {
			t.Errorf("%s: %v", k.Kind, err)
		}
	}
	bad := reports.All()[0]
	bad.Singular = ""
	if err := checkKind(bad); err == nil {
		t.Errorf("kind without singular name accepted")
	}
}
