// Package e2e runs reports-server behind a real kube-apiserver (see package cluster): one
// cluster per TestBehindKubeAPIServer, with as many reports-server replicas as deploy/manifests'
// Deployment has (REPORTS_E2E_REPLICAS overrides), sharing one PostgreSQL database. Its subtests
// run in order: discovery, kubectl, RBAC and garbage collection through the aggregation layer; an
// informer kept in sync while writes are spread over the replicas (each replica's request metric
// shows its share); server-side dry runs of deploy/manifests and the Helm chart; availability as
// replicas are killed and restarted; and the migration from CRDs, including the takeover of an
// APIService in the older static form, a copy killed midway and resumed, and replicas starting
// at once, only one of which copies. TestHelm starts a control plane of its own and installs,
// upgrades and uninstalls the Helm chart there with the helm command.
package e2e
