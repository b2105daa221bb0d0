package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
)

// Result is the outcome of a policy rule:
//   - pass: the policy requirements are met
//   - fail: the policy requirements are not met
//   - warn: the policy requirements are not met and the policy is not scored
//   - error: the policy could not be evaluated
//   - skip: the policy was not selected based on user inputs or applicability
//
// +enum
type Result string

const (
	StatusPass  Result = "pass"
	StatusFail  Result = "fail"
	StatusWarn  Result = "warn"
	StatusError Result = "error"
	StatusSkip  Result = "skip"
)

// ResultSeverity is the criticality of a policy result.
//
// +enum
type ResultSeverity string

const (
	SeverityCritical ResultSeverity = "critical"
	SeverityHigh     ResultSeverity = "high"
	SeverityLow      ResultSeverity = "low"
	SeverityMedium   ResultSeverity = "medium"
	SeverityInfo     ResultSeverity = "info"
)

// StatusFilter is used by Report generators to write only those reports whose status is specified by the filters.
//
// +enum
type StatusFilter string

const (
	StatusFilterPass  StatusFilter = "pass"
	StatusFilterFail  StatusFilter = "fail"
	StatusFilterWarn  StatusFilter = "warn"
	StatusFilterError StatusFilter = "error"
	StatusFilterSkip  StatusFilter = "skip"
)

// ObjectReference refers to a Kubernetes object. Its JSON form is that of core/v1 ObjectReference, which the CRDs
// embed; it is declared here so that the OpenAPI definitions need not include all of core/v1.
//
// +structType=atomic
type ObjectReference struct {
	// Kind of the referent.
	// +optional
	Kind string `json:"kind,omitempty"`
	// Namespace of the referent.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name of the referent.
	// +optional
	Name string `json:"name,omitempty"`
	// UID of the referent.
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// API version of the referent.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Specific resourceVersion to which this reference is made, if any.
	// +optional
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go
	// field access statement, such as desiredState.manifest.containers[2].
	// +optional
	FieldPath string `json:"fieldPath,omitempty"`
}

// Timestamp is a point in time.
// ---
// Its JSON form is that of k8s.io/apimachinery/pkg/apis/meta/v1 Timestamp, whose fields the CRD requires: they
// are pointers here, nil for a missing key, which validation rejects.
type Timestamp struct {
	// Represents seconds of UTC time since Unix epoch 1970-01-01T00:00:00Z. Must be from 0001-01-01T00:00:00Z to
	// 9999-12-31T23:59:59Z inclusive.
	// +required
	Seconds *int64 `json:"seconds,omitempty"`
	// Non-negative fractions of a second at nanosecond resolution. Negative second values with fractions must still
	// have non-negative nanos values that count forward in time. Must be from 0 to 999,999,999 inclusive. This field
	// may be limited in precision depending on context.
	// +required
	Nanos *int32 `json:"nanos,omitempty"`
}

