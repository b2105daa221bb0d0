// Package registry turns a reports.Kind into a REST resource. There is one strategy and one store
// builder for all report kinds: the kinds differ only in data (names, scope, validation, selectable
// fields, printer columns), which reports.Kind carries, never in code paths.
package registry

import (
	"context"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// strategy is the create, update and delete strategy of one report kind. It behaves like the
// strategy of a CustomResourceDefinition without a status subresource, because the reports were
// CRDs before and clients rely on those semantics:
//   - the whole object is user-owned: there is no spec/status split, so nothing is dropped on
//     create or update;
//   - metadata.generation starts at 1 and is bumped whenever anything outside metadata changes;
//   - names are DNS subdomains;
//   - unconditional updates (PUT without resourceVersion) are allowed, create-on-update is not.
type strategy struct {
	names.NameGenerator
	kind reports.Kind
	// typ is the Go type of kind.New(), used to answer ObjectKinds without a scheme.
	typ reflect.Type
}

var (
	_ rest.RESTCreateStrategy = strategy{}
	_ rest.RESTUpdateStrategy = strategy{}
	_ rest.RESTDeleteStrategy = strategy{}
)

func newStrategy(kind reports.Kind) strategy {
	return strategy{
		NameGenerator: names.SimpleNameGenerator,
		kind:          kind,
		typ:           reflect.TypeOf(kind.New()),
	}
}

func (s strategy) gvk() schema.GroupVersionKind { return s.kind.GroupVersion.WithKind(s.kind.Kind) }

// ObjectKinds implements runtime.ObjectTyper for the one kind this strategy serves. The generic
// registry only uses it to name the kind in errors; answering from the Kind keeps the strategy
// independent of any scheme.
func (s strategy) ObjectKinds(obj runtime.Object) ([]schema.GroupVersionKind, bool, error) {
	if reflect.TypeOf(obj) != s.typ {
		return nil, false, fmt.Errorf("%s strategy got an object of type %T", s.kind.Kind, obj)
	}
	return []schema.GroupVersionKind{s.gvk()}, false, nil
}

// Recognizes implements runtime.ObjectTyper.
func (s strategy) Recognizes(gvk schema.GroupVersionKind) bool { return gvk == s.gvk() }

// NamespaceScoped tells whether the kind lives in namespaces (PolicyReport) or not (ClusterPolicyReport).
func (s strategy) NamespaceScoped() bool { return s.kind.Namespaced }

// PrepareForCreate sets the first generation. Everything else the server owns (uid,
// creationTimestamp, resourceVersion, managedFields) is filled in by the generic registry.
func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetGeneration(1)
	}
}

// PrepareForUpdate bumps metadata.generation when the content outside metadata changed, as the
// apiserver does for custom resources without a status subresource. The generic registry has
// already copied the old generation onto obj, so clients cannot set it.
func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	newMeta, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	oldMeta, err := meta.Accessor(old)
	if err != nil {
		return
	}
	changed, err := contentChanged(obj, old)
	if err != nil || changed {
		// When in doubt, bump: a spurious generation change is harmless, a missed one hides an update.
		newMeta.SetGeneration(oldMeta.GetGeneration() + 1)
	}
}

// contentChanged compares everything but metadata and type meta. It walks the top-level fields
// of the typed object instead of converting both objects to unstructured maps: it runs on every
// update, and reports are large.
func contentChanged(obj, old runtime.Object) (bool, error) {
	a, b := reflect.ValueOf(obj), reflect.ValueOf(old)
	if a.Kind() != reflect.Pointer || b.Kind() != reflect.Pointer || a.Type() != b.Type() || a.Elem().Kind() != reflect.Struct {
		return true, fmt.Errorf("compare %T with %T: want pointers to one struct type", obj, old)
	}
	a, b = a.Elem(), b.Elem()
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if f.Name == "TypeMeta" || f.Name == "ObjectMeta" || !f.IsExported() {
			continue
		}
		if !equality.Semantic.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			return true, nil
		}
	}
	return false, nil
}

// Validate checks metadata the way the apiserver does for custom resources, then the kind's own rules.
func (s strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := apivalidation.ValidateObjectMetaAccessor(m, s.kind.Namespaced, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	return append(errs, s.validateContent(obj)...)
}

// ValidateUpdate checks that immutable metadata did not change, then validates the new object as a whole.
func (s strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	newMeta, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	oldMeta, err := meta.Accessor(old)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := apivalidation.ValidateObjectMetaAccessor(newMeta, s.kind.Namespaced, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	errs = append(errs, apivalidation.ValidateObjectMetaAccessorUpdate(newMeta, oldMeta, field.NewPath("metadata"))...)
	return append(errs, s.validateContent(obj)...)
}

func (s strategy) validateContent(obj runtime.Object) field.ErrorList {
	if s.kind.Validate == nil {
		return nil
	}
	return s.kind.Validate(obj)
}

// WarningsOnCreate returns no warnings: the reports have no deprecated fields.
func (strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }

// WarningsOnUpdate returns no warnings: the reports have no deprecated fields.
func (strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

// Canonicalize leaves objects as they are: clients compare what they wrote with what they read back.
func (strategy) Canonicalize(runtime.Object) {}

// AllowCreateOnUpdate is false: a PUT to a missing report is a 404, as for CRDs.
func (strategy) AllowCreateOnUpdate(context.Context) bool { return false }

// AllowUnconditionalUpdate is false, as for CRDs: a PUT without metadata.resourceVersion is a
// 422 ("must be specified for an update"), so a blind overwrite never silently loses a concurrent
// writer's change. Patches and server-side apply need none.
func (strategy) AllowUnconditionalUpdate(context.Context) bool { return false }

// GetAttrs returns the labels and the selectable fields of a report. metadata.name (and
// metadata.namespace for namespaced kinds) are always selectable, as for every Kubernetes kind;
// the kind adds its own fields (scope.kind for policy reports, say).
func (s strategy) GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("get attributes of %s: %w", s.kind.Kind, err)
	}
	set := fields.Set{}
	if s.kind.Fields != nil {
		for k, v := range s.kind.Fields(obj) {
			set[k] = v
		}
	}
	set["metadata.name"] = m.GetName()
	if s.kind.Namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	}
	return labels.Set(m.GetLabels()), set, nil
}

// MatchReport returns the selection predicate of label and field selectors for this kind.
func (s strategy) MatchReport(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{
		Label:    label,
		Field:    field,
		GetAttrs: s.GetAttrs,
	}
}
