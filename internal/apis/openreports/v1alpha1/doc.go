// Package v1alpha1 holds the openreports.io/v1alpha1 kinds Report and ClusterReport. Its ReportResult and
// ReportSummary are also the result and summary types of the reports.kyverno.io/v1 ephemeral reports, as upstream.
//
// The JSON form is the one of the upstream CRDs (openreports/reports-api crd/openreports.io/v1alpha1). Optional
// numbers, booleans and objects are pointers so that an object round-trips unchanged: a CRD-backed server stores
// what the client sent, and so do we. Optional strings use omitempty: an empty string and a missing one are the same
// to every consumer we know of. Two kinds of strings are pointers too, nil for a missing key, so that validation
// sees what the CRD schema checks: those the CRD requires but accepts empty (results[].policy, label selector
// requirements' key and operator), and enums, whose empty value the CRD rejects (results[].result,
// results[].severity). Required numbers (timestamp seconds and nanos) and objects (configuration.limits) are
// pointers as well. GetPolicy, GetResult and GetSeverity read them without nil checks.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.openreports.v1alpha1
// +groupName=openreports.io
package v1alpha1
