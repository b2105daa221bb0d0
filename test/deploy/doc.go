// Package deploy checks the deployment artifacts in deploy/ without a cluster: the plain manifests
// (a kustomize base) and the Helm chart, rendered with several value sets, are decoded strictly
// into their typed Kubernetes objects and checked for the invariants an aggregated reports-server
// needs (flags the server has, APIServices pointing at the Service, RBAC bindings, restricted pod
// security).
//
// It is a module of its own, so Helm and kustomize stay out of the server's dependencies. It also
// pins the helm command (a tool directive in go.mod), which the end-to-end tests build with
// `go tool` and run against a real kube-apiserver: server-side dry runs of `helm template`, and
// install, upgrade and uninstall.
package deploy
