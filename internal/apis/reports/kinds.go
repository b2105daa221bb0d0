// Package reports lists the report kinds the server serves, with everything the generic API server code needs to
// serve one: names, scope, constructors, validation, selectable fields and table columns.
package reports

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	openreportsv1alpha1 "github.com/reports-server/reports-server/internal/apis/openreports/v1alpha1"
	reportskyvernov1 "github.com/reports-server/reports-server/internal/apis/reportskyverno/v1"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// Kind describes one served kind.
type Kind struct {
	GroupVersion   schema.GroupVersion
	Kind, ListKind string
	// Resource is the plural resource name ("policyreports"), Singular the singular one ("policyreport").
	Resource, Singular string
	ShortNames         []string
	// Categories are the CRD's categories (e.g. "kyverno"), if any.
	Categories []string
	Namespaced bool
	New        func() runtime.Object
	NewList    func() runtime.Object
	// Validate checks what the CRD schema checks beyond types (which decoding checks): required keys and enum
	// values, with paths relative to the object ("results[2].policy"). Metadata is left to the registry.
	Validate func(obj runtime.Object) field.ErrorList
	// Fields returns the selectable fields of an object: always "metadata.name" and "metadata.namespace"; for
	// wgpolicyk8s.io and openreports.io reports also "scope.kind", "scope.name", "scope.namespace" ("" when no scope).
	Fields func(obj runtime.Object) fields.Set
	// SelectableFields are the keys Fields returns, for validation of field selectors.
	SelectableFields []string
	// TableColumns are the CRD's additionalPrinterColumns, after a first Name column, as a CRD-backed server
	// serves them.
	TableColumns []metav1.TableColumnDefinition
	// TableRow returns the cells of TableColumns for an object, as a CRD-backed server computes them: nil for a
	// missing value, int64 for integers, a human duration ("5m") for dates.
	TableRow func(obj runtime.Object) []any
}

// GroupVersionKind returns the kind's served GroupVersionKind.
func (k Kind) GroupVersionKind() schema.GroupVersionKind { return k.GroupVersion.WithKind(k.Kind) }

// GroupVersionResource returns the kind's served GroupVersionResource.
func (k Kind) GroupVersionResource() schema.GroupVersionResource {
	return k.GroupVersion.WithResource(k.Resource)
}

// OpenAPIModelName is the name of the kind's definition in the generated OpenAPI definitions.
func (k Kind) OpenAPIModelName() string {
	return k.New().(interface{ OpenAPIModelName() string }).OpenAPIModelName()
}

// AddToScheme registers the kinds of all three groups, under their served and their internal versions.
func AddToScheme(s *runtime.Scheme) error {
	return errors.Join(
		wgpolicyv1alpha2.AddToScheme(s),
		reportskyvernov1.AddToScheme(s),
		openreportsv1alpha1.AddToScheme(s),
	)
}

// All returns the served kinds.
func All() []Kind {
	return []Kind{
		wgpolicyKind("PolicyReport", "policyreports", "policyreport", "polr", true,
			func() runtime.Object { return &wgpolicyv1alpha2.PolicyReport{} },
			func() runtime.Object { return &wgpolicyv1alpha2.PolicyReportList{} }),
		wgpolicyKind("ClusterPolicyReport", "clusterpolicyreports", "clusterpolicyreport", "cpolr", false,
			func() runtime.Object { return &wgpolicyv1alpha2.ClusterPolicyReport{} },
			func() runtime.Object { return &wgpolicyv1alpha2.ClusterPolicyReportList{} }),
		ephemeralKind("EphemeralReport", "ephemeralreports", "ephemeralreport", "ephr", true,
			func() runtime.Object { return &reportskyvernov1.EphemeralReport{} },
			func() runtime.Object { return &reportskyvernov1.EphemeralReportList{} }),
		ephemeralKind("ClusterEphemeralReport", "clusterephemeralreports", "clusterephemeralreport", "cephr", false,
			func() runtime.Object { return &reportskyvernov1.ClusterEphemeralReport{} },
			func() runtime.Object { return &reportskyvernov1.ClusterEphemeralReportList{} }),
		openreportsKind("Report", "reports", "report", "reps", true,
			func() runtime.Object { return &openreportsv1alpha1.Report{} },
			func() runtime.Object { return &openreportsv1alpha1.ReportList{} }),
		openreportsKind("ClusterReport", "clusterreports", "clusterreport", "creps", false,
			func() runtime.Object { return &openreportsv1alpha1.ClusterReport{} },
			func() runtime.Object { return &openreportsv1alpha1.ClusterReportList{} }),
	}
}

// view is what fields and tables need of a report, whatever its group.
type view struct {
	meta    *metav1.ObjectMeta
	scope   *scope // nil for ephemeral reports and for reports without scope
	summary [5]*int
}

type scope struct{ kind, name, namespace string }

func wrongType(obj runtime.Object) error { return fmt.Errorf("unexpected object type %T", obj) }

