package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	openreportsv1alpha1 "github.com/reports-server/reports-server/internal/apis/openreports/v1alpha1"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
)

// OwnerReference refers to the owner of an ephemeral report.
// ---
// Its JSON form is that of k8s.io/apimachinery/pkg/apis/meta/v1 OwnerReference, whose apiVersion, kind, name and
// uid the CRD requires (an empty value is accepted): they are pointers here, nil for a missing key, which
// validation rejects.
//
// +structType=atomic
type OwnerReference struct {
	// API version of the referent.
	// +required
	APIVersion *string `json:"apiVersion,omitempty"`
	// Kind of the referent.
	// +required
	Kind *string `json:"kind,omitempty"`
	// Name of the referent.
	// +required
	Name *string `json:"name,omitempty"`
	// UID of the referent.
	// +required
	UID *types.UID `json:"uid,omitempty"`
	// If true, this reference points to the managing controller.
	// +optional
	Controller *bool `json:"controller,omitempty"`
	// If true, AND if the owner has the "foregroundDeletion" finalizer, then the owner cannot be deleted from the
	// key-value store until this reference is removed.
	// +optional
	BlockOwnerDeletion *bool `json:"blockOwnerDeletion,omitempty"`
}

// EphemeralReportSpec is the content of an ephemeral report.
type EphemeralReportSpec struct {
	// Owner is a reference to the report owner (e.g. a Deployment, Namespace, or Node)
	// ---
	// The CRD requires it; nil is a missing key, which validation rejects.
	// +required
	Owner *OwnerReference `json:"owner,omitempty"`

	// PolicyReportSummary provides a summary of results
	// +optional
	Summary *openreportsv1alpha1.ReportSummary `json:"summary,omitempty"`

	// PolicyReportResult provides result details
	// +optional
	// +listType=atomic
	Results []openreportsv1alpha1.ReportResult `json:"results,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// EphemeralReport is the Schema for the EphemeralReports API
type EphemeralReport struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec is the content of the report.
	// ---
	// The CRD requires it; nil is a missing key, which validation rejects.
	// +required
	Spec *EphemeralReportSpec `json:"spec,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// EphemeralReportList contains a list of EphemeralReport
type EphemeralReportList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EphemeralReport `json:"items"`

	// Stored is the items' stored JSON when storage read the list for a plain JSON response
	// (see storedjson); never encoded.
	Stored storedjson.Items `json:"-"`
}

// StoredItems implements storedjson.Carrier.
func (l *EphemeralReportList) StoredItems() *storedjson.Items { return &l.Stored }

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterEphemeralReport is the Schema for the ClusterEphemeralReports API
type ClusterEphemeralReport struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec is the content of the report.
	// ---
	// The CRD requires it; nil is a missing key, which validation rejects.
	// +required
	Spec *EphemeralReportSpec `json:"spec,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterEphemeralReportList contains a list of ClusterEphemeralReport
type ClusterEphemeralReportList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterEphemeralReport `json:"items"`

	// Stored is the items' stored JSON when storage read the list for a plain JSON response
	// (see storedjson); never encoded.
	Stored storedjson.Items `json:"-"`
}

// StoredItems implements storedjson.Carrier.
func (l *ClusterEphemeralReportList) StoredItems() *storedjson.Items { return &l.Stored }
