// Package deploy checks the deployment artifacts in deploy/ without a cluster: the plain manifests
// (a kustomize base) and the Helm chart, rendered with several value sets, are decoded strictly
// into their typed Kubernetes objects and checked for the invariants an aggregated reports-server
// needs (flags the server has, APIServices pointing at the Service, RBAC bindings, restricted pod
// security).
//
// It is a module of its own, so Helm and kustomize stay out of the server's dependencies. Validation
// by a real kube-apiserver (kubectl apply --dry-run=server) is left to the end-to-end harness.
package deploy
