package registry

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// REST serves one report kind. All verbs come from the generic registry store; REST adds the
// discovery details (short names, categories) that kubectl needs to resolve `kubectl get polr`.
type REST struct {
	*genericregistry.Store
	kind reports.Kind
}

var (
	_ rest.StandardStorage          = (*REST)(nil)
	_ rest.Scoper                   = (*REST)(nil)
	_ rest.TableConvertor           = (*REST)(nil)
	_ rest.ShortNamesProvider       = (*REST)(nil)
	_ rest.CategoriesProvider       = (*REST)(nil)
	_ rest.SingularNameProvider     = (*REST)(nil)
	_ rest.ResetFieldsStrategy      = (*REST)(nil)
	_ rest.GroupVersionKindProvider = (*REST)(nil)
)

// NewREST builds the store of kind on the storage that optsGetter provides.
//
// Store.ResetFieldsStrategy stays nil (GetResetFields returns nothing): reset fields exist for
// subresources (status that the main resource may not write, say), and reports have none, so
// every field belongs to whichever manager set it, as for a CRD without subresources. Server-side
// apply itself needs no more than that: the generic server builds its type converter from the
// OpenAPI definitions set in the apiserver configuration.
func NewREST(kind reports.Kind, optsGetter generic.RESTOptionsGetter) (*REST, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	s := newStrategy(kind)
	gr := schema.GroupResource{Group: kind.GroupVersion.Group, Resource: kind.Resource}
	store := &genericregistry.Store{
		NewFunc:                   kind.New,
		NewListFunc:               kind.NewList,
		DefaultQualifiedResource:  gr,
		SingularQualifiedResource: schema.GroupResource{Group: gr.Group, Resource: kind.Singular},
		PredicateFunc:             s.MatchReport,

		CreateStrategy: s,
		UpdateStrategy: s,
		DeleteStrategy: s,

		TableConvertor: newTableConvertor(kind),
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: s.GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, fmt.Errorf("complete store for %s: %w", gr, err)
	}
	return &REST{Store: store, kind: kind}, nil
}

// Create is the generic store's, for an object of this kind only: the report groups' decoder
// hands on a body of the group's other kind as that kind (see otherkind.go in package
// apiserver), and that is refused here as kube-apiserver refuses it for a CRD. When the response
// is plain JSON or YAML (pgstorage.WithStoredJSON), the object is answered as storage wrote it
// (pgstorage.Answer): its stored JSON, not encoded again.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	if err := r.sentAsOtherKind(obj); err != nil {
		return nil, err
	}
	ctx, answer := pgstorage.WithCreateAnswer(ctx)
	out, err := r.Store.Create(ctx, obj, createValidation, options)
	if err != nil || answer.Object == nil {
		return out, err
	}
	return answer.Object, nil
}

// Get is the generic store's; when the response is plain JSON or YAML
// (pgstorage.WithStoredJSON), the object is answered as storage read it (pgstorage.Answer): its
// stored JSON, neither decoded nor encoded again.
func (r *REST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	ctx, answer := pgstorage.WithGetAnswer(ctx)
	out, err := r.Store.Get(ctx, name, options)
	if err != nil || answer.Object == nil {
		return out, err
	}
	return answer.Object, nil
}

// sentAsOtherKind is a 422 on `kind` ("must be PolicyReport") for an object that is not of this
// REST's kind, nil otherwise. Like kube-apiserver for a CRD, it is the only error reported: the
// rest of the object was written for another kind.
func (r *REST) sentAsOtherKind(obj runtime.Object) error {
	if reflect.TypeOf(obj) == reflect.TypeOf(r.kind.New()) {
		return nil
	}
	sent := obj.GetObjectKind().GroupVersionKind().Kind
	if sent == "" {
		sent = reflect.TypeOf(obj).String()
	}
	var name string
	if m, err := meta.Accessor(obj); err == nil {
		name = m.GetName()
	}
	// The Status names the kind sent, as kube-apiserver's does.
	gk := schema.GroupKind{Group: r.kind.GroupVersion.Group, Kind: sent}
	return apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("kind"), sent, "must be "+r.kind.Kind)})
}

// Update is the generic store's, with the errors of applying the request to the stored object
// (patches of every type, server-side apply) reported as the client's: the field manager
// answers an applied object that does not fit the schema ("failed to create typed patch
// object": a string where the schema has a map) with a plain error, which the generic handlers
// turn into a 500, as kube-apiserver does. The request is what is wrong, so it is a 400.
func (r *REST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.Store.Update(ctx, name, clientErrors{objInfo, r}, createValidation, updateValidation, forceAllowCreate, options)
}

// List is the generic store's, with a list that storage read for a plain JSON response (its
// items' stored JSON kept, see package storedjson) handed to the handlers as a storedjson.List,
// which encodes as that JSON.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	obj, err := r.Store.List(ctx, options)
	if err != nil {
		return nil, err
	}
	list, ok := obj.(storedjson.Carrier)
	if !ok {
		return obj, nil
	}
	out, err := storedjson.NewList(list, r.kind.GroupVersion.WithKind(r.kind.ListKind))
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return out, nil
}

// clientErrors makes the plain errors of computing the updated object 400s, and an updated
// object of another kind (a PUT of a ClusterPolicyReport to a policyreport) a 422 on `kind`.
type clientErrors struct {
	rest.UpdatedObjectInfo
	r *REST
}

func (c clientErrors) UpdatedObject(ctx context.Context, old runtime.Object) (runtime.Object, error) {
	obj, err := c.UpdatedObjectInfo.UpdatedObject(ctx, old)
	var status apierrors.APIStatus
	if err != nil && !errors.As(err, &status) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the request cannot be applied to the object: %v", err))
	}
	if err != nil {
		return obj, err
	}
	if err := c.r.sentAsOtherKind(obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// checkKind rejects a Kind that would give a broken resource, so a mistake in the kinds registry
// fails at start-up instead of on the first request.
func checkKind(k reports.Kind) error {
	switch {
	case k.GroupVersion.Group == "" || k.GroupVersion.Version == "":
		return fmt.Errorf("report kind %q has no group version", k.Kind)
	case k.Kind == "" || k.Resource == "" || k.Singular == "":
		return fmt.Errorf("report kind %s/%q needs Kind, Resource and Singular", k.GroupVersion, k.Kind)
	case k.New == nil || k.NewList == nil:
		return fmt.Errorf("report kind %s has no New or NewList", k.GroupVersion.WithKind(k.Kind))
	case k.TableRow == nil && len(k.TableColumns) > 0:
		return fmt.Errorf("report kind %s has table columns but no TableRow", k.GroupVersion.WithKind(k.Kind))
	}
	return nil
}

// ShortNames implements rest.ShortNamesProvider (polr, cpolr, …).
func (r *REST) ShortNames() []string { return r.kind.ShortNames }

// Categories implements rest.CategoriesProvider, so `kubectl get <category>` includes the kind.
func (r *REST) Categories() []string { return r.kind.Categories }

// GroupVersionKind implements rest.GroupVersionKindProvider: the kind is the one of its served
// version whatever the scheme holds.
func (r *REST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return r.kind.GroupVersion.WithKind(r.kind.Kind)
}
