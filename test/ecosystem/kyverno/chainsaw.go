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
		args: []string{"-ldflags", "-s -w", "."}, // the binary is named after the module: chainsaw
		note: "a cold build takes a few minutes on 2 cores",
	}, logf)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "chainsaw"), nil
}

// ChainsawReportTests is the directory of the module's chainsaw report tests (admission and
// background, a test per directory, with the suite's configuration in .chainsaw.yaml); their
// step templates are in the sibling _step-templates, which the tests name by relative path.
func (b *Binaries) ChainsawReportTests() string {
	return filepath.Join(b.ModuleDir, "test", "conformance", "chainsaw", "reports")
}
