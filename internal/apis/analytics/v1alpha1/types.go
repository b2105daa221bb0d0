package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Finding is one result of a namespaced report (PolicyReport, Report, EphemeralReport), in the report's namespace:
// whoever may read findings in a namespace sees the results of that namespace's reports, and nothing else. It is
// a row of the SQL view reporting.results. Read-only: get and list.
//
// The name is <report short name>.<report name>.<result index>, e.g. polr.trivy-pod-web.3: results of one report
// keep their names across the report's updates as long as the producer writes them in the same order, as
// producers do when what they evaluate has not changed. The uid changes when the name comes to denote another result (another
// source, policy, rule, category or subject at that position), as it would for an object deleted and recreated
// under the same name.
type Finding struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	FindingFields `json:",inline"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FindingList is a list of Finding.
type FindingList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Finding `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterFinding is one result of a cluster-scoped report (ClusterPolicyReport, ClusterReport,
// ClusterEphemeralReport). It is cluster-scoped like those reports, so reading it takes a cluster-wide grant, as
// reading them does. Names and fields are those of Finding. Read-only: get and list.
type ClusterFinding struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	FindingFields `json:",inline"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterFindingList is a list of ClusterFinding.
type ClusterFindingList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ClusterFinding `json:"items"`
}

// FindingFields are the columns of a result in reporting.results (docs/sql.md has their exact meaning).
type FindingFields struct {
	// Report is the report the result is part of, and its position there.
	Report ReportReference `json:"report"`
	// Source is the result's source, else the report's top-level source (openreports), e.g. kyverno, Trivy.
	// +optional
	Source string `json:"source,omitempty"`
	// Policy is the result's policy (the CVE id for recent Trivy adapters).
	// +optional
	Policy string `json:"policy,omitempty"`
	// Rule is the result's rule.
	// +optional
	Rule string `json:"rule,omitempty"`
	// Category is the result's category (for Trivy: the package).
	// +optional
	Category string `json:"category,omitempty"`
	// Severity is the result's severity, else its "severity" property, lower-cased: critical, high, medium, low,
	// info; absent when neither is set.
	// +optional
	Severity string `json:"severity,omitempty"`
	// Result is pass, fail, warn, error or skip; absent when the producer writes none (vulnerability scanners).
	// +optional
	Result string `json:"result,omitempty"`
	// Finding is true when the result needs attention: its result is fail, warn or error, or it has none.
	Finding bool `json:"finding"`
	// Scored is the result's scored flag.
	// +optional
	Scored *bool `json:"scored,omitempty"`
	// Message is the result's message.
	// +optional
	Message string `json:"message,omitempty"`
	// Timestamp is when the result was produced, to the microsecond; absent when the producer wrote none.
	// +optional
	Timestamp *metav1.MicroTime `json:"timestamp,omitempty"`
	// Subject is the resource the result is about: its first resources[] entry, else the report's scope (or an
	// ephemeral report's owner, or the report's controller owner). Absent when the result is about no resource.
	// +optional
	Subject *SubjectReference `json:"subject,omitempty"`
	// Score is the CVSS-like score: the "score" property when it is a number, else the highest numeric
	// "<vendor>.v3_score" property.
	// +optional
	Score *float64 `json:"score,omitempty"`
	// Properties are the result's properties (string values), e.g. FixedVersion and PrimaryURL from Trivy.
	// +optional
	Properties map[string]string `json:"properties,omitempty"`
}

// ReportReference identifies the report a finding comes from. Its namespace is the finding's.
type ReportReference struct {
	// APIVersion of the report, e.g. wgpolicyk8s.io/v1alpha2.
	APIVersion string `json:"apiVersion"`
	// Kind of the report, e.g. PolicyReport.
	Kind string `json:"kind"`
	// Name of the report.
	Name string `json:"name"`
	// UID of the report.
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// ResultIndex is the position of the result in the report's results, from 0.
	ResultIndex int32 `json:"resultIndex"`
}

// SubjectReference identifies the resource a result is about.
type SubjectReference struct {
	// APIVersion of the resource.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the resource, e.g. Pod.
	// +optional
	Kind string `json:"kind,omitempty"`
	// Namespace of the resource; absent for cluster-scoped resources.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name of the resource.
	// +optional
	Name string `json:"name,omitempty"`
	// UID of the resource.
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// SummaryType says which summary a FindingSummary is a row of.
//
// +enum
type SummaryType string

const (
	// SummaryCluster counts every result of the cluster (reporting.cluster_summary).
	SummaryCluster SummaryType = "Cluster"
	// SummaryNamespace counts the results about one namespace (reporting.namespace_summary).
	SummaryNamespace SummaryType = "Namespace"
	// SummaryPolicy counts the results of one source and policy (reporting.policy_summary).
	SummaryPolicy SummaryType = "Policy"
	// SummaryResource counts the results about one resource (reporting.resource_summary).
	SummaryResource SummaryType = "Resource"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FindingSummary is one row of a materialized summary of the results: of the whole cluster, of a namespace, of a
// policy or of a resource, as counted at the last refresh (--summary-refresh-interval after changes). It is
// cluster-scoped: summaries span namespaces. Read-only: get and list.
//
// The name is <type>-<16 hex digits> (e.g. namespace-3f0c9a1b2d4e5f60), the digits a hash of the row's key
// (namespace; source and policy; namespace, kind and name), so it stays the same across refreshes.
type FindingSummary struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Type is the summary the object is a row of: Cluster, Namespace, Policy or Resource.
	Type SummaryType `json:"type"`
	// Namespace is the namespace counted (Namespace and Resource summaries); absent for results about no
	// namespace (cluster-scoped resources).
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Source is the source counted (Policy summaries); absent when the results have none.
	// +optional
	Source string `json:"source,omitempty"`
	// Policy is the policy counted (Policy summaries); absent when the results have none.
	// +optional
	Policy string `json:"policy,omitempty"`
	// Subject is the resource counted (Resource summaries); absent when the results are about no resource.
	// +optional
	Subject *SummarySubject `json:"subject,omitempty"`
	// Counts are the results and findings counted.
	Counts FindingCounts `json:"counts"`
	// RefreshedAt is when the summary was last refreshed.
	// +optional
	RefreshedAt *metav1.Time `json:"refreshedAt,omitempty"`
}

// SummarySubject is the resource a Resource summary counts.
type SummarySubject struct {
	// Kind of the resource.
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the resource.
	// +optional
	Name string `json:"name,omitempty"`
}

// FindingCounts are the count columns of the summaries (docs/sql.md, "Summary columns").
type FindingCounts struct {
	// Results counts every result.
	Results int64 `json:"results"`
	// Pass counts results with result pass.
	Pass int64 `json:"pass"`
	// Fail counts results with result fail.
	Fail int64 `json:"fail"`
	// Warn counts results with result warn.
	Warn int64 `json:"warn"`
	// Error counts results with result error.
	Error int64 `json:"error"`
	// Skip counts results with result skip.
	Skip int64 `json:"skip"`
	// Findings counts findings: results that are fail, warn, error, or have no result.
	Findings int64 `json:"findings"`
	// Critical counts findings of severity critical.
	Critical int64 `json:"critical"`
	// High counts findings of severity high.
	High int64 `json:"high"`
	// Medium counts findings of severity medium.
	Medium int64 `json:"medium"`
	// Low counts findings of severity low.
	Low int64 `json:"low"`
	// Info counts findings of severity info.
	Info int64 `json:"info"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FindingSummaryList is a list of FindingSummary.
type FindingSummaryList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []FindingSummary `json:"items"`
}
