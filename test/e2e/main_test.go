package e2e

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
)

// KeepEnv keeps the cluster's directory (logs, certificates, kubeconfigs) after a passing run
// too; after a failing run it is always kept.
const KeepEnv = "REPORTS_E2E_KEEP"

// TestMain runs the tests in a network namespace of their own (see cluster/netns.go): this
// process builds the binaries, then runs itself again inside the namespace, where the tests run.
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

// buildBinaries builds (or takes from the cache) every binary the tests run, outside the
// namespace, where the Go module proxy can be reached.
func buildBinaries(ctx context.Context) (*cluster.Binaries, func(), error) {
	moduleDir, err := os.Getwd() // go test runs in the package directory: test/e2e
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "reports-server-e2e-bin-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	start := time.Now()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...) }
	bins, err := cluster.Build(ctx, cluster.BuildOptions{
		ModuleDir: moduleDir, RepoRoot: filepath.Join(moduleDir, "..", ".."), OutDir: dir, Logf: logf,
	})
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build binaries: %w", err)
	}
	logf("binaries ready after %s", time.Since(start).Round(time.Millisecond))
	return bins, cleanup, nil
}

// TestBehindKubeAPIServer starts one cluster — etcd, kube-apiserver, kube-controller-manager and
// reports-server installed from deploy/manifests, as many replicas as its Deployment has (see
// ReplicasEnv) — and runs every check against it, through kube-apiserver unless a check is
// about one replica. The checks share the cluster and run in order; the ones that stop, kill
// and restart replicas come last: availability, then the migration from CRDs.
func TestBehindKubeAPIServer(t *testing.T) {
	c := startCluster(t)
	t.Run("NetworkNamespace", func(t *testing.T) { testNetworkNamespace(t, c) })
	t.Run("Discovery", func(t *testing.T) { testDiscovery(t, c) })
	t.Run("Kubectl", func(t *testing.T) { testKubectl(t, c) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, c) })
	t.Run("GarbageCollection", func(t *testing.T) { testGarbageCollection(t, c) })
	t.Run("Informer", func(t *testing.T) { testInformer(t, c) })
	t.Run("DeployManifestsDryRun", func(t *testing.T) { testManifestsDryRun(t, c) })
	t.Run("HelmChartDryRun", func(t *testing.T) { testChartDryRun(t, c) })
	t.Run("Differential", func(t *testing.T) { testDifferential(t, c) })
	t.Run("Availability", func(t *testing.T) { testAvailability(t, c) })
	t.Run("MigrationFromCRDs", func(t *testing.T) { testMigrationFromCRDs(t, c) })
}

// startCluster starts the cluster on a fresh database. Everything is stopped when t ends,
// whatever the outcome.
func startCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	return startClusterWith(t, cluster.Options{Replicas: replicasFromEnv(t)})
}

// startClusterWith is startCluster with o's Replicas and ControlPlaneOnly.
func startClusterWith(t *testing.T, o cluster.Options) *cluster.Cluster {
	t.Helper()
	moduleDir, err := os.Getwd() // go test runs in the package directory: test/e2e
	if err != nil {
		t.Fatal(err)
	}
	repoRoot := filepath.Join(moduleDir, "..", "..")
	dir, err := os.MkdirTemp("", "reports-server-e2e-*")
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

	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Hour)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-time.Minute))
	defer cancel()

	// reports-server stops (cluster cleanup, registered later, runs earlier) before its database
	// is dropped.
	databaseURL := dbtest.URL(t)
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: dir, Binaries: network.Binaries, RepoRoot: repoRoot, DatabaseURL: databaseURL,
		Replicas: o.Replicas, ControlPlaneOnly: o.ControlPlaneOnly, Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("start cluster (logs in %s): %v", filepath.Join(dir, "logs"), err)
	}
	t.Cleanup(c.Stop)
	var addrs []string
	for _, r := range c.ReportsServers {
		addrs = append(addrs, r.Address())
	}
	t.Logf("cluster ready after %s (kube-apiserver %s, %d reports-server replicas on %s, logs in %s)",
		time.Since(start).Round(time.Millisecond), c.Server, len(addrs), strings.Join(addrs, " "), filepath.Join(dir, "logs"))
	return c
}
