#!/usr/bin/env bash
# Ecosystem tests (`make e2e-ecosystem`, opt-in, not part of `make test`): Kyverno's reports and
# admission controllers, built from Kyverno's Go module, against reports-server behind the e2e
# cluster (test/ecosystem, a module of its own; see "Kyverno" in deploy/README.md). The cluster's
# binaries and Kyverno's are cached in ${REPORTS_E2E_CACHE:-${XDG_CACHE_HOME:-~/.cache}/reports-server-e2e};
# a cold Kyverno build takes 15 minutes or more on 2 cores (an hour on a busy machine), later runs
# about three minutes. Then Policy Reporter and Helm (test/e2e TestPolicyReporter, which skips unless
# REPORTS_E2E_POLICY_REPORTER names a checkout or binary, and TestHelm, which `make test` runs too).
# Extra arguments go to the Kyverno tests, e.g. hack/e2e-ecosystem.sh -v -run TestKyverno.
# TestKyvernoAtScale (Kyverno with the report CRDs and with reports-server, side by side) skips
# unless REPORTS_KYVERNO_SCALE is set; `make e2e-kyverno-scale` runs it with a longer timeout.
# TestKyvernoChainsaw (Kyverno's own chainsaw report tests) skips unless REPORTS_KYVERNO_CHAINSAW
# is set; `make e2e-kyverno-chainsaw` runs it.
set -euo pipefail
cd "$(dirname "$0")/../test/ecosystem"

GO=${GO:-go}
export GOWORK=off
"$GO" vet ./...
# The timeout covers the cold builds too (the cluster's binaries, Helm and Kyverno: together more
# than an hour on a busy 2-core machine; a 60-minute timeout killed such a run's Kyverno build).
# Verbose, so that the output names each scenario's steps with their results and durations.
"$GO" test ./... -count=1 -timeout 180m -v "$@"
cd ../e2e
"$GO" test ./... -count=1 -timeout 40m -v -run 'TestPolicyReporter|TestHelm'
