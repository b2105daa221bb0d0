package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/reports-server/reports-server/internal/apis/validation"
)

// GroupName is the API group of this package.
const GroupName = "openreports.io"

// SchemeGroupVersion is the served version.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// InternalGroupVersion is the hub version of the generic registry. It uses the same Go types, so no conversion
// functions are needed.
var InternalGroupVersion = schema.GroupVersion{Group: GroupName, Version: runtime.APIVersionInternal}

var (
	// SchemeBuilder registers the kinds of this package.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the kinds of this package, under both versions, to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource returns the group-qualified resource.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// SelectableFields are the field selector keys of both kinds of this group; the field label conversion
// functions accept exactly these.
var SelectableFields = []string{"metadata.name", "metadata.namespace", "scope.kind", "scope.name", "scope.namespace"}

func addKnownTypes(scheme *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, InternalGroupVersion} {
		scheme.AddKnownTypes(gv,
			&Report{}, &ReportList{},
			&ClusterReport{}, &ClusterReportList{},
		)
	}
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	for _, kind := range []string{"Report", "ClusterReport"} {
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind),
			validation.FieldLabelConversionFunc(SelectableFields))
		if err != nil {
			return err
		}
	}
	return nil
}
