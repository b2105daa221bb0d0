package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// PolicyReporterEnv names a Policy Reporter (v3) binary, or a checkout of its source
// (github.com/kyverno/policy-reporter) that TestPolicyReporter builds. Without it the test skips.
const PolicyReporterEnv = "REPORTS_E2E_POLICY_REPORTER"

// The Kyverno-shaped workload: per-resource PolicyReports of Pods in a few namespaces, a
// ClusterPolicyReport per Namespace, and ephemeral reports in flight (which Policy Reporter does not
// read and our summaries do not count).
const (
	prNamespaces  = 4
	prPodsPerNS   = 50
	prEphemerals  = 10
	prWorkers     = 8
	prConvergence = 3 * time.Minute
)

// kyvernoPolicy is a policy as Kyverno reports it: severity and category come from the policy's
// annotations, so every result of a policy carries the same ones.
type kyvernoPolicy struct {
	name, category, severity string
	rules                    []string
}

var (
	podPolicies = []kyvernoPolicy{
		{"disallow-privileged-containers", "Pod Security Standards (Baseline)", "medium", []string{"privileged-containers"}},
		{"require-run-as-nonroot", "Pod Security Standards (Restricted)", "medium", []string{"run-as-non-root"}},
		{"disallow-latest-tag", "Best Practices", "medium", []string{"require-image-tag", "validate-image-tag"}},
		{"require-labels", "Best Practices", "low", []string{"check-for-labels"}},
		{"restrict-image-registries", "Best Practices", "high", []string{"validate-registries"}},
	}
	namespacePolicy = kyvernoPolicy{"require-ns-owner", "Multi-Tenancy", "critical", []string{"check-owner-label"}}
	// prOutcomes is cycled through to give every result an outcome; pass dominates, as in a cluster.
	prOutcomes = []string{"pass", "pass", "fail", "pass", "warn", "pass", "fail", "skip", "pass", "error", "pass"}
)

