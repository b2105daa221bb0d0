// Package v1alpha1 holds the analytics.reports-server.io/v1alpha1 kinds: Finding, ClusterFinding and
// FindingSummary, read-only views of the SQL analytics (the private tables behind the published schema
// `reporting`, docs/sql.md) served through the Kubernetes API, so `kubectl get findings` answers what otherwise
// needs SQL or listing every report.
//
// Nothing of these kinds is stored: every object is a row of analytics_results (one result of one report) or of
// a materialized summary, converted on read by internal/apiserver/findings. The fields mirror the columns of
// reporting.results and of the summaries, with the same meaning.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.reports-server.analytics.v1alpha1
// +groupName=analytics.reports-server.io
package v1alpha1
