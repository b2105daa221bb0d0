package kyverno

import (
	"context"
	"path/filepath"
)

// ChainsawVersion is the release of Kyverno's test runner that runs the module's chainsaw tests.
const ChainsawVersion = "v0.2.12"

// chainsawModule is chainsaw's Go module; its root package is the command.
const chainsawModule = "github.com/kyverno/chainsaw"

// buildChainsaw builds chainsaw's command from its own module, as Build builds Kyverno's
// controllers: a binary rather than a library, so that chainsaw's dependencies (other
// Kubernetes versions) stay out of this module's go.mod.
func buildChainsaw(ctx context.Context, logf func(string, ...any)) (string, error) {
	moduleDir, err := download(ctx, chainsawModule, ChainsawVersion)
	if err != nil {
		return "", err
	}
	dir, err := buildCached(ctx, build{
		what: "chainsaw " + ChainsawVersion, cacheName: "chainsaw-" + ChainsawVersion, moduleDir: moduleDir,
		args:  []string{"-ldflags", "-s -w", "."}, // the binary is named after the module: chainsaw
		note:  "a cold build takes a few minutes on 2 cores",
		shims: map[string]string{"pkg/runner/internal/module_path.go": chainsawModulePathShim},
	}, logf)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "chainsaw"), nil
}

// chainsawModulePathShim completes chainsaw's test dependencies for this Go. Chainsaw runs its
// tests through testing.MainStart, whose (internal, unversioned) dependency interface gained
// ModulePath after v0.2.12 was released: without the method, v0.2.12 does not build with Go 1.26
// ("does not implement testing.testDeps (missing method ModulePath)"), and v0.2.12 is the release
// served here. The method only names the module in test output; chainsaw has none to name.
const chainsawModulePathShim = `package internal

// ModulePath is added by reports-server's test harness (test/ecosystem/kyverno/chainsaw.go) so
// that chainsaw v0.2.12 builds with Go 1.26.
func (*TestDeps) ModulePath() string { return "" }
`

// ChainsawReportTests is the directory of the module's chainsaw report tests (admission and
// background, a test per directory, with the suite's configuration in .chainsaw.yaml); their
// step templates are in the sibling _step-templates, which the tests name by relative path.
func (b *Binaries) ChainsawReportTests() string {
	return filepath.Join(b.ModuleDir, "test", "conformance", "chainsaw", "reports")
}