// TestPolicyReporter runs Kyverno's Policy Reporter (v3, out of cluster, with its REST API and
// metrics) against the e2e cluster while Kyverno-shaped reports are written through
// kube-apiserver, and checks that what it shows equals what our reporting views say: status
// counts per namespace (/v1/namespaced-resources/status-counts), namespaces (/v1/namespaces),
// results per policy (/v2/policies), severities per namespace
// (/v2/namespace-scoped/kyverno/severity-counts), results per resource
// (/v2/namespace-scoped/resource-results) and its policy_report_result and
// cluster_policy_report_result metric series. It checks again after updates, a JSON patch,
// deletes and a deletecollection, polling until both sides agree.
func TestPolicyReporter(t *testing.T) {
	bin := policyReporterBinary(t)
	queries := policyReporterQueries(t, (&policyReporter{}).views())
	polrGVR := kindByResource(t, "policyreports").GroupVersionResource()
	cpolrGVR := kindByResource(t, "clusterpolicyreports").GroupVersionResource()
	c := startCluster(t)
	dyn := dynamicClient(t, c)
	ctx := testContext(t, 20*time.Minute)

	start := time.Now()
	names := createKyvernoReports(t, c, dyn)
	applySharedKyvernoSamples(t, c)
	t.Logf("Kyverno-shaped reports written through kube-apiserver in %s", time.Since(start).Round(time.Millisecond))

	pr := startPolicyReporter(t, c, bin)
	db, err := pgx.Connect(ctx, c.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	// compare first waits until the results reflect every write made so far, so that neither side
	// can agree with the other on a state both have yet to leave; the API's own count of results
	// pins what both must show.
	compare := func(phase string) {
		t.Helper()
		start := time.Now()
		waitResultsCurrent(t, db)
		var last prComparison
		eventually(t, "Policy Reporter and reporting views agree ("+phase+")", prConvergence, func(ctx context.Context) (bool, string, error) {
			last = comparePolicyReporter(ctx, pr, db, queries)
			return last.equal(), last.diff(), nil
		})
		if want, got := finalResults(t, dyn, polrGVR, cpolrGVR), last.total("Results per policy"); got != want {
			t.Errorf("%s: Policy Reporter and SQL agree on %d results, the API holds %d in PolicyReports and ClusterPolicyReports", phase, got, want)
		}
		t.Logf("%s: equal after %s; %s", phase, time.Since(start).Round(time.Millisecond), last.summary())
	}
	compare("initial")

	// Updates as Kyverno makes them at a background scan: a resource fixed, its results flipped.
	for _, n := range names.pods[:20] {
		u, err := dyn.Resource(polrGVR).Namespace(n.namespace).Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		results, _, _ := unstructured.NestedSlice(u.Object, "results")
		for _, r := range results {
			r.(map[string]any)["result"] = "pass"
		}
		_ = unstructured.SetNestedSlice(u.Object, results, "results")
		_ = unstructured.SetNestedMap(u.Object, map[string]any{"pass": int64(len(results))}, "summary")
		if _, err := dyn.Resource(polrGVR).Namespace(n.namespace).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update %s/%s: %v", n.namespace, n.name, err)
		}
	}
	// A JSON patch: one result turned into a failure, another removed, one added.
	patch := []byte(`[
		{"op": "replace", "path": "/results/0/result", "value": "fail"},
		{"op": "remove", "path": "/results/1"},
		{"op": "add", "path": "/results/-", "value": {"policy": "require-labels", "rule": "check-for-team", "result": "fail",
			"severity": "low", "category": "Best Practices", "source": "kyverno", "scored": true, "message": "label team is required"}}
	]`)
	for _, n := range names.pods[20:30] {
		if _, err := dyn.Resource(polrGVR).Namespace(n.namespace).Patch(ctx, n.name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("JSON patch %s/%s: %v", n.namespace, n.name, err)
		}
	}
	compare("after updates and a JSON patch")

	// Deletes: reports of deleted Pods, a deleted Namespace's ClusterPolicyReport, and every
	// report of one namespace at once.
	for _, n := range names.pods[30:60] {
		if err := dyn.Resource(polrGVR).Namespace(n.namespace).Delete(ctx, n.name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete %s/%s: %v", n.namespace, n.name, err)
		}
	}
	if err := dyn.Resource(cpolrGVR).Delete(ctx, names.cluster[0], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dyn.Resource(polrGVR).Namespace(prNamespace(prNamespaces-1)).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	compare("after deletes")
}

// policyReporterBinary returns the Policy Reporter binary PolicyReporterEnv names, building it
// first when it names a checkout; without it the test skips and says how to get one.
func policyReporterBinary(t *testing.T) string {
	path := os.Getenv(PolicyReporterEnv)
	if path == "" {
		t.Skipf("%s is not set: it names a Policy Reporter v3 binary or source checkout (github.com/kyverno/policy-reporter; "+
			"its module is not on the Go module proxy). Get one with\n"+
			"  git clone https://github.com/kyverno/policy-reporter /tmp/policy-reporter && (cd /tmp/policy-reporter && go build -o policy-reporter .)\n"+
			"then run %s=/tmp/policy-reporter/policy-reporter hack/e2e.sh -run TestPolicyReporter -v (deploy/README.md)", PolicyReporterEnv, PolicyReporterEnv)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s: %v", PolicyReporterEnv, err)
	}
	if !info.IsDir() {
		return path
	}
	// A checkout: build it. The tests run in a network namespace without the module proxy, so its
	// modules must already be in the module cache (go mod download in the checkout).
	bin := filepath.Join(t.TempDir(), "policy-reporter")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = path
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build Policy Reporter in %s: %v\n%s\n(the test's network namespace cannot reach the module proxy: "+
			"run go mod download in the checkout first, or point %s at a built binary)", path, err, out, PolicyReporterEnv)
	}
	t.Logf("built Policy Reporter from %s in %s", path, time.Since(start).Round(time.Second))
	return bin
}

// policyReporter is a running Policy Reporter, its HTTP server on loopback.
type policyReporter struct {
	url     string
	logPath string
	client  *http.Client
}

