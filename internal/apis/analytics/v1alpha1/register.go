package v1alpha1

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of this package.
const GroupName = "analytics.reports-server.io"

// SchemeGroupVersion is the served version.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// InternalGroupVersion is the hub version the API machinery converts through. It uses the same Go types, so no
// conversion functions are needed.
var InternalGroupVersion = schema.GroupVersion{Group: GroupName, Version: runtime.APIVersionInternal}

var (
	// SchemeBuilder registers the kinds of this package.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the kinds of this package, under both versions, to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// FindingFieldSelectors are the field selector keys of Finding and ClusterFinding. Each is a predicate in SQL
// (internal/apiserver/findings); any other key is refused with 400.
var FindingFieldSelectors = []string{
	"metadata.name", "metadata.namespace",
	"severity", "result", "finding", "policy", "rule", "source", "category",
	"subject.kind", "subject.namespace", "subject.name",
	"report.name", "report.ephemeral",
}

// SummaryFieldSelectors are the field selector keys of FindingSummary.
var SummaryFieldSelectors = []string{
	"metadata.name", "type", "namespace", "source", "policy", "subject.kind", "subject.name",
}

func addKnownTypes(scheme *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, InternalGroupVersion} {
		scheme.AddKnownTypes(gv,
			&Finding{}, &FindingList{},
			&ClusterFinding{}, &ClusterFindingList{},
			&FindingSummary{}, &FindingSummaryList{},
		)
	}
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	for kind, selectable := range map[string][]string{
		"Finding":        FindingFieldSelectors,
		"ClusterFinding": FindingFieldSelectors,
		"FindingSummary": SummaryFieldSelectors,
	} {
		if err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind), fieldLabelConversion(kind, selectable)); err != nil {
			return err
		}
	}
	return nil
}

// fieldLabelConversion accepts the selectable keys unchanged. Its error becomes the message of the 400 the API
// server answers, so it lists what is supported: the user's next attempt can be right.
func fieldLabelConversion(kind string, selectable []string) runtime.FieldLabelConversionFunc {
	return func(label, value string) (string, string, error) {
		if slices.Contains(selectable, label) {
			return label, value, nil
		}
		return "", "", fmt.Errorf("field label not supported: %s (%s supports %s)", label, kind, strings.Join(selectable, ", "))
	}
}