func wgpolicyView(obj runtime.Object) (*view, error) {
	var (
		meta *metav1.ObjectMeta
		sc   *wgpolicyv1alpha2.ObjectReference
		sum  *wgpolicyv1alpha2.PolicyReportSummary
	)
	switch r := obj.(type) {
	case *wgpolicyv1alpha2.PolicyReport:
		meta, sc, sum = &r.ObjectMeta, r.Scope, r.Summary
	case *wgpolicyv1alpha2.ClusterPolicyReport:
		meta, sc, sum = &r.ObjectMeta, r.Scope, r.Summary
	default:
		return nil, wrongType(obj)
	}
	v := &view{meta: meta}
	if sc != nil {
		v.scope = &scope{kind: sc.Kind, name: sc.Name, namespace: sc.Namespace}
	}
	if sum != nil {
		v.summary = [5]*int{sum.Pass, sum.Fail, sum.Warn, sum.Error, sum.Skip}
	}
	return v, nil
}

// openreportsView covers openreports.io reports and, through their spec, reports.kyverno.io ephemeral reports.
func openreportsView(obj runtime.Object) (*view, error) {
	var (
		meta *metav1.ObjectMeta
		sc   *openreportsv1alpha1.ObjectReference
		sum  *openreportsv1alpha1.ReportSummary
	)
	switch r := obj.(type) {
	case *openreportsv1alpha1.Report:
		meta, sc, sum = &r.ObjectMeta, r.Scope, r.Summary
	case *openreportsv1alpha1.ClusterReport:
		meta, sc, sum = &r.ObjectMeta, r.Scope, r.Summary
	case *reportskyvernov1.EphemeralReport:
		meta, sum = &r.ObjectMeta, ephemeralSummary(r.Spec)
	case *reportskyvernov1.ClusterEphemeralReport:
		meta, sum = &r.ObjectMeta, ephemeralSummary(r.Spec)
	default:
		return nil, wrongType(obj)
	}
	v := &view{meta: meta}
	if sc != nil {
		v.scope = &scope{kind: sc.Kind, name: sc.Name, namespace: sc.Namespace}
	}
	if sum != nil {
		v.summary = [5]*int{sum.Pass, sum.Fail, sum.Warn, sum.Error, sum.Skip}
	}
	return v, nil
}

func ephemeralSummary(spec *reportskyvernov1.EphemeralReportSpec) *openreportsv1alpha1.ReportSummary {
	if spec == nil {
		return nil
	}
	return spec.Summary
}

// scopeFields returns the fields of wgpolicyk8s.io and openreports.io reports.
func scopeFields(viewOf func(runtime.Object) (*view, error)) func(runtime.Object) fields.Set {
	return func(obj runtime.Object) fields.Set {
		v, err := viewOf(obj)
		if err != nil {
			return nil
		}
		sc := v.scope
		if sc == nil {
			sc = &scope{}
		}
		return fields.Set{
			"metadata.name":      v.meta.Name,
			"metadata.namespace": v.meta.Namespace,
			"scope.kind":         sc.kind,
			"scope.name":         sc.name,
			"scope.namespace":    sc.namespace,
		}
	}
}

func wgpolicyKind(kind, resource, singular, short string, namespaced bool, newObj, newList func() runtime.Object) Kind {
	return Kind{
		GroupVersion:     wgpolicyv1alpha2.SchemeGroupVersion,
		Kind:             kind,
		ListKind:         kind + "List",
		Resource:         resource,
		Singular:         singular,
		ShortNames:       []string{short},
		Namespaced:       namespaced,
		New:              newObj,
		NewList:          newList,
		Validate:         validateWGPolicy,
		Fields:           scopeFields(wgpolicyView),
		SelectableFields: wgpolicyv1alpha2.SelectableFields,
		// kyverno/kyverno config/crds/policyreport: Kind and Name have priority 0 there (1 in the older
		// wg-policy-prototypes CRD).
		TableColumns: scopeColumns(0),
		TableRow:     scopeRow(wgpolicyView),
	}
}

func openreportsKind(kind, resource, singular, short string, namespaced bool, newObj, newList func() runtime.Object) Kind {
	return Kind{
		GroupVersion:     openreportsv1alpha1.SchemeGroupVersion,
		Kind:             kind,
		ListKind:         kind + "List",
		Resource:         resource,
		Singular:         singular,
		ShortNames:       []string{short},
		Namespaced:       namespaced,
		New:              newObj,
		NewList:          newList,
		Validate:         validateOpenReports,
		Fields:           scopeFields(openreportsView),
		SelectableFields: openreportsv1alpha1.SelectableFields,
		// openreports/reports-api crd/openreports.io/v1alpha1: Kind and Name have priority 1.
		TableColumns: scopeColumns(1),
		TableRow:     scopeRow(openreportsView),
	}
}