// LabelSelector is a label query over a set of resources. The result of matchLabels and matchExpressions are
// ANDed. An empty label selector matches all objects. A null label selector matches no objects.
// ---
// Its JSON form is that of k8s.io/apimachinery/pkg/apis/meta/v1 LabelSelector; it is declared here because the
// CRD requires the key and operator of each requirement, which must therefore be pointers.
//
// +structType=atomic
type LabelSelector struct {
	// matchLabels is a map of {key,value} pairs. A single {key,value} in the matchLabels map is equivalent to an
	// element of matchExpressions, whose key field is "key", the operator is "In", and the values array contains
	// only "value". The requirements are ANDed.
	// +optional
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// matchExpressions is a list of label selector requirements. The requirements are ANDed.
	// +optional
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is a selector that contains values, a key, and an operator that relates the key and
// values.
type LabelSelectorRequirement struct {
	// key is the label key that the selector applies to.
	// +required
	Key *string `json:"key,omitempty"`
	// operator represents a key's relationship to a set of values. Valid operators are In, NotIn, Exists and
	// DoesNotExist.
	// +required
	Operator *string `json:"operator,omitempty"`
	// values is an array of string values. If the operator is In or NotIn, the values array must be non-empty. If
	// the operator is Exists or DoesNotExist, the values array must be empty.
	// +optional
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

// Limits bound what a Report generator writes.
type Limits struct {
	// MaxResults is the maximum number of results contained in the report
	// +optional
	MaxResults *int `json:"maxResults,omitempty"`

	// StatusFilter indicates that the Report contains only those reports with statuses specified in this list
	// +optional
	// +listType=atomic
	StatusFilter []StatusFilter `json:"statusFilter,omitempty"`
}

// ReportConfiguration is a contract between Report generators and consumers.
type ReportConfiguration struct {
	// Limits bound what a Report generator writes.
	// ---
	// The CRD requires the key; nil is a missing key, which validation rejects.
	// +required
	Limits *Limits `json:"limits,omitempty"`
}

// ReportSummary provides a status count summary.
type ReportSummary struct {
	// Pass provides the count of policies whose requirements were met
	// +optional
	Pass *int `json:"pass,omitempty"`
	// Fail provides the count of policies whose requirements were not met
	// +optional
	Fail *int `json:"fail,omitempty"`
	// Warn provides the count of non-scored policies whose requirements were not met
	// +optional
	Warn *int `json:"warn,omitempty"`
	// Error provides the count of policies that could not be evaluated
	// +optional
	Error *int `json:"error,omitempty"`
	// Skip indicates the count of policies that were not selected for evaluation
	// +optional
	Skip *int `json:"skip,omitempty"`
}

// ReportResult provides the result for an individual policy.
type ReportResult struct {
	// Source is an identifier for the policy engine that manages this report
	// If the Source is specified at this level, it will override the Source
	// field set at the Report level
	// +optional
	Source string `json:"source,omitempty"`

	// Policy is the name or identifier of the policy
	// ---
	// The CRD requires the key but accepts an empty value, so it is a pointer: nil is a missing key, which
	// validation rejects. GetPolicy reads it.
	// +required
	Policy *string `json:"policy,omitempty"`

	// Rule is the name or identifier of the rule within the policy
	// +optional
	Rule string `json:"rule,omitempty"`

	// Category indicates policy category
	// +optional
	Category string `json:"category,omitempty"`

	// Severity indicates policy check result criticality
	// ---
	// A pointer for the same reason as Result. GetSeverity reads it.
	// +optional
	Severity *ResultSeverity `json:"severity,omitempty"`

	// Timestamp indicates the time the result was found
	// +optional
	Timestamp *Timestamp `json:"timestamp,omitempty"`

	// Result indicates the outcome of the policy rule execution
	// ---
	// A pointer because the CRD rejects an empty value: nil is a missing key, a pointer to "" an empty value, which
	// validation rejects. GetResult reads it.
	// +optional
	Result *Result `json:"result,omitempty"`

	// Scored indicates if this result is scored
	// +optional
	Scored *bool `json:"scored,omitempty"`

	// Subjects is an optional reference to the checked Kubernetes resources
	// +optional
	// +listType=atomic
	Resources []ObjectReference `json:"resources,omitempty"`

	// ResourceSelector is an optional label selector for checked Kubernetes resources.
	// For example, a policy result may apply to all pods that match a label.
	// Either a Subject or a ResourceSelector can be specified. If neither are provided, the
	// result is assumed to be for the policy report scope.
	// +optional
	ResourceSelector *LabelSelector `json:"resourceSelector,omitempty"`

	// Description is a short user friendly message for the policy rule
	// +optional
	Message string `json:"message,omitempty"`

	// Properties provides additional information for the policy rule
	// +optional
	Properties map[string]string `json:"properties,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Report is the Schema for the reports API
type Report struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Source is an identifier for the source e.g. a policy engine that manages this report.
	// Use this field if all the results are produced by a single policy engine.
	// If the results are produced by multiple sources e.g. different engines or scanners,
	// then use the Source field at the ReportResult level.
	// +optional
	Source string `json:"source,omitempty"`

	// Scope is an optional reference to the report scope (e.g. a Deployment, Namespace, or Node)
	// +optional
	Scope *ObjectReference `json:"scope,omitempty"`

	// ScopeSelector is an optional selector for multiple scopes (e.g. Pods).
	// Either one of, or none of, but not both of, Scope or ScopeSelector should be specified.
	// +optional
	ScopeSelector *LabelSelector `json:"scopeSelector,omitempty"`

	// Configuration is an optional field which can be used to specify
	// a contract between Report generators and consumers
	// +optional
	Configuration *ReportConfiguration `json:"configuration,omitempty"`

	// ReportSummary provides a summary of results
	// +optional
	Summary *ReportSummary `json:"summary,omitempty"`

	// ReportResult provides result details
	// +optional
	// +listType=atomic
	Results []ReportResult `json:"results,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ReportList contains a list of Report
type ReportList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Report `json:"items"`

	// Stored is the items' stored JSON when storage read the list for a plain JSON response
	// (see storedjson); never encoded.
	Stored storedjson.Items `json:"-"`
}

// StoredItems implements storedjson.Carrier.
func (l *ReportList) StoredItems() *storedjson.Items { return &l.Stored }

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterReport is the Schema for the ClusterReport API
type ClusterReport struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Source is an identifier for the source e.g. a policy engine that manages this report.
	// Use this field if all the results are produced by a single policy engine.
	// If the results are produced by multiple sources e.g. different engines or scanners,
	// then use the Source field at the ReportResult level.
	// +optional
	Source string `json:"source,omitempty"`

	// Scope is an optional reference to the report scope (e.g. a Deployment, Namespace, or Node)
	// +optional
	Scope *ObjectReference `json:"scope,omitempty"`

	// ScopeSelector is an optional selector for multiple scopes (e.g. Pods).
	// Either one of, or none of, but not both of, Scope or ScopeSelector should be specified.
	// +optional
	ScopeSelector *LabelSelector `json:"scopeSelector,omitempty"`

	// Configuration is an optional field which can be used to specify
	// a contract between Report generators and consumers
	// +optional
	Configuration *ReportConfiguration `json:"configuration,omitempty"`

	// ReportSummary provides a summary of results
	// +optional
	Summary *ReportSummary `json:"summary,omitempty"`

	// ReportResult provides result details
	// +optional
	// +listType=atomic
	Results []ReportResult `json:"results,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterReportList contains a list of ClusterReport
type ClusterReportList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterReport `json:"items"`

	// Stored is the items' stored JSON when storage read the list for a plain JSON response
	// (see storedjson); never encoded.
	Stored storedjson.Items `json:"-"`
}

// StoredItems implements storedjson.Carrier.
func (l *ClusterReportList) StoredItems() *storedjson.Items { return &l.Stored }
