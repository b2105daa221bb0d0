package reports

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	openreportsv1alpha1 "github.com/reports-server/reports-server/internal/apis/openreports/v1alpha1"
	reportskyvernov1 "github.com/reports-server/reports-server/internal/apis/reportskyverno/v1"
	"github.com/reports-server/reports-server/internal/apis/validation"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// The Validate functions of the kinds. They check what the CRDs' schemas check beyond types: required keys (nil
// pointers, see package validation) and enum values. Paths are relative to the object. The tests check them against
// the generated OpenAPI definitions, which say the same (the +required and +enum markers of the types).

func validateWGPolicy(obj runtime.Object) field.ErrorList {
	switch r := obj.(type) {
	case *wgpolicyv1alpha2.PolicyReport:
		return wgpolicyReport(r.ScopeSelector, r.Results)
	case *wgpolicyv1alpha2.ClusterPolicyReport:
		return wgpolicyReport(r.ScopeSelector, r.Results)
	default:
		return field.ErrorList{field.InternalError(nil, wrongType(obj))}
	}
}

func validateOpenReports(obj runtime.Object) field.ErrorList {
	switch r := obj.(type) {
	case *openreportsv1alpha1.Report:
		return openreportsReport(r.ScopeSelector, r.Configuration, r.Results)
	case *openreportsv1alpha1.ClusterReport:
		return openreportsReport(r.ScopeSelector, r.Configuration, r.Results)
	default:
		return field.ErrorList{field.InternalError(nil, wrongType(obj))}
	}
}

func validateEphemeral(obj runtime.Object) field.ErrorList {
	switch r := obj.(type) {
	case *reportskyvernov1.EphemeralReport:
		return ephemeralSpec(field.NewPath("spec"), r.Spec)
	case *reportskyvernov1.ClusterEphemeralReport:
		return ephemeralSpec(field.NewPath("spec"), r.Spec)
	default:
		return field.ErrorList{field.InternalError(nil, wrongType(obj))}
	}
}

// wgpolicyk8s.io

func wgpolicyReport(sel *wgpolicyv1alpha2.LabelSelector, results []wgpolicyv1alpha2.PolicyReportResult) field.ErrorList {
	errs := wgpolicySelector(field.NewPath("scopeSelector"), sel)
	for i := range results {
		errs = append(errs, wgpolicyResult(field.NewPath("results").Index(i), &results[i])...)
	}
	return errs
}

func wgpolicyResult(p *field.Path, r *wgpolicyv1alpha2.PolicyReportResult) field.ErrorList {
	errs := validation.Required(p.Child("policy"), r.Policy)
	errs = append(errs, wgpolicySelector(p.Child("resourceSelector"), r.ResourceSelector)...)
	errs = append(errs, validation.Enum(p.Child("result"), r.Result, validation.ResultValues)...)
	if ts := r.Timestamp; ts != nil {
		errs = append(errs, timestamp(p.Child("timestamp"), ts.Seconds, ts.Nanos)...)
	}
	return append(errs, validation.Enum(p.Child("severity"), r.Severity, validation.SeverityValues)...)
}

func wgpolicySelector(p *field.Path, sel *wgpolicyv1alpha2.LabelSelector) field.ErrorList {
	if sel == nil {
		return nil
	}
	var errs field.ErrorList
	for i, req := range sel.MatchExpressions {
		errs = append(errs, requirement(p.Child("matchExpressions").Index(i), req.Key, req.Operator)...)
	}
	return errs
}

// openreports.io, whose results are also those of reports.kyverno.io

func openreportsReport(sel *openreportsv1alpha1.LabelSelector, conf *openreportsv1alpha1.ReportConfiguration,
	results []openreportsv1alpha1.ReportResult) field.ErrorList {
	errs := openreportsSelector(field.NewPath("scopeSelector"), sel)
	if conf != nil {
		p := field.NewPath("configuration", "limits")
		errs = append(errs, validation.Required(p, conf.Limits)...)
		if conf.Limits != nil {
			for i, f := range conf.Limits.StatusFilter {
				errs = append(errs, validation.EnumValue(p.Child("statusFilter").Index(i), f, validation.ResultValues)...)
			}
		}
	}
	return append(errs, openreportsResults(field.NewPath("results"), results)...)
}

func openreportsResults(p *field.Path, results []openreportsv1alpha1.ReportResult) field.ErrorList {
	var errs field.ErrorList
	for i := range results {
		errs = append(errs, openreportsResult(p.Index(i), &results[i])...)
	}
	return errs
}

func openreportsResult(p *field.Path, r *openreportsv1alpha1.ReportResult) field.ErrorList {
	errs := validation.Required(p.Child("policy"), r.Policy)
	errs = append(errs, validation.Enum(p.Child("severity"), r.Severity, validation.SeverityValues)...)
	if ts := r.Timestamp; ts != nil {
		errs = append(errs, timestamp(p.Child("timestamp"), ts.Seconds, ts.Nanos)...)
	}
	errs = append(errs, validation.Enum(p.Child("result"), r.Result, validation.ResultValues)...)
	return append(errs, openreportsSelector(p.Child("resourceSelector"), r.ResourceSelector)...)
}

func openreportsSelector(p *field.Path, sel *openreportsv1alpha1.LabelSelector) field.ErrorList {
	if sel == nil {
		return nil
	}
	var errs field.ErrorList
	for i, req := range sel.MatchExpressions {
		errs = append(errs, requirement(p.Child("matchExpressions").Index(i), req.Key, req.Operator)...)
	}
	return errs
}

// reports.kyverno.io

func ephemeralSpec(p *field.Path, spec *reportskyvernov1.EphemeralReportSpec) field.ErrorList {
	if spec == nil {
		return validation.Required(p, spec)
	}
	errs := validation.Required(p.Child("owner"), spec.Owner)
	if o := spec.Owner; o != nil {
		op := p.Child("owner")
		errs = append(errs, validation.Required(op.Child("apiVersion"), o.APIVersion)...)
		errs = append(errs, validation.Required(op.Child("kind"), o.Kind)...)
		errs = append(errs, validation.Required(op.Child("name"), o.Name)...)
		errs = append(errs, validation.Required(op.Child("uid"), o.UID)...)
	}
	return append(errs, openreportsResults(p.Child("results"), spec.Results)...)
}

// Shared pieces.

// timestamp checks a present results[].timestamp. Any values are accepted, negative nanos included: the CRDs do not
// constrain them.
func timestamp(p *field.Path, seconds *int64, nanos *int32) field.ErrorList {
	return append(validation.Required(p.Child("seconds"), seconds), validation.Required(p.Child("nanos"), nanos)...)
}

func requirement(p *field.Path, key, operator *string) field.ErrorList {
	return append(validation.Required(p.Child("key"), key), validation.Required(p.Child("operator"), operator)...)
}
