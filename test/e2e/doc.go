// Package e2e runs reports-server behind a real kube-apiserver.
package e2e