func ephemeralKind(kind, resource, singular, short string, namespaced bool, newObj, newList func() runtime.Object) Kind {
	// kyverno/kyverno config/crds/reports: the Uid column has priority 1 for EphemeralReport but 0 for
	// ClusterEphemeralReport; we copy that as it is.
	uidPriority := int32(0)
	if namespaced {
		uidPriority = 1
	}
	return Kind{
		GroupVersion:     reportskyvernov1.SchemeGroupVersion,
		Kind:             kind,
		ListKind:         kind + "List",
		Resource:         resource,
		Singular:         singular,
		ShortNames:       []string{short},
		Categories:       []string{"kyverno"},
		Namespaced:       namespaced,
		New:              newObj,
		NewList:          newList,
		Validate:         validateEphemeral,
		Fields:           ephemeralFields,
		SelectableFields: reportskyvernov1.SelectableFields,
		TableColumns:     ephemeralColumns(uidPriority),
		TableRow:         ephemeralRow,
	}
}

func ephemeralFields(obj runtime.Object) fields.Set {
	v, err := openreportsView(obj)
	if err != nil {
		return nil
	}
	return fields.Set{"metadata.name": v.meta.Name, "metadata.namespace": v.meta.Namespace}
}

// Table columns, as apiextensions-apiserver builds them from a CRD's additionalPrinterColumns.

func nameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{
		Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"],
	}
}

func column(name, typ, jsonPath string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{
		Name:        name,
		Type:        typ,
		Priority:    priority,
		Description: "Custom resource definition column (in JSONPath format): " + jsonPath,
	}
}

func summaryColumns(prefix string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		column("Pass", "integer", prefix+".summary.pass", 0),
		column("Fail", "integer", prefix+".summary.fail", 0),
		column("Warn", "integer", prefix+".summary.warn", 0),
		column("Error", "integer", prefix+".summary.error", 0),
		column("Skip", "integer", prefix+".summary.skip", 0),
	}
}

func ageColumn() metav1.TableColumnDefinition {
	return column("Age", "date", ".metadata.creationTimestamp", 0)
}

// scopeColumns are the columns of wgpolicyk8s.io and openreports.io reports.
func scopeColumns(scopePriority int32) []metav1.TableColumnDefinition {
	cols := []metav1.TableColumnDefinition{
		nameColumn(),
		column("Kind", "string", ".scope.kind", scopePriority),
		column("Name", "string", ".scope.name", scopePriority),
	}
	cols = append(cols, summaryColumns("")...)
	return append(cols, ageColumn())
}

func ephemeralColumns(uidPriority int32) []metav1.TableColumnDefinition {
	cols := []metav1.TableColumnDefinition{
		nameColumn(),
		column("Source", "string", `.metadata.labels['audit\.kyverno\.io/source']`, 0),
		column("Group", "string", `.metadata.labels['audit\.kyverno\.io/resource\.group']`, 0),
		column("Kind", "string", `.metadata.labels['audit\.kyverno\.io/resource\.kind']`, 0),
		column("Owner", "string", `.metadata.annotations['audit\.kyverno\.io/resource\.name']`, 0),
	}
	cols = append(cols, summaryColumns(".spec")...)
	return append(cols,
		ageColumn(),
		column("Uid", "string", `.metadata.labels['audit\.kyverno\.io/resource\.uid']`, uidPriority),
		column("Hash", "string", `.metadata.labels['audit\.kyverno\.io/resource\.hash']`, 1),
	)
}

// Table cells: nil where the CRD's JSONPath finds nothing.

// stringCell is the cell of an optional string field: omitempty makes "" absent from the JSON.
func stringCell(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mapCell is the cell of a label or annotation: present with an empty value is "", absent is nil.
func mapCell(m map[string]string, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	return nil
}

func summaryCells(summary [5]*int) []any {
	cells := make([]any, 0, len(summary))
	for _, n := range summary {
		if n == nil {
			cells = append(cells, nil)
		} else {
			cells = append(cells, int64(*n))
		}
	}
	return cells
}

func ageCell(meta *metav1.ObjectMeta) any {
	return table.ConvertToHumanReadableDateType(meta.CreationTimestamp)
}

func scopeRow(viewOf func(runtime.Object) (*view, error)) func(runtime.Object) []any {
	return func(obj runtime.Object) []any {
		v, err := viewOf(obj)
		if err != nil {
			return nil
		}
		var kind, name any
		if v.scope != nil {
			kind, name = stringCell(v.scope.kind), stringCell(v.scope.name)
		}
		cells := []any{v.meta.Name, kind, name}
		cells = append(cells, summaryCells(v.summary)...)
		return append(cells, ageCell(v.meta))
	}
}

func ephemeralRow(obj runtime.Object) []any {
	v, err := openreportsView(obj)
	if err != nil {
		return nil
	}
	labels, annotations := v.meta.Labels, v.meta.Annotations
	cells := []any{
		v.meta.Name,
		mapCell(labels, "audit.kyverno.io/source"),
		mapCell(labels, "audit.kyverno.io/resource.group"),
		mapCell(labels, "audit.kyverno.io/resource.kind"),
		mapCell(annotations, "audit.kyverno.io/resource.name"),
	}
	cells = append(cells, summaryCells(v.summary)...)
	return append(cells,
		ageCell(v.meta),
		mapCell(labels, "audit.kyverno.io/resource.uid"),
		mapCell(labels, "audit.kyverno.io/resource.hash"),
	)
}
