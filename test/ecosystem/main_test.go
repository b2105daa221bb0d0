package ecosystem

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/test/e2e/cluster"
	"github.com/reports-server/reports-server/test/ecosystem/kyverno"
)

// KeepEnv keeps the cluster's directory (logs, kubeconfigs) after a passing run too; after a
// failing run it is always kept.
const KeepEnv = "REPORTS_E2E_KEEP"

// TestMain runs the tests in a network namespace of their own, as test/e2e does: this process
// builds the cluster's binaries and Kyverno's (where the module proxy is reachable), then runs
// itself again inside the namespace.
func TestMain(m *testing.M) {
	ns, err := cluster.CurrentNamespace()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ns == nil {
		os.Exit(cluster.RunInNamespace(buildBinaries))
	}
	if err := ns.SetUp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	network = ns
	dbtest.Main(m)
}

// network is the namespace the tests run in, set by TestMain before any test runs.
var network *cluster.Namespace

// buildBinaries builds (or takes from the caches) the cluster's binaries, with test/e2e's module
// (its go.mod pins the control plane), and Kyverno's.
func buildBinaries(ctx context.Context) (*cluster.Binaries, func(), error) {
	moduleDir, err := os.Getwd() // go test runs in the package directory: test/ecosystem
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "reports-server-ecosystem-bin-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	start := time.Now()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "ecosystem: "+format+"\n", args...) }
	bins, err := cluster.Build(ctx, cluster.BuildOptions{
		ModuleDir: filepath.Join(moduleDir, "..", "e2e"), RepoRoot: filepath.Join(moduleDir, "..", ".."), OutDir: dir, Logf: logf,
	})
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build the cluster's binaries: %w", err)
	}
	// Chainsaw only for TestKyvernoChainsaw, which is opt-in.
	ky, err := kyverno.Build(ctx, os.Getenv(ChainsawEnv) != "", logf)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build Kyverno: %w", err)
	}
	bins.Extra = map[string]string{}
	ky.Put(bins.Extra)
	logf("binaries ready after %s", time.Since(start).Round(time.Millisecond))
	return bins, cleanup, nil
}

// startCluster starts the cluster on a fresh database, reports-server with serverArgs added.
// Everything is stopped when t ends, whatever the outcome.
func startCluster(t *testing.T, serverArgs ...string) *cluster.Cluster {
	t.Helper()
	return startClusterWith(t, false, serverArgs...)
}

// startClusterWith is startCluster; with controlPlaneOnly, reports-server is neither installed
// nor started (etcd, kube-apiserver and kube-controller-manager only): the cluster a Kyverno user
// has without reports-server, once the report CRDs are installed.
func startClusterWith(t *testing.T, controlPlaneOnly bool, serverArgs ...string) *cluster.Cluster {
	t.Helper()
	moduleDir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "reports-server-ecosystem-*")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the processes are stopped.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv(KeepEnv) != "" {
			t.Logf("cluster directory kept (logs in %s)", filepath.Join(dir, "logs"))
			return
		}
		_ = os.RemoveAll(dir)
	})
	ctx := testContext(t, 10*time.Minute)
	// A control plane alone runs no reports-server, so it gets no database.
	var databaseURL string
	if !controlPlaneOnly {
		databaseURL = dbtest.URL(t)
	}
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: dir, Binaries: network.Binaries, RepoRoot: filepath.Join(moduleDir, "..", ".."), DatabaseURL: databaseURL,
		ServerArgs: serverArgs, ControlPlaneOnly: controlPlaneOnly, Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("start cluster (logs in %s): %v", filepath.Join(dir, "logs"), err)
	}
	t.Cleanup(c.Stop)
	if controlPlaneOnly {
		t.Logf("control plane ready after %s (kube-apiserver %s, no reports-server, logs in %s)",
			time.Since(start).Round(time.Millisecond), c.Server, filepath.Join(dir, "logs"))
		return c
	}
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, r := range c.ReportsServers {
		addrs = append(addrs, r.Address())
	}
	t.Logf("cluster ready after %s (kube-apiserver %s, reports-server on %s, logs in %s)",
		time.Since(start).Round(time.Millisecond), c.Server, strings.Join(addrs, " "), filepath.Join(dir, "logs"))
	return c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
