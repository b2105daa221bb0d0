package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/informertest"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// The release TestHelm installs, as deploy/README.md has users install it.
const (
	helmRelease   = "reports-server"
	helmNamespace = "reports-server"
)

// TestHelm installs deploy/helm/reports-server with Helm itself (the helm command test/deploy
// pins) into a control plane of its own, then upgrades and uninstalls it.
//
// Helm creates, updates and deletes the release's objects (ServiceAccount, RBAC, Service,
// Deployment, database Secret...) in kube-apiserver; the cluster has no kubelet, so the
// harness runs the Deployment's pods: after each Helm step it reads the release's manifest back
// from Helm (`helm get manifest`) and runs its Deployment as local processes with that
// Deployment's arguments and environment (the database URL read from the Secret the chart made,
// as the kubelet would), behind EndpointSlices of the release's Service, exactly as the other
// tests run deploy/manifests (cluster.Deploy). An upgrade that changes the pod template is
// rolled out as the Deployment controller would with the chart's strategy (cluster.RollOut:
// maxSurge 1, maxUnavailable 0). What is checked is what users see: the API served through
// kube-apiserver, and what stays behind.
func TestHelm(t *testing.T) {
	// One replica at first, whatever REPORTS_E2E_REPLICAS says: the upgrade scales to two.
	c := startClusterWith(t, cluster.Options{ControlPlaneOnly: true, Replicas: 1})
	h := &release{c: c, chart: chartDir(t), databaseURL: c.DatabaseURL}
	var kept map[string]string
	if !t.Run("Install", func(t *testing.T) { kept = testHelmInstall(t, h) }) {
		return
	}
	if !t.Run("Upgrade", func(t *testing.T) { testHelmUpgrade(t, h, kept) }) {
		return
	}
	t.Run("Uninstall", func(t *testing.T) { testHelmUninstall(t, h) })
}

// release is the Helm release under test.
type release struct {
	c           *cluster.Cluster
	chart       string
	databaseURL string
}

