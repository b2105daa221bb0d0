package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestReportKinds runs the full life cycle of an object of every served kind through the dynamic
// client: create, get, list with label and field selectors, conflicting update, the three patch
// types, delete and delete-collection, plus generateName and dry-run.
func TestReportKinds(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	client := srv.dynamicClient(t)
	metaClient := srv.metadataClient(t)
	for _, kind := range reports.All() {
		t.Run(kind.Kind, func(t *testing.T) {
			t.Parallel()
			testLifecycle(t, client, metaClient, kind)
		})
	}
}

func testLifecycle(t *testing.T, client dynamic.Interface, meta metadata.Interface, kind reports.Kind) {
	ctx := context.Background()
	ns := "team-" + strings.ToLower(kind.Kind)
	res := resourceFor(client, kind, ns)
	prefix := strings.ToLower(kind.Kind) + "-"
	name1, name2, name3 := prefix+"one", prefix+"two", prefix+"three"

	// Create.
	created, err := res.Create(ctx, sample(kind, ns, name1, map[string]string{"app": "a", "tier": "web"}, "Pod", "pass"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", name1, err)
	}
	if created.GetUID() == "" || created.GetResourceVersion() == "" || created.GetCreationTimestamp().Time.IsZero() {
		t.Errorf("create did not set uid/resourceVersion/creationTimestamp: %v", created.Object["metadata"])
	}
	if created.GetGeneration() != 1 {
		t.Errorf("generation after create = %d, want 1", created.GetGeneration())
	}
	for _, obj := range []*unstructured.Unstructured{
		sample(kind, ns, name2, map[string]string{"app": "b"}, "Deployment", "fail"),
		sample(kind, ns, name3, map[string]string{"app": "b", "keep": "yes"}, "Deployment", "warn"),
	} {
		if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}
	// A second create of the same name is a conflict, not an overwrite.
	_, err = res.Create(ctx, sample(kind, ns, name1, nil, "Pod", "fail"), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Errorf("duplicate create: got %v, want AlreadyExists", err)
	}

	// Get.
	got, err := res.Get(ctx, name1, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetUID() != created.GetUID() || got.GetLabels()["tier"] != "web" {
		t.Errorf("get returned %v, want the created object", got.Object["metadata"])
	}
	if r := nestedInt(t, got, contentPath(kind, "summary", "pass")...); r != 1 {
		t.Errorf("summary.pass = %d, want 1", r)
	}

	// List with selectors.
	list := func(opts metav1.ListOptions) []string {
		t.Helper()
		l, err := res.List(ctx, opts)
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		return names(l)
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	expect("list all", list(metav1.ListOptions{}), name1, name2, name3)
	// Metadata-only lists, as the metadata informers of Kyverno and Policy Reporter use them.
	var metaRes metadata.ResourceInterface = meta.Resource(kind.GroupVersionResource())
	if kind.Namespaced {
		metaRes = meta.Resource(kind.GroupVersionResource()).Namespace(ns)
	}
	ml, err := metaRes.List(ctx, metav1.ListOptions{LabelSelector: "app=b"})
	if err != nil {
		t.Fatalf("metadata list: %v", err)
	}
	var metaNames []string
	for _, item := range ml.Items {
		metaNames = append(metaNames, item.Name)
	}
	slices.Sort(metaNames)
	expect("metadata list app=b", metaNames, name2, name3)
	expect("label app=a", list(metav1.ListOptions{LabelSelector: "app=a"}), name1)
	expect("label app in (b),keep", list(metav1.ListOptions{LabelSelector: "app in (b),keep"}), name3)
	expect("label !keep", list(metav1.ListOptions{LabelSelector: "!keep"}), name1, name2)
	expect("field metadata.name", list(metav1.ListOptions{FieldSelector: "metadata.name=" + name2}), name2)
	expect("field metadata.name!=", list(metav1.ListOptions{FieldSelector: "metadata.name!=" + name2}), name1, name3)
	if hasScope(kind) {
		expect("field scope.kind", list(metav1.ListOptions{FieldSelector: "scope.kind=Deployment"}), name2, name3)
		expect("field and label", list(metav1.ListOptions{FieldSelector: "scope.kind=Deployment", LabelSelector: "keep=yes"}), name3)
	}
	// Unknown fields are rejected, not ignored.
	_, err = res.List(ctx, metav1.ListOptions{FieldSelector: "spec.foo=bar"})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "field label not supported: spec.foo") {
		t.Errorf("unknown field selector: got %v, want 400 field label not supported", err)
	}
	if kind.Namespaced {
		// Listing across namespaces finds the objects too.
		l, err := client.Resource(kind.GroupVersionResource()).List(ctx, metav1.ListOptions{LabelSelector: "app=a"})
		if err != nil {
			t.Fatalf("list all namespaces: %v", err)
		}
		expect("all namespaces app=a", names(l), name1)
	}

	// Update: a change of content bumps the generation; a stale resourceVersion is a conflict.
	stale := got.DeepCopy()
	if err := unstructured.SetNestedField(got.Object, int64(2), contentPath(kind, "summary", "pass")...); err != nil {
		t.Fatal(err)
	}
	updated, err := res.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.GetGeneration() != 2 || updated.GetResourceVersion() == stale.GetResourceVersion() {
		t.Errorf("after update: generation %d (want 2), resourceVersion %s (was %s)",
			updated.GetGeneration(), updated.GetResourceVersion(), stale.GetResourceVersion())
	}
	stale.SetLabels(map[string]string{"app": "stale"})
	if _, err := res.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with stale resourceVersion: got %v, want Conflict", err)
	}
	// A metadata-only update keeps the generation.
	updated.SetAnnotations(map[string]string{"note": "x"})
	updated, err = res.Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("metadata update: %v", err)
	}
	if updated.GetGeneration() != 2 {
		t.Errorf("generation after metadata-only update = %d, want 2", updated.GetGeneration())
	}

	// Merge patch.
	patched, err := res.Patch(ctx, name1, types.MergePatchType, []byte(`{"metadata":{"labels":{"patched":"merge"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("merge patch: %v", err)
	}
	if patched.GetLabels()["patched"] != "merge" || patched.GetLabels()["app"] != "a" {
		t.Errorf("merge patch labels = %v", patched.GetLabels())
	}

	// JSON patch.
	ptr := "/" + strings.Join(contentPath(kind, "summary", "pass"), "/")
	jsonPatch := fmt.Sprintf(`[{"op":"test","path":%q,"value":2},{"op":"replace","path":%q,"value":7}]`, ptr, ptr)
	patched, err = res.Patch(ctx, name1, types.JSONPatchType, []byte(jsonPatch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("json patch: %v", err)
	}
	if v := nestedInt(t, patched, contentPath(kind, "summary", "pass")...); v != 7 {
		t.Errorf("summary.pass after json patch = %d, want 7", v)
	}

	// Server-side apply, by a named field manager, of a partial object.
	apply := map[string]any{
		"apiVersion": kind.GroupVersion.String(),
		"kind":       kind.Kind,
		"metadata":   map[string]any{"name": name1, "labels": map[string]any{"applied": "yes"}},
	}
	if err := unstructured.SetNestedField(apply, int64(3), contentPath(kind, "summary", "fail")...); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(apply)
	applied, err := res.Patch(ctx, name1, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "report-producer"})
	if err != nil {
		t.Fatalf("server-side apply: %v", err)
	}
	if applied.GetLabels()["applied"] != "yes" || nestedInt(t, applied, contentPath(kind, "summary", "fail")...) != 3 ||
		nestedInt(t, applied, contentPath(kind, "summary", "pass")...) != 7 {
		t.Errorf("server-side apply result: labels %v, object %v", applied.GetLabels(), applied.Object)
	}
	var applyEntry *metav1.ManagedFieldsEntry
	for _, mf := range applied.GetManagedFields() {
		if mf.Manager == "report-producer" && mf.Operation == metav1.ManagedFieldsOperationApply {
			applyEntry = &mf
		}
	}
	if applyEntry == nil || applyEntry.FieldsV1 == nil || !strings.Contains(string(applyEntry.FieldsV1.Raw), `"f:applied"`) {
		t.Errorf("managedFields has no Apply entry of report-producer owning labels.applied: %+v", applied.GetManagedFields())
	}
	// Applying over a field another manager owns conflicts unless forced.
	apply2 := map[string]any{"apiVersion": kind.GroupVersion.String(), "kind": kind.Kind, "metadata": map[string]any{"name": name1}}
	_ = unstructured.SetNestedField(apply2, int64(4), contentPath(kind, "summary", "fail")...)
	body, _ = json.Marshal(apply2)
	if _, err := res.Patch(ctx, name1, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "someone-else"}); !apierrors.IsConflict(err) {
		t.Errorf("conflicting apply: got %v, want Conflict", err)
	}
	force := true
	if _, err := res.Patch(ctx, name1, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "someone-else", Force: &force}); err != nil {
		t.Errorf("forced apply: %v", err)
	}
	// Server-side apply creates missing objects.
	name4 := prefix + "applied"
	full, _ := json.Marshal(sample(kind, ns, name4, nil, "Pod", "skip").Object)
	if _, err := res.Patch(ctx, name4, types.ApplyPatchType, full, metav1.PatchOptions{FieldManager: "report-producer"}); err != nil {
		t.Errorf("server-side apply of a new object: %v", err)
	}

	// generateName.
	gen := sample(kind, ns, "", map[string]string{"app": "gen"}, "Pod", "pass")
	gen.SetGenerateName(prefix + "gen-")
	generated, err := res.Create(ctx, gen, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create with generateName: %v", err)
	}
	if !strings.HasPrefix(generated.GetName(), prefix+"gen-") || len(generated.GetName()) <= len(prefix+"gen-") {
		t.Errorf("generated name %q", generated.GetName())
	}

	// Dry run: validated and answered, but not stored.
	dry := sample(kind, ns, prefix+"dry", nil, "Pod", "pass")
	dryResult, err := res.Create(ctx, dry, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if dryResult.GetName() != prefix+"dry" {
		t.Errorf("dry-run create returned %q", dryResult.GetName())
	}
	if _, err := res.Get(ctx, prefix+"dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after dry-run create: got %v, want NotFound", err)
	}

	// Delete.
	if err := res.Delete(ctx, name1, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := res.Get(ctx, name1, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: got %v, want NotFound", err)
	}
	if err := res.Delete(ctx, name1, metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("second delete: got %v, want NotFound", err)
	}

	// Delete collection by label selector: only the selected objects go.
	if err := res.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=b,!keep"}); err != nil {
		t.Fatalf("deletecollection: %v", err)
	}
	expect("after deletecollection", list(metav1.ListOptions{}), name3, name4, generated.GetName())
	if err := res.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("deletecollection of all: %v", err)
	}
	expect("after deleting all", list(metav1.ListOptions{}))
}
