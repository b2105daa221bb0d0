// Package v1 holds the reports.kyverno.io/v1 kinds EphemeralReport and ClusterEphemeralReport. As upstream
// (kyverno/kyverno api/reports/v1), their results and summary are the openreports.io/v1alpha1 types.
//
// The CRD requires spec, spec.owner and the owner's apiVersion, kind, name and uid (an empty string is accepted):
// they are pointers, nil for a missing key, which validation rejects.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.kyverno.reports.v1
// +groupName=reports.kyverno.io
package v1
