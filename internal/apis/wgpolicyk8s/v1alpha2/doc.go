// Package v1alpha2 holds the wgpolicyk8s.io/v1alpha2 kinds PolicyReport and ClusterPolicyReport.
//
// The JSON form is the one of the upstream CRDs (kubernetes-sigs/wg-policy-prototypes, as shipped by Kyverno in
// config/crds/policyreport). Optional numbers, booleans and objects are pointers so that an object round-trips
// unchanged: a CRD-backed server stores what the client sent, and so do we. Optional strings use omitempty: an
// empty string and a missing one are the same to every consumer we know of. Two kinds of strings are pointers
// too, nil for a missing key, so that validation sees what the CRD schema checks: those the CRD requires but
// accepts empty (results[].policy, label selector requirements' key and operator), and enums, whose empty value the
// CRD rejects (results[].result, results[].severity). Required numbers (timestamp seconds and nanos) are pointers as
// well. GetPolicy, GetResult and GetSeverity read them without nil checks.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.wgpolicyk8s.v1alpha2
// +groupName=wgpolicyk8s.io
package v1alpha2