// startPolicyReporter runs `policy-reporter run` out of cluster with the admin kubeconfig, its REST
// API and metrics on, as a child in its own process group (stopped when the test ends, killed if
// the test binary dies), inside the test's network namespace like the cluster. It waits until
// Policy Reporter says its informers have synced (/ready).
func startPolicyReporter(t *testing.T, c *cluster.Cluster, bin string) *policyReporter {
	t.Helper()
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	logPath := filepath.Join(c.Dir, "logs", "policy-reporter.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--kubeconfig", c.AdminKubeconfig, "--rest-enabled", "--metrics-enabled",
		"--port", strconv.Itoa(port), "--dbfile", filepath.Join(dir, "policy-reporter.db"), "--template-dir", filepath.Join(dir, "templates"))
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Policy Reporter: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	pr := &policyReporter{url: "http://127.0.0.1:" + strconv.Itoa(port), logPath: logPath, client: &http.Client{Timeout: 30 * time.Second}}
	start := time.Now()
	eventually(t, "Policy Reporter ready", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		select {
		case <-exited:
			return false, "", fmt.Errorf("Policy Reporter exited; its log:\n%s", tailFile(logPath, 30))
		default:
		}
		_, err := pr.get(ctx, "/ready")
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
	t.Logf("Policy Reporter ready after %s (log %s)", time.Since(start).Round(time.Millisecond), logPath)
	return pr
}

func (pr *policyReporter) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.url+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := pr.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

func (pr *policyReporter) getJSON(ctx context.Context, path string, into any) error {
	body, err := pr.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w: %s", path, err, body)
	}
	return nil
}

// prComparison holds each view twice: as Policy Reporter shows it and as our SQL answers it. Each
// view is flattened to "key → count" so that both sides compare as maps.
type prComparison struct {
	views []prView
	err   error
}

type prView struct {
	name          string
	reporter, sql map[string]int
}

func (c prComparison) equal() bool {
	if c.err != nil {
		return false
	}
	for _, v := range c.views {
		if !maps.Equal(v.reporter, v.sql) {
			return false
		}
	}
	return true
}

