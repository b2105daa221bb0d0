// Package ecosystem runs real producers and consumers of policy reports against reports-server
// behind a real kube-apiserver (the cluster of test/e2e/cluster): Kyverno's reports and
// admission controllers, built from Kyverno's own Go module (see kyverno.Build), writing
// PolicyReports and ephemeral reports as they would in a cluster.
//
// It is a module of its own so that nothing of Kyverno's ever enters the server's go.mod, and it
// is opt-in (make e2e-ecosystem, hack/e2e-ecosystem.sh): a cold build of Kyverno takes 15 minutes
// or more on 2 cores. See "Kyverno" in deploy/README.md.
package ecosystem
