package e2e

import (
	"context"
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

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestBehindKubeAPIServer starts one cluster — etcd, kube-apiserver, kube-controller-manager and
// reports-server installed from deploy/manifests, as many replicas as its Deployment has (see
// ReplicasEnv) — and runs every check against it, through kube-apiserver unless a check is
// about one replica. The checks share the cluster and run in order; the ones that stop, kill
// and restart replicas come last: availability, then the migration from CRDs.
func TestBehindKubeAPIServer(t *testing.T) {
	c := startCluster(t)
	t.Run("Discovery", func(t *testing.T) { testDiscovery(t, c) })
	t.Run("Kubectl", func(t *testing.T) { testKubectl(t, c) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, c) })
	t.Run("GarbageCollection", func(t *testing.T) { testGarbageCollection(t, c) })
	t.Run("Informer", func(t *testing.T) { testInformer(t, c) })
	t.Run("DeployManifestsDryRun", func(t *testing.T) { testManifestsDryRun(t, c) })
	t.Run("HelmChartDryRun", func(t *testing.T) { testChartDryRun(t, c) })
	t.Run("Availability", func(t *testing.T) { testAvailability(t, c) })
	t.Run("MigrationFromCRDs", func(t *testing.T) { testMigrationFromCRDs(t, c) })
}

// startCluster builds the binaries (cached) and reports-server (always), and starts the cluster
// on a fresh database. Everything is stopped when t ends, whatever the outcome.
func startCluster(t *testing.T) *cluster.Cluster {
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

	// A cold build of the cluster binaries can take most of the test binary's time limit; stop a
	// minute before it, so the failure is an error with logs rather than the timeout's panic.
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Hour)
	}
	deadline = deadline.Add(-time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	bins, err := cluster.Build(ctx, cluster.BuildOptions{ModuleDir: moduleDir, RepoRoot: repoRoot, OutDir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatalf("build binaries: %v", err)
	}
	t.Logf("binaries ready after %s", time.Since(start).Round(time.Millisecond))

	// reports-server stops (cluster cleanup, registered later, runs earlier) before its database
	// is dropped.
	databaseURL := dbtest.URL(t)
	start = time.Now()
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: dir, Binaries: bins, RepoRoot: repoRoot, DatabaseURL: databaseURL, Replicas: replicasFromEnv(t), Logf: t.Logf,
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
