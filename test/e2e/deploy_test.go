package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testManifestsDryRun gives the plain manifests, as a user applies them, to the real
// kube-apiserver: every object passes validation and admission (server-side dry run) without
// warnings, in particular none from Pod Security admission, which the namespace's
// pod-security.kubernetes.io/warn: restricted label turns on for the Deployment.
func testManifestsDryRun(t *testing.T, c *cluster.Cluster) {
	dir := c.Manifests.Dir
	dryRunApply(t, c, nil, len(c.Manifests.Objects), "apply", "-k", dir, "--dry-run=server")
	dryRunApply(t, c, nil, 1, "apply", "-f", filepath.Join(dir, "database-secret.example.yaml"), "--dry-run=server")
}

// testChartDryRun renders the Helm chart with several value sets (`helm template`, the helm
// command test/deploy pins) and gives each to the real kube-apiserver.
// Value sets that need CRDs this cluster does not have (the cert-manager Certificate and Issuer,
// the Prometheus Operator ServiceMonitor) are left to test/deploy's static checks.
func testChartDryRun(t *testing.T, c *cluster.Cluster) {
	const ns = "chart"
	// As `helm install --create-namespace` would, plus the warning label of the restricted Pod
	// Security Standard, so the chart's pod templates are checked against it.
	ensureNamespace(t, c, ns, map[string]string{"pod-security.kubernetes.io/warn": "restricted"})
	chartDir := chartDir(t)
	caBundle := strings.ReplaceAll(strings.TrimSpace(string(c.CA.CertPEM)), "\n", "\n      ")
	for _, tc := range []struct {
		name, kubeVersion, values string
	}{
		// Managed APIServices (the default): no APIService objects; RBAC for them, the serving
		// certificate's Secret (a Role in the release namespace) and the migration from CRDs.
		{name: "defaults"},
		{name: "one group off", values: "groups: {reportsKyverno: false}"},
		{name: "without migration from CRDs", values: "apiService: {migrateFromCRDs: false, servingCertSecret: e2e-serving-cert}"},
		{name: "database url", values: "database: {url: 'postgres://reports:secret@db.example:5432/reports?sslmode=verify-full'}"},
		{name: "existing secret", values: "database: {existingSecret: pg-credentials, secretKey: dsn}"},
		{name: "bundled postgresql", values: "postgresql: {enabled: true, password: e2e-password}"},
		{name: "kubernetes 1.35", kubeVersion: "v1.35.0"},
		{name: "single replica, extra args", values: "replicaCount: 1\nclusterName: e2e\nextraArgs: [--v=2]\npriorityClassName: system-cluster-critical"},
		// Static APIServices rendered by the chart (report groups and analytics).
		{name: "static, self-signed", values: "apiService: {managed: false, insecureSkipTLSVerify: true}"},
		{name: "static, one group off", values: "apiService: {managed: false, insecureSkipTLSVerify: true}\ngroups: {wgpolicyk8s: false}"},
		{name: "static, provided certificate", values: "apiService:\n  managed: false\n  tls:\n    existingSecret: reports-server-tls\n    caBundle: |\n      " + caBundle + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kubeVersion := tc.kubeVersion
			if kubeVersion == "" {
				kubeVersion = "v1.37.0"
			}
			out, _, err := c.Helm(testContext(t, time.Minute), nil, "template", "reports-server", chartDir,
				"--namespace", ns, "--kube-version", kubeVersion, "--values", valuesFile(t, tc.values))
			if err != nil {
				t.Fatal(err)
			}
			rendered := []byte(out)
			if strings.Contains(tc.values, "managed: false") {
				rendered = withoutAPIServices(rendered)
			}
			dryRunApply(t, c, rendered, strings.Count(string(rendered), "\nkind: "), "apply", "-f", "-", "--dry-run=server")
		})
	}
}

// withoutAPIServices drops the APIService documents from a rendering. The chart's static
// APIServices have the names of the ones the cluster's server manages, so a dry-run apply would
// merge them into those (insecureSkipTLSVerify next to their caBundle, which kube-apiserver
// refuses) rather than check them as an installation would create them; test/deploy validates
// them with kube-aggregator's own validation instead.
func withoutAPIServices(rendered []byte) []byte {
	var kept []string
	for _, doc := range strings.Split(string(rendered), "\n---") {
		if !strings.Contains(doc, "\nkind: APIService\n") {
			kept = append(kept, doc)
		}
	}
	return []byte(strings.Join(kept, "\n---"))
}

// dryRunApply runs a server-side dry-run kubectl apply that must succeed, print no warning and
// report objects objects.
func dryRunApply(t *testing.T, c *cluster.Cluster, stdin []byte, objects int, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, stderr, err := c.Kubectl(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(stderr, "Warning") {
		t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !strings.HasSuffix(l, "(server dry run)") {
			t.Errorf("unexpected output line %q", l)
		}
	}
	if len(lines) != objects {
		t.Errorf("kubectl %s reported %d objects, want %d:\n%s", strings.Join(args, " "), len(lines), objects, out)
	}
}

// chartDir is deploy/helm/reports-server.
func chartDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "deploy", "helm", "reports-server"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// valuesFile writes values (YAML) to a file for helm --values. Not in t.TempDir: helm splits
// --values at commas, which subtest names (and so those directories) may have.
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	f, err := os.CreateTemp("", "helm-values-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	if _, err := f.WriteString(values); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