// helm runs the helm command on the release's namespace and fails t on error.
func (h *release) helm(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := h.c.Helm(testContext(t, 5*time.Minute), nil, append(args, "--namespace", helmNamespace)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// values are the release's values: the harness's PostgreSQL database (the chart keeps the URL
// in a Secret) and more.
func (h *release) values(more string) string {
	return fmt.Sprintf("database: {url: %q}\n%s", h.databaseURL, more)
}

// manifests are the release's objects as Helm installed them.
func (h *release) manifests(t *testing.T) *cluster.Manifests {
	t.Helper()
	m, err := cluster.DecodeManifests("Helm release "+helmRelease, h.helm(t, "get", "manifest", helmRelease))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testHelmInstall installs the release with one replica, runs it and writes reports of every
// kind. It returns their resourceVersions by kind and name, which the upgrade must keep.
func testHelmInstall(t *testing.T, h *release) map[string]string {
	h.helm(t, "install", helmRelease, h.chart, "--create-namespace", "--values", valuesFile(t, h.values("replicaCount: 1")))
	if status := h.helm(t, "status", helmRelease); !strings.Contains(status, "STATUS: deployed") {
		t.Fatalf("helm status:\n%s", status)
	}
	m := h.manifests(t)
	ctx := testContext(t, 5*time.Minute)
	if err := h.c.Deploy(ctx, m); err != nil {
		t.Fatalf("run the release's Deployment: %v", err)
	}
	if got := h.c.APIServiceNames(); len(got) != 4 {
		t.Errorf("the release's server registers APIServices %v, want the three report groups and analytics", got)
	}

	const ns = "helm-kept"
	ensureNamespace(t, h.c, ns, nil)
	dyn := dynamicClient(t, h.c)
	kept := map[string]string{}
	for _, k := range reports.All() {
		for i := range 3 {
			name := "kept-" + strconv.Itoa(i)
			obj, err := resourceFor(dyn, k, ns).Create(ctx, report(k, ns, name, "fail", "web-"+strconv.Itoa(i)), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create %s %s: %v", k.Kind, name, err)
			}
			kept[k.Kind+"/"+name] = obj.GetResourceVersion()
		}
	}
	return kept
}

// testHelmUpgrade upgrades the release to two replicas and a changed server flag (a new pod
// template, so a rollout) while a shared informer watches PolicyReports through kube-apiserver
// and a writer keeps creating and updating them. The migrations ran once, at install: the new
// replicas find nothing to apply. The reports written before are kept, every write of the
// rollout is served, and the informer sees every one of them as a watch event, without
// relisting.
func testHelmUpgrade(t *testing.T, h *release, kept map[string]string) {
	ctx := testContext(t, 10*time.Minute)
	migrationsBefore := migrationRows(t, h.databaseURL)

	const ns = "helm-upgrade"
	ensureNamespace(t, h.c, ns, nil)
	polr := kindByResource(t, "policyreports")
	res := resourceFor(dynamicClient(t, h.c), polr, ns)
	inf, err := informertest.StartHistory(testContext(t, time.Minute), res)
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	w := informertest.StartWriter(ctx, res, "w", 3000, func(name string) *unstructured.Unstructured {
		return report(polr, ns, name, "pass", name)
	})

	h.helm(t, "upgrade", helmRelease, h.chart, "--values", valuesFile(t, h.values("replicaCount: 2\nextraArgs: [--v=2]")))
	m := h.manifests(t)
	if err := h.c.RollOut(ctx, m); err != nil {
		t.Fatalf("roll out the upgraded Deployment: %v", err)
	}
	if err := h.c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// Some writes after the rollout too, all on the new replicas.
	if err := w.WaitFor(testContext(t, 2*time.Minute), w.Count()+20); err != nil {
		t.Fatal(err)
	}
	written, retried, err := w.Stop()
	if err != nil {
		t.Fatalf("writing through the upgrade: %v", err)
	}
	t.Logf("%d reports written and updated during the upgrade (%d attempts retried)", len(written), retried)

	if got := len(h.c.ReportsServers); got != 2 {
		t.Errorf("%d replicas after the upgrade, want 2", got)
	}
	for _, r := range h.c.ReportsServers {
		if !slices.Contains(r.Args(), "--v=2") {
			t.Errorf("%s runs %v, not the upgraded Deployment's arguments", r.Name, r.Args())
		}
	}
	if history := h.helm(t, "history", helmRelease); !strings.Contains(history, "superseded") || !strings.Contains(history, "deployed") {
		t.Errorf("helm history:\n%s", history)
	}
	if after := migrationRows(t, h.databaseURL); after != migrationsBefore {
		t.Errorf("goose_db_version changed during the upgrade: %s, before %s", after, migrationsBefore)
	}

	dyn := dynamicClient(t, h.c)
	for _, k := range reports.All() {
		for i := range 3 {
			name := "kept-" + strconv.Itoa(i)
			obj, err := resourceFor(dyn, k, "helm-kept").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s %s after the upgrade: %v", k.Kind, name, err)
			} else if want := kept[k.Kind+"/"+name]; obj.GetResourceVersion() != want {
				t.Errorf("%s %s has resourceVersion %s after the upgrade, want %s", k.Kind, name, obj.GetResourceVersion(), want)
			}
		}
	}
	// The old replica ends its watches cleanly when it stops (--shutdown-watch-termination-grace-period),
	// so the informer resumes its watch on a new replica without relisting, and sees every write as
	// an event (test/integration TestInformerThroughRollingUpgrade is the same without kube-apiserver).
	if err := inf.WaitEqual(testContext(t, time.Minute), res); err != nil {
		t.Fatal(err)
	}
	t.Logf("the informer synced %d time(s)", inf.Syncs())
	if missed := inf.Missed(written); len(missed) > 0 {
		t.Errorf("the informer missed %d of the writes' events (it synced %d time(s)): %s", len(missed), inf.Syncs(), strings.Join(missed, " "))
	}
}

// testHelmUninstall uninstalls the release. Helm deletes the release's objects; the harness then
// stops the replicas, as the Deployment's pods go. The APIServices the server registered and its
// serving certificate's Secret are not the release's: they stay until the commands NOTES.txt
// prints remove them, after which discovery through kube-apiserver is whole again. The database
// is untouched.
func testHelmUninstall(t *testing.T, h *release) {
	ctx := testContext(t, 5*time.Minute)
	notes := h.helm(t, "get", "notes", helmRelease)
	dbBefore := databaseState(t, h.databaseURL)

	h.helm(t, "uninstall", helmRelease)
	if err := h.c.RemoveReplicas(ctx, h.c.ReportsServers...); err != nil {
		t.Fatal(err)
	}
	if out, _, err := h.c.Helm(ctx, nil, "status", helmRelease, "--namespace", helmNamespace); err == nil {
		t.Errorf("helm status after uninstall:\n%s", out)
	}
	left := kubectl(t, h.c, "get", "deployments,services,serviceaccounts,secrets,roles,rolebindings,clusterroles,clusterrolebindings,poddisruptionbudgets",
		"--all-namespaces", "-l", "app.kubernetes.io/instance="+helmRelease, "-o", "name")
	if strings.TrimSpace(left) != "" {
		t.Errorf("objects of the release left after helm uninstall:\n%s", left)
	}
	apiServices := func() string {
		return strings.TrimSpace(kubectl(t, h.c, "get", "apiservices", "-l", "app.kubernetes.io/managed-by=reports-server", "-o", "name"))
	}
	if got := apiServices(); strings.Count(got, "\n")+1 != len(h.c.APIServiceNames()) {
		t.Errorf("the server's APIServices after helm uninstall: %q; want all %d (they are not the release's)", got, len(h.c.APIServiceNames()))
	}

	commands := uninstallCommands(t, notes)
	for _, args := range commands {
		kubectl(t, h.c, args...)
	}
	if got := apiServices(); got != "" {
		t.Errorf("APIServices left after the commands of NOTES.txt: %s", got)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(h.c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	// An APIService without a server would make discovery fail for every client.
	eventually(t, "discovery complete and without the report groups", time.Minute, func(ctx context.Context) (bool, string, error) {
		groups, _, err := dc.ServerGroupsAndResources()
		if err != nil {
			return false, err.Error(), nil
		}
		for _, g := range groups {
			if slices.Contains([]string{"wgpolicyk8s.io", "reports.kyverno.io", "openreports.io", "analytics.reports-server.io"}, g.Name) {
				return false, "still served: " + g.Name, nil
			}
		}
		return true, "", nil
	})
	if after := databaseState(t, h.databaseURL); after != dbBefore {
		t.Errorf("the database changed with the uninstall: %s, before %s", after, dbBefore)
	}
}

// uninstallCommands are the kubectl commands NOTES.txt says to run after helm uninstall, as
// arguments.
func uninstallCommands(t *testing.T, notes string) [][]string {
	t.Helper()
	var commands [][]string
	for _, line := range strings.Split(notes, "\n") {
		args := strings.Fields(line)
		if len(args) > 1 && args[0] == "kubectl" && slices.Contains(args, "delete") {
			commands = append(commands, args[1:])
		}
	}
	if len(commands) != 2 {
		t.Fatalf("NOTES.txt has %d kubectl delete commands, want two (APIServices, the serving certificate's Secret):\n%s", len(commands), notes)
	}
	return commands
}

// migrationRows summarises goose's bookkeeping: how many migrations were applied, the last one,
// and whether any version was applied twice.
func migrationRows(t *testing.T, url string) string {
	t.Helper()
	return queryString(t, url, `SELECT format('%s rows, last id %s, %s distinct versions', count(*), max(id), count(DISTINCT version_id))
FROM goose_db_version`)
}

// databaseState summarises every stored report (keys and resourceVersions) and the migrations.
func databaseState(t *testing.T, url string) string {
	t.Helper()
	return queryString(t, url, `SELECT format('%s reports (%s), migrations: %s rows, last id %s',
	(SELECT count(*) FROM reports),
	(SELECT md5(coalesce(string_agg(cluster || key || resource_version, ',' ORDER BY cluster, key), '')) FROM reports),
	(SELECT count(*) FROM goose_db_version), (SELECT max(id) FROM goose_db_version))`)
}

func queryString(t *testing.T, url, query string) string {
	t.Helper()
	ctx := testContext(t, time.Minute)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}
