#!/usr/bin/env bash
# End-to-end tests (`make e2e`, and the last step of hack/test.sh): reports-server behind a real
# kube-apiserver, kube-controller-manager and etcd built from their Go modules (test/e2e, a module
# of its own; see "End-to-end tests" in deploy/README.md). The cluster binaries are cached in
# ${REPORTS_E2E_CACHE:-${XDG_CACHE_HOME:-~/.cache}/reports-server-e2e}; the first run builds them
# (about 12 minutes on 2 cores), later runs take a few minutes. Extra arguments go to go test,
# e.g. hack/e2e.sh -v -run 'TestBehindKubeAPIServer/RBAC'.
set -euo pipefail
cd "$(dirname "$0")/../test/e2e"

GO=${GO:-go}
"$GO" vet ./...
"$GO" test ./... -count=1 -timeout 40m "$@"
