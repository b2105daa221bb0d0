#!/usr/bin/env bash
# Regenerates the code derived from the API types in internal/apis:
#   internal/apis/<group>/<version>/zz_generated.deepcopy.go     (deepcopy-gen)
#   internal/apis/<group>/<version>/zz_generated.model_name.go   (openapi-gen: OpenAPI model names)
#   internal/generated/openapi/zz_generated.openapi.go           (openapi-gen: GetOpenAPIDefinitions)
#   hack/api-rule-violations.list                                (openapi-gen's API rule report)
# Both generators run through `go tool`, pinned in go.mod. Output is deterministic: running twice changes nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

module="$(go list -m)"
boilerplate="hack/boilerplate.go.txt"
openapi_dir="internal/generated/openapi"

# Our API packages, in a fixed order.
api_pkgs=(
	"${module}/internal/apis/analytics/v1alpha1"
	"${module}/internal/apis/openreports/v1alpha1"
	"${module}/internal/apis/reportskyverno/v1"
	"${module}/internal/apis/wgpolicyk8s/v1alpha2"
)

# Kubernetes packages whose types our types reference (as kubernetes/sample-apiserver does). They live in the
# read-only module cache and already carry their own model names.
k8s_pkgs=(
	"k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
)

readonly_args=()
for pkg in "${k8s_pkgs[@]}"; do
	readonly_args+=(--readonly-pkg "${pkg}")
done

# Start from scratch so that files of removed types or packages do not linger.
rm -f internal/apis/*/*/zz_generated.deepcopy.go internal/apis/*/*/zz_generated.model_name.go \
	"${openapi_dir}/zz_generated.openapi.go"
mkdir -p "${openapi_dir}"

go tool deepcopy-gen \
	--go-header-file "${boilerplate}" \
	--output-file zz_generated.deepcopy.go \
	"${api_pkgs[@]}"

go tool openapi-gen \
	--go-header-file "${boilerplate}" \
	--output-dir "${openapi_dir}" \
	--output-pkg "${module}/${openapi_dir}" \
	--output-file zz_generated.openapi.go \
	--output-model-name-file zz_generated.model_name.go \
	--report-filename hack/api-rule-violations.list \
	"${readonly_args[@]}" \
	"${k8s_pkgs[@]}" \
	"${api_pkgs[@]}"
