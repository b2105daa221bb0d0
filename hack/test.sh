#!/usr/bin/env bash
# The project's one test command (`make test`, and CI through .ci/run).
#
# Tests that need PostgreSQL get it from internal/db/dbtest, which picks, once per test binary:
# $DATABASE_URL; else the local server at $REPORTS_TEST_LOCAL_PG (default
# postgres://postgres@127.0.0.1:5432/postgres); else a private throw-away server started from the
# installed PostgreSQL binaries. It prints which one it used.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}

echo "==> hack/check-test-network.sh"
./hack/check-test-network.sh

echo "==> go vet ./..."
"$GO" vet ./...

echo "==> go test -race ./..."
"$GO" test ./... -race -count=1 -timeout 25m "$@"
(cd test/deploy && "$GO" test ./... -count=1)  # deploy/ manifests and chart: a module of its own
(cd test/ecosystem && "$GO" vet ./...)  # Kyverno end to end: compiled here, run by make e2e-ecosystem

echo "==> end-to-end tests (hack/e2e.sh)"
GO="$GO" ./hack/e2e.sh