// diff names, for each view that differs, the keys whose counts differ (at most a few).
func (c prComparison) diff() string {
	if c.err != nil {
		return c.err.Error()
	}
	var out []string
	for _, v := range c.views {
		var keys []string
		for k := range v.reporter {
			keys = append(keys, k)
		}
		for k := range v.sql {
			if _, ok := v.reporter[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		var diffs []string
		for _, k := range keys {
			if v.reporter[k] != v.sql[k] {
				diffs = append(diffs, fmt.Sprintf("%s: Policy Reporter %d, SQL %d", k, v.reporter[k], v.sql[k]))
			}
		}
		if len(diffs) > 0 {
			out = append(out, fmt.Sprintf("%s differs at %d keys: %s", v.name, len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; ")))
		}
	}
	return strings.Join(out, "\n")
}

// total is the sum of a view's counts.
func (c prComparison) total(view string) int {
	sum := 0
	for _, v := range c.views {
		if v.name == view {
			for _, n := range v.sql {
				sum += n
			}
		}
	}
	return sum
}

// waitResultsCurrent waits until reporting.results reflects every write of the cluster so far.
func waitResultsCurrent(t *testing.T, db *pgx.Conn) {
	t.Helper()
	eventually(t, "reporting.results reflects every write", prConvergence, func(ctx context.Context) (bool, string, error) {
		var pending int64
		err := db.QueryRow(ctx, `SELECT coalesce(sum(pending_revisions), -1) FROM reporting.refresh_status
			WHERE object = 'results' AND refreshed_at IS NOT NULL`).Scan(&pending)
		return err == nil && pending == 0, fmt.Sprintf("pending revisions %d (%v)", pending, err), nil
	})
}

// finalResults counts, through kube-apiserver, the results of every PolicyReport and
// ClusterPolicyReport: what Policy Reporter reads.
func finalResults(t *testing.T, dyn dynamic.Interface, gvrs ...schema.GroupVersionResource) int {
	t.Helper()
	n := 0
	for _, gvr := range gvrs {
		list, err := dyn.Resource(gvr).List(testContext(t, time.Minute), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list %s: %v", gvr.Resource, err)
		}
		for _, item := range list.Items {
			results, _, _ := unstructured.NestedSlice(item.Object, "results")
			n += len(results)
		}
	}
	return n
}

// summary says what was compared: each view's keys and the sum of its counts.
func (c prComparison) summary() string {
	var out []string
	for _, v := range c.views {
		sum := 0
		for _, n := range v.sql {
			sum += n
		}
		out = append(out, fmt.Sprintf("%s: %d keys, total %d", v.name, len(v.sql), sum))
	}
	return strings.Join(out, "; ")
}

// policyReporterViews are the views compared, by their heading in the "Policy Reporter's views"
// section of docs/sql.md, whose query answers them from the reporting views.
func (pr *policyReporter) views() map[string]func(context.Context) (map[string]int, error) {
	return map[string]func(context.Context) (map[string]int, error){
		"Status counts per namespace": pr.namespacedStatusCounts,
		"Namespaces":                  pr.namespaces,
		"Results per policy":          pr.policies,
		"Severities per namespace":    pr.namespacedSeverityCounts,
		"Results per resource":        pr.resourceResults,
		"Metric series":               pr.metricSeries,
	}
}

// comparePolicyReporter reads every compared view from Policy Reporter and, with the documented
// query, from the reporting views.
func comparePolicyReporter(ctx context.Context, pr *policyReporter, db *pgx.Conn, queries map[string]string) prComparison {
	var out prComparison
	for _, name := range slices.Sorted(maps.Keys(queries)) {
		got, err := pr.views()[name](ctx)
		if err != nil {
			return prComparison{err: fmt.Errorf("%s from Policy Reporter: %w", name, err)}
		}
		want, err := sqlCounts(ctx, db, queries[name])
		if err != nil {
			return prComparison{err: fmt.Errorf("%s from SQL: %w", name, err)}
		}
		out.views = append(out.views, prView{name, got, want})
	}
	return out
}

// policyReporterQueries reads the queries of the "Policy Reporter's views" section of docs/sql.md,
// by heading, and fails unless there is one for every compared view and no other.
func policyReporterQueries(t *testing.T, views map[string]func(context.Context) (map[string]int, error)) map[string]string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(wd, "..", "..", "docs", "sql.md"))
	if err != nil {
		t.Fatal(err)
	}
	queries := map[string]string{}
	var in, inBlock bool
	var heading string
	var sql []string
	for line := range strings.SplitSeq(string(doc), "\n") {
		switch {
		case inBlock && strings.HasPrefix(line, "```"):
			inBlock = false
			if in {
				queries[heading] = strings.Join(sql, "\n")
			}
		case inBlock:
			sql = append(sql, line)
		case strings.HasPrefix(line, "```sql"):
			inBlock, sql = true, nil
		case strings.HasPrefix(line, "## "):
			in = strings.TrimSpace(line) == "## Policy Reporter's views"
		case strings.HasPrefix(line, "### "):
			heading = strings.TrimSpace(strings.TrimPrefix(line, "### "))
		}
	}
	for name := range views {
		if queries[name] == "" {
			t.Errorf("docs/sql.md, \"Policy Reporter's views\", has no query under \"### %s\"", name)
		}
	}
	for name := range queries {
		if views[name] == nil {
			t.Errorf("docs/sql.md, \"Policy Reporter's views\": \"### %s\" is compared with nothing in this test", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return queries
}

// sqlCounts runs a documented query: its leading columns are the key (joined with "/"), its last
// one the count; a query of one column lists keys, each counted once.
func sqlCounts(ctx context.Context, db *pgx.Conn, sql string) (map[string]int, error) {
	rows, err := db.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		// The simple protocol returns every value as text.
		var cols []string
		for _, v := range rows.RawValues() {
			cols = append(cols, string(v))
		}
		if len(cols) == 1 {
			out[cols[0]]++
			continue
		}
		n, err := strconv.Atoi(cols[len(cols)-1])
		if err != nil {
			return nil, fmt.Errorf("the last column is no count: %w", err)
		}
		out[strings.Join(cols[:len(cols)-1], "/")] += n
	}
	return out, rows.Err()
}

// nonZero drops zero counts: Policy Reporter lists every status and severity, also unused ones.
func nonZero(m map[string]int) map[string]int {
	maps.DeleteFunc(m, func(_ string, n int) bool { return n == 0 })
	return m
}

func (pr *policyReporter) namespacedStatusCounts(ctx context.Context) (map[string]int, error) {
	var body []struct {
		Status string
		Items  []struct {
			Namespace string
			Count     int
		}
	}
	if err := pr.getJSON(ctx, "/v1/namespaced-resources/status-counts", &body); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range body {
		for _, item := range s.Items {
			out[item.Namespace+"/"+s.Status] += item.Count
		}
	}
	return nonZero(out), nil
}

func (pr *policyReporter) namespaces(ctx context.Context) (map[string]int, error) {
	var body []string
	if err := pr.getJSON(ctx, "/v1/namespaces", &body); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, ns := range body {
		out[ns]++
	}
	return out, nil
}

func (pr *policyReporter) policies(ctx context.Context) (map[string]int, error) {
	var body []struct {
		Policy  string
		Results map[string]int
	}
	if err := pr.getJSON(ctx, "/v2/policies", &body); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range body {
		for result, n := range p.Results {
			out[p.Policy+"/"+result] += n
		}
	}
	return nonZero(out), nil
}

func (pr *policyReporter) namespacedSeverityCounts(ctx context.Context) (map[string]int, error) {
	var body map[string]map[string]int
	if err := pr.getJSON(ctx, "/v2/namespace-scoped/kyverno/severity-counts", &body); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for ns, severities := range body {
		for severity, n := range severities {
			out[ns+"/"+severity] += n
		}
	}
	return nonZero(out), nil
}

func (pr *policyReporter) resourceResults(ctx context.Context) (map[string]int, error) {
	var body struct {
		Items []struct {
			Namespace, Kind, Name string
			Status                map[string]int
		}
	}
	if err := pr.getJSON(ctx, "/v2/namespace-scoped/resource-results", &body); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range body.Items {
		for result, n := range r.Status {
			out[r.Namespace+"/"+r.Kind+"/"+r.Name+"/"+result] += n
		}
	}
	return nonZero(out), nil
}

// metricSeries counts the series of Policy Reporter's result gauges: one per distinct set of
// labels (namespace, report, policy, rule, status, severity, category, source and the result's
// first resource's kind and name), so results that say the same share a series.
func (pr *policyReporter) metricSeries(ctx context.Context) (map[string]int, error) {
	body, err := pr.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"policy_report_result", "cluster_policy_report_result"} {
			if strings.HasPrefix(line, name+"{") {
				out[name]++
			}
		}
	}
	return out, sc.Err()
}

// reportName is a report of the workload.
type reportName struct{ namespace, name string }

// workloadNames are the reports createKyvernoReports wrote.
type workloadNames struct {
	pods    []reportName
	cluster []string
}

func prNamespace(i int) string { return fmt.Sprintf("policy-reporter-%d", i) }

// createKyvernoReports writes, through kube-apiserver, reports shaped as Kyverno's reports
// controller writes them: one PolicyReport per Pod, named by the Pod's UID, scoped to it and
// labelled managed-by kyverno, with a result per rule of every Pod policy; a ClusterPolicyReport
// per Namespace; and EphemeralReports as the admission controller leaves them for the reports
// controller to merge.
func createKyvernoReports(t *testing.T, c *cluster.Cluster, dyn dynamic.Interface) workloadNames {
	t.Helper()
	ctx := testContext(t, 10*time.Minute)
	var names workloadNames
	var objs []*unstructured.Unstructured
	n := 0
	for i := range prNamespaces {
		ns := prNamespace(i)
		ensureNamespace(t, c, ns, nil)
		for j := range prPodsPerNS {
			uid := fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", i, j)
			pod := fmt.Sprintf("web-%d", j)
			objs = append(objs, kyvernoReport("PolicyReport", ns, uid, map[string]any{
				"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod, "uid": uid,
			}, podPolicies, &n))
			names.pods = append(names.pods, reportName{ns, uid})
		}
		uid := fmt.Sprintf("00000000-0000-4000-9000-%012d", i)
		objs = append(objs, kyvernoReport("ClusterPolicyReport", "", uid, map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "name": ns, "uid": uid,
		}, []kyvernoPolicy{namespacePolicy}, &n))
		names.cluster = append(names.cluster, uid)
	}
	for i := range prEphemerals {
		u := kyvernoReport("PolicyReport", prNamespace(0), "", nil, podPolicies, &n)
		results := u.Object["results"]
		delete(u.Object, "results")
		delete(u.Object, "summary")
		delete(u.Object, "scope")
		u.SetAPIVersion("reports.kyverno.io/v1")
		u.SetKind("EphemeralReport")
		u.SetName(fmt.Sprintf("ephemeral-%d", i))
		u.Object["spec"] = map[string]any{
			"owner":   map[string]any{"apiVersion": "v1", "kind": "Pod", "name": fmt.Sprintf("web-%d", i), "uid": fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", 0, i)},
			"results": results,
		}
		objs = append(objs, u)
	}
	createAll(ctx, t, dyn, objs)
	return names
}

// kyvernoReport is a report of kind (PolicyReport or ClusterPolicyReport) about scope, with a result
// per rule of policies; *n counts results, and picks each one's outcome.
func kyvernoReport(kind, namespace, name string, scope map[string]any, policies []kyvernoPolicy, n *int) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion("wgpolicyk8s.io/v1alpha2")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "kyverno"})
	summary := map[string]any{}
	var results []any
	for _, p := range policies {
		for _, rule := range p.rules {
			outcome := prOutcomes[*n%len(prOutcomes)]
			*n++
			results = append(results, map[string]any{
				"policy": p.name, "rule": rule, "result": outcome, "severity": p.severity, "category": p.category,
				"source": "kyverno", "scored": true, "message": fmt.Sprintf("validation rule '%s' %s", rule, outcome),
				"timestamp": map[string]any{"seconds": int64(1_760_000_000 + *n), "nanos": int64(0)},
			})
			count, _ := summary[outcome].(int64)
			summary[outcome] = count + 1
		}
	}
	u.Object["results"] = results
	u.Object["summary"] = summary
	if scope != nil {
		u.Object["scope"] = scope
	}
	return u
}

