# One entry point for the generators and the checks CI runs.
# Every tool runs through `go tool`, pinned in go.mod (API generators) or tools/go.mod (sqlc, which
# needs cgo and pulls dependencies we keep out of the server's module graph).
GO ?= go
SQLC := $(GO) tool -modfile=tools/go.mod sqlc
GOOSE := $(GO) tool -modfile=tools/go.mod goose

.PHONY: all build generate generate-sqlc generate-apis verify test e2e e2e-ecosystem e2e-kyverno-scale e2e-kyverno-chainsaw bench-compare migration

all: build

build:
	$(GO) build -o bin/reports-server ./cmd/reports-server

generate: generate-sqlc generate-apis

generate-sqlc:
	$(SQLC) generate -f sqlc.yaml

generate-apis:
	./hack/generate-apis.sh

# verify fails when generated code is stale or Go files are not gofmt'ed.
verify:
	./hack/verify-generated.sh

# test is the project's one test command (README, CI): checks, then every test against a real
# PostgreSQL (see internal/db/dbtest for how it is found or started).
test: verify
	./hack/test.sh

# e2e runs reports-server behind a real kube-apiserver (test/e2e; also the last step of `make test`).
e2e:
	GO=$(GO) ./hack/e2e.sh

# e2e-ecosystem runs Kyverno, built from its module, against reports-server in the e2e cluster
# (test/ecosystem). Opt-in: a cold Kyverno build takes 15 minutes or more; cached like e2e.
e2e-ecosystem:
	GO=$(GO) ./hack/e2e-ecosystem.sh

# e2e-kyverno-scale runs the same Kyverno workload twice, with Kyverno's report CRDs in etcd and
# with reports-server, and prints a Markdown table of times, sizes, CPU and memory
# (test/ecosystem TestKyvernoAtScale; KYVERNO_SCALE objects, 5000 unless set; docs/benchmarks.md).
# reports-server's database (here and in bench-compare) is a private PostgreSQL (dbtest's, default
# settings, autovacuum on) unless REPORTS_TEST_LOCAL_PG names one: the machine's shared server may
# run without autovacuum (CI machines do), which measures a database nothing cleans, and its CPU
# is not the workload's alone.
KYVERNO_SCALE ?= 5000
BENCH_PG ?= $(or $(REPORTS_TEST_LOCAL_PG),off)
e2e-kyverno-scale:
	cd test/ecosystem && GOWORK=off REPORTS_KYVERNO_SCALE=$(KYVERNO_SCALE) REPORTS_TEST_LOCAL_PG=$(BENCH_PG) $(GO) test -count=1 -timeout 180m -v -run '^TestKyvernoAtScale$$' .

# e2e-kyverno-chainsaw runs Kyverno's own chainsaw report tests (its module's
# test/conformance/chainsaw/reports) against reports-server, one subtest each (test/ecosystem
# TestKyvernoChainsaw; deploy/README.md says which run and which are skipped, and why).
e2e-kyverno-chainsaw:
	cd test/ecosystem && GOWORK=off REPORTS_KYVERNO_CHAINSAW=1 $(GO) test -count=1 -timeout 90m -v -run '^TestKyvernoChainsaw$$' .

# bench-compare reads the same reports from kube-apiserver + etcd (a CRD) and from reports-server
# (aggregated and direct) in one cluster and one run, and prints a Markdown table of medians and
# ratios (test/e2e BenchmarkCompareReads; COMPARE_REPORTS, COMPARE_ROUNDS, COMPARE_WRITERS;
# COMPARE_PROFILE=<dir> keeps the replicas' CPU profiles of the aggregated and direct creates). Same set-up as
# e2e, with reports-server's database a private PostgreSQL as for e2e-kyverno-scale (BENCH_PG, above).
bench-compare:
	cd test/e2e && REPORTS_TEST_LOCAL_PG=$(BENCH_PG) $(GO) test -run '^$$' -bench BenchmarkCompareReads -benchtime 1x -timeout 60m -v .

# migration creates the next numbered goose migration: make migration NAME=add_something
migration:
	@test -n "$(NAME)" || (echo "usage: make migration NAME=what_it_does" >&2; exit 1)
	$(GOOSE) -dir sql/schema -s create $(NAME) sql
