package ecosystem

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/reports-server/reports-server/test/ecosystem/kyverno"
)

// ChainsawEnv opts in to TestKyvernoChainsaw (see its comment for why it is not run by default).
const ChainsawEnv = "REPORTS_KYVERNO_CHAINSAW"

// chainsawSkipped are the report tests of Kyverno's module that cannot run against this cluster,
// each with the reason. Every other test under the module's test/conformance/chainsaw/reports
// runs, so a test a later Kyverno adds runs unless listed here.
var chainsawSkipped = map[string]string{
	"admission/update": "asserts the Deployment's status.readyReplicas: 1, which needs a kubelet; the cluster has none, " +
		"so its Pods stay Pending",
	"background/verify-image-pass": "verifies image signatures from ghcr.io; the cluster's network namespace has no route out",
	"background/verify-image-fail": "verifies image signatures from ghcr.io; the cluster's network namespace has no route out",
	"background/generate": "a generate rule needs Kyverno's background controller (cmd/background-controller), " +
		"which this harness does not run",
	"background/mutate-existing": "a mutate-existing rule needs Kyverno's background controller (cmd/background-controller), " +
		"which this harness does not run",
}

// TestKyvernoChainsaw runs Kyverno's own chainsaw report tests (test/conformance/chainsaw/reports
// of its module at kyverno.Version: admission and background reports, asserted by content) with
// chainsaw kyverno.ChainsawVersion against reports-server, one subtest per chainsaw test, with
// Kyverno's controllers set up as TestKyverno sets them plus PolicyExceptions, which the
// conformance suite turns on. The tests run one after another, as the suite's configuration
// asks (they share the default namespace and cluster-wide policies). It skips unless
// REPORTS_KYVERNO_CHAINSAW is set: the tests wait on timeouts and fixed sleeps and take longer
// than the rest of `make e2e-ecosystem` together (see deploy/README.md).
func TestKyvernoChainsaw(t *testing.T) {
	if os.Getenv(ChainsawEnv) == "" {
		t.Skipf("set %s=1 to run Kyverno's chainsaw report tests against reports-server", ChainsawEnv)
	}
	k := startKyverno(t, kyvernoSetup{policyExceptions: true})
	if k.bins.Chainsaw == "" {
		t.Fatalf("chainsaw was not built: TestMain builds it when %s is set", ChainsawEnv)
	}
	root := k.bins.ChainsawReportTests()
	tests, err := chainsawTests(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(tests) == 0 {
		t.Fatalf("no chainsaw tests under %s", root)
	}
	for name := range chainsawSkipped {
		if !slices.Contains(tests, name) {
			t.Errorf("chainsawSkipped names %s, which is not a test of Kyverno %s: update the list", name, kyverno.Version)
		}
	}
	// Scripts in the tests run kubectl, as the cluster's admin.
	path := filepath.Dir(k.c.KubectlBin) + string(os.PathListSeparator) + os.Getenv("PATH")
	for _, name := range tests {
		t.Run(name, func(t *testing.T) {
			if reason, ok := chainsawSkipped[name]; ok {
				t.Skip(reason)
			}
			runChainsaw(t, k.bins.Chainsaw, root, name, []string{"KUBECONFIG=" + k.c.AdminKubeconfig, "PATH=" + path})
		})
	}
}

// chainsawTests are the directories under root that hold a chainsaw test, relative to root, in
// lexical order.
func chainsawTests(root string) ([]string, error) {
	var tests []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "chainsaw-test.yaml" {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		tests = append(tests, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the chainsaw tests under %s: %w", root, err)
	}
	return tests, nil
}

// chainsawSuiteFlags are the suite's configuration (reports/.chainsaw.yaml of Kyverno's module)
// as flags: that file also sets spec.namespace.fastDelete, which chainsaw v0.2.12 (the release
// served here) refuses as an unknown field, so it cannot be loaded. fastDelete only shortens the
// deletion of chainsaw's per-test namespaces.
var chainsawSuiteFlags = []string{
	"--cleanup-delay", "1s", "--full-name", "--fail-fast", "--force-termination-grace-period", "1s",
	"--apply-timeout", "10s", "--assert-timeout", "1m30s", "--error-timeout", "1m30s",
}

// runChainsaw runs one chainsaw test with the suite's configuration (timeouts, cleanup) and
// fails t with chainsaw's output if the test fails; chainsaw's output is logged either way.
func runChainsaw(t *testing.T, chainsaw, root, name string, env []string) {
	ctx := testContext(t, 10*time.Minute)
	cmd := exec.CommandContext(ctx, chainsaw, append([]string{"test",
		"--test-dir", filepath.Join(root, filepath.FromSlash(name)),
		"--no-color"}, chainsawSuiteFlags...)...)
	// The module cache is read-only; chainsaw writes nothing there, but its working directory is
	// the test's own.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("chainsaw %s (%s):\n%s", name, time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("chainsaw test %s: %v", name, err)
	}
}