// createAll creates the objects from a few workers, as Kyverno's controllers write concurrently.
func createAll(ctx context.Context, t *testing.T, dyn dynamic.Interface, objs []*unstructured.Unstructured) {
	t.Helper()
	work := make(chan *unstructured.Unstructured)
	var wg sync.WaitGroup
	errs := make(chan error, len(objs))
	for range prWorkers {
		wg.Go(func() {
			for u := range work {
				k, ok := servedKind(u.GetKind())
				if !ok {
					errs <- fmt.Errorf("no served kind %s", u.GetKind())
					continue
				}
				if _, err := resourceFor(dyn, k, u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
		})
	}
	for _, u := range objs {
		work <- u
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// servedKind returns the served kind called name.
func servedKind(name string) (reports.Kind, bool) {
	for _, k := range reports.All() {
		if k.Kind == name {
			return k, true
		}
	}
	return reports.Kind{}, false
}

// applySharedKyvernoSamples applies the Kyverno reports of shared/testdata beside the checkout
// with kubectl, when they are there: reports as Kyverno really wrote them, with scopes in another
// namespace than the report's and results that name their resources.
func applySharedKyvernoSamples(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(wd, "..", "..", "..", "shared", "testdata", "kyverno-reports-*.yaml"))
	if len(files) == 0 {
		t.Log("no shared/testdata/kyverno-reports-*.yaml beside the checkout: generated reports only")
		return
	}
	for _, f := range files {
		kubectl(t, c, "apply", "-f", f)
	}
}

// freeLoopbackPort is a port nothing listens on at 127.0.0.1 (the namespace's own loopback).
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
