package ecosystem

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/reports-server/reports-server/internal/benchreport"
	"github.com/reports-server/reports-server/internal/procstat"
	"github.com/reports-server/reports-server/test/e2e/cluster"
	"github.com/reports-server/reports-server/test/ecosystem/kyverno"
)

// ScaleEnv opts in to TestKyvernoAtScale: its value is the number of objects the workload
// creates (5000 is the documented size; `make e2e-kyverno-scale` sets it).
const ScaleEnv = "REPORTS_KYVERNO_SCALE"

const (
	// scaleNamespaceCount is how many namespaces the workload is spread over.
	scaleNamespaceCount = 5
	// scaleWriters is how many clients create the workload at once.
	scaleWriters = 16
	// scaleSettleTimeout bounds the wait for the reports of one side.
	scaleSettleTimeout = 60 * time.Minute
	// scalePoll is how often the settle wait looks: a cheap look (metadata-only lists, counts)
	// each time, the full comparison only once the counts are right, so that the wait itself
	// adds little to kube-apiserver's CPU on either side.
	scalePoll = 5 * time.Second
)

// TestKyvernoAtScale runs one workload twice, side by side: Kyverno's reports and admission
// controllers with Pod Security Standards-like Audit policies over ScaleEnv objects (ConfigMaps,
// Pods and Deployments in five namespaces; Pods stay Pending, there is no kubelet), once with
// Kyverno's report CRDs in etcd and no reports-server ("CRDs") and once with reports-server
// serving the report APIs ("reports-server"), each on a cluster of its own. It measures the time
// until every resource has its PolicyReport with the expected results and no ephemeral report is
// left, etcd's size in use, the CPU seconds of etcd, kube-apiserver, reports-server and Kyverno,
// peak RSS, and PostgreSQL's size after VACUUM, and logs one Markdown table (docs/benchmarks.md
// keeps dated runs). Opt-in: it skips unless ScaleEnv is set. A subtest runs one side alone
// (-run 'TestKyvernoAtScale/CRDs').
func TestKyvernoAtScale(t *testing.T) {
	raw := os.Getenv(ScaleEnv)
	if raw == "" {
		t.Skipf("set %s to the number of objects (e.g. %s=5000; make e2e-kyverno-scale) to run Kyverno at scale, with the report CRDs and with reports-server", ScaleEnv, ScaleEnv)
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 10 {
		t.Fatalf("%s=%q: want a number of objects, at least 10", ScaleEnv, raw)
	}
	bins, err := kyverno.FromExtra(network.Binaries.Extra)
	if err != nil {
		t.Fatal(err)
	}
	w := scaleWorkload{n: n, namespaces: scaleNamespaces(scaleNamespaceCount)}
	var runs []*scaleRun
	for _, side := range []struct {
		name string
		crds bool
	}{{"CRDs", true}, {"reports-server", false}} {
		t.Run(side.name, func(t *testing.T) {
			r := runAtScale(t, bins, w, side.crds)
			r.side = side.name
			runs = append(runs, r)
		})
	}
	if len(runs) > 0 {
		t.Logf("Kyverno %s at scale, %s:\n\n%s", kyverno.Version, time.Now().UTC().Format("2006-01-02 15:04 MST"), scaleTable(w, runs))
	}
}

// scaleRun is what one side measured.
type scaleRun struct {
	side    string
	reports int
	// create is how long creating the workload took; settle how long from the first create
	// until the reports had settled.
	create, settle time.Duration
	// cpu is the CPU time each component used from just before the workload until settled.
	cpu map[string]time.Duration
	// peakRSS is each component's peak resident set (VmHWM) at the end.
	peakRSS map[string]int64
	// etcdBefore and etcdAfter are etcd's size in use after compacting its history, before the
	// workload and once settled; etcdRaw is its size in use once settled, before that compaction
	// (kube-apiserver compacts every five minutes).
	etcdBefore, etcdAfter, etcdRaw int64
	// etcdReportKeys and etcdReportBytes are the keys under the report groups' prefixes and their
	// bytes (key and value).
	etcdReportKeys, etcdReportBytes int64
	// pgBefore and pgAfter are the database's tables, TOAST and indexes after VACUUM; pgReports
	// is the reports table's share of pgAfter. Zero on the CRD side.
	pgBefore, pgAfter, pgReports int64
	// pgSettings is what is wrong with the database server's settings for reports-server
	// (db.CheckSettings; "ok" when nothing is, "" on the CRD side): a run without autovacuum
	// measures a database that nothing cleans, not one in production.
	pgSettings string
	replicas   int
	// requests counts the requests to the report resources from just before the workload until
	// settled, by "VERB resource": what Kyverno asked for. kube-apiserver counts those it serves
	// (the CRDs), reports-server's replicas those proxied to them.
	requests map[string]float64
	// dbSeconds is reports-server's database time by query over the same span (both replicas;
	// "(write batches)" for the writer's batches, whose statements are not timed one by one).
	dbSeconds map[string]float64
}

// scaleComponents are the processes whose CPU and memory are measured, in the table's order.
var scaleComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "reports-server", "PostgreSQL", "Kyverno reports controller", "Kyverno admission controller"}

func runAtScale(t *testing.T, bins *kyverno.Binaries, w scaleWorkload, crds bool) *scaleRun {
	c := startClusterWith(t, crds)
	ctx := testContext(t, scaleSettleTimeout+30*time.Minute)
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}

	if err := kyverno.Install(ctx, c, bins); err != nil {
		t.Fatal(err)
	}
	if crds {
		if err := kyverno.InstallReportCRDs(ctx, c, bins); err != nil {
			t.Fatal(err)
		}
	}
	// Kyverno's default interval (an hour): within the run, resources are scanned as they
	// appear, never again.
	rc, err := kyverno.StartReportsController(ctx, c, bins, kyverno.ReportsControllerOptions{BackgroundScanInterval: time.Hour, ReportCRDs: crds})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := kyverno.StartAdmissionController(ctx, c, bins)
	if err != nil {
		t.Fatal(err)
	}
	createNamespaces(ctx, t, client, w.namespaces)
	if _, stderr, err := c.Kubectl(ctx, []byte(scalePolicies), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	waitResourceWebhooks(t, client, c, "configmaps", "pods", "deployments")
	// The namespaces' kube-root-ca.crt ConfigMaps are there before the workload.
	baseline := scaleWorkload{namespaces: w.namespaces}
	waitScaleSettled(t, client, dc, mc, baseline, 5*time.Minute)

	processes := map[string][]*cluster.Process{
		"etcd": {c.Etcd}, "kube-apiserver": {c.APIServer}, "kube-controller-manager": {c.ControllerManager},
		"Kyverno reports controller": {rc}, "Kyverno admission controller": {ac},
	}
	for _, r := range c.ReportsServers {
		processes["reports-server"] = append(processes["reports-server"], r.Process)
	}
	run := &scaleRun{replicas: len(c.ReportsServers)}
	run.etcdBefore = etcdCompactedInUse(ctx, t, c)
	if !crds {
		run.pgBefore, _ = postgresSizes(ctx, t, c.DatabaseURL)
		run.pgSettings = postgresSettings(ctx, t, c.DatabaseURL)
	}
	cpuBefore := cpuTimes(t, processes)
	// reports-server's PostgreSQL server, its processes' CPU (none on the CRDs' path).
	postmaster := 0
	var pgCPUBefore time.Duration
	if !crds {
		var err error
		if postmaster, err = benchreport.Postmaster(ctx, c.DatabaseURL); err != nil {
			t.Fatal(err)
		}
		pgCPUBefore = pgCPU(t, postmaster)
	}
	requestsBefore, dbBefore := reportRequests(ctx, t, c, client)

	start := time.Now()
	if err := w.create(ctx, client, scaleWriters); err != nil {
		t.Fatal(err)
	}
	run.create = time.Since(start)
	t.Logf("%d objects created in %s", w.n, run.create.Round(time.Millisecond))
	run.reports = waitScaleSettled(t, client, dc, mc, w, scaleSettleTimeout)
	run.settle = time.Since(start)
	t.Logf("%d PolicyReports settled %s after the first create", run.reports, run.settle.Round(time.Second))

	cpuAfter := cpuTimes(t, processes)
	run.cpu = map[string]time.Duration{}
	for name, d := range cpuAfter {
		run.cpu[name] = d - cpuBefore[name]
	}
	if !crds {
		run.cpu["PostgreSQL"] = pgCPU(t, postmaster) - pgCPUBefore
	}
	requestsAfter, dbAfter := reportRequests(ctx, t, c, client)
	run.requests, run.dbSeconds = difference(requestsAfter, requestsBefore), difference(dbAfter, dbBefore)
	t.Logf("requests to the report resources until settled: %v", run.requests)
	if !crds {
		t.Logf("reports-server's database time by query until settled (both replicas): %s", topQueries(run.dbSeconds, 12))
	}
	run.peakRSS = peakRSS(t, processes)
	run.etcdRaw = etcdInUse(ctx, t, c)
	run.etcdAfter = etcdCompactedInUse(ctx, t, c)
	run.etcdReportKeys, run.etcdReportBytes = etcdPrefixBytes(ctx, t, c, "/registry/wgpolicyk8s.io/", "/registry/reports.kyverno.io/")
	if !crds {
		run.pgAfter, run.pgReports = postgresSizes(ctx, t, c.DatabaseURL)
	}
	for _, p := range []*cluster.Process{rc, ac} {
		if !p.Running() {
			t.Errorf("%s exited during the run (log: %s)", p.Name, p.LogPath)
		}
	}
	return run
}

// postgresSettings is what the server's check of the database's settings finds: "ok", or its
// problems (logged as warnings too).
func postgresSettings(ctx context.Context, t *testing.T, url string) string {
	settings, err := cluster.DatabaseSettings(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if settings != "ok" {
		t.Logf("warning: %s", settings)
	}
	return settings
}

// reportRequests reads apiserver_request_total for the report groups from kube-apiserver and
// every reports-server replica (kube-apiserver does not count the requests its aggregation
// proxies), summed by "VERB resource" over servers, codes, scopes and subresources, and the
// replicas' database seconds by query.
func reportRequests(ctx context.Context, t *testing.T, c *cluster.Cluster, client kubernetes.Interface) (requests, dbSeconds map[string]float64) {
	t.Helper()
	servers := []kubernetes.Interface{client}
	for _, r := range c.ReportsServers {
		rc, err := kubernetes.NewForConfig(c.ReplicaConfig(r, nil))
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, rc)
	}
	requests, dbSeconds = map[string]float64{}, map[string]float64{}
	for _, server := range servers {
		body, err := server.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		addReportRequests(requests, dbSeconds, string(body))
	}
	return requests, dbSeconds
}

// difference is after - before, key by key.
func difference(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, n := range after {
		out[k] = n - before[k]
	}
	return out
}

// addReportRequests adds to requests the apiserver_request_total series of the report groups in
// a Prometheus text exposition, and to dbSeconds reports-server's seconds per query
// (reports_server_db_query_duration_seconds_sum): where PostgreSQL's time goes.
func addReportRequests(requests, dbSeconds map[string]float64, metrics string) {
	for line := range strings.Lines(metrics) {
		if rest, ok := strings.CutPrefix(line, "reports_server_write_batch_duration_seconds_sum "); ok {
			// Write batches' statements are not timed one by one: the batches are.
			if n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				dbSeconds["(write batches)"] += n
			}
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok || (name != "apiserver_request_total" && name != "reports_server_db_query_duration_seconds_sum") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for pair := range strings.SplitSeq(labels, ",") {
			if k, v, ok := strings.Cut(pair, "="); ok {
				l[k] = strings.Trim(v, `"`)
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "reports_server_db_query_duration_seconds_sum":
			dbSeconds[l["query"]] += n
		case l["group"] == "reports.kyverno.io" || l["group"] == "wgpolicyk8s.io":
			requests[l["verb"]+" "+l["resource"]] += n
		}
	}
}

// topQueries lists the n queries of dbSeconds that took longest, most first.
func topQueries(dbSeconds map[string]float64, n int) string {
	keys := slices.SortedFunc(maps.Keys(dbSeconds), func(a, b string) int { return cmp.Compare(dbSeconds[b], dbSeconds[a]) })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %.1f s", k, dbSeconds[k]))
	}
	return strings.Join(parts, ", ")
}

// waitResourceWebhooks waits until Kyverno's admission controller has registered webhooks, at
// the URL it serves on, for CREATE of each resource: from then on, creating one makes it write
// an admission report.
func waitResourceWebhooks(t *testing.T, client kubernetes.Interface, c *cluster.Cluster, resources ...string) {
	t.Helper()
	eventually(t, "the resource webhooks cover "+strings.Join(resources, ", "), within, func(ctx context.Context) error {
		list, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		covered := map[string]bool{}
		for _, cfg := range list.Items {
			for _, wh := range cfg.Webhooks {
				if !strings.HasPrefix(ptrString(wh.ClientConfig.URL), "https://"+c.NodeIP.String()) {
					continue
				}
				for _, r := range wh.Rules {
					if hasOperation(r, "CREATE") {
						for _, res := range r.Resources {
							covered[res] = true
						}
					}
				}
			}
		}
		for _, res := range resources {
			if !covered[res] {
				return fmt.Errorf("no webhook of Kyverno's for CREATE of %s yet (covered: %v)", res, covered)
			}
		}
		return nil
	})
}

// waitScaleSettled waits until the namespaces hold exactly w.wantReports() PolicyReports, one
// per matched resource with its expected results, and no ephemeral report, and returns the
// number of PolicyReports.
func waitScaleSettled(t *testing.T, client kubernetes.Interface, dc dynamic.Interface, mc metadata.Interface, w scaleWorkload, timeout time.Duration) int {
	t.Helper()
	want := w.wantReports()
	var last error
	lastLog := time.Now()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		last = scaleSettled(ctx, client, dc, mc, w.namespaces, want)
		cancel()
		if last == nil {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reports did not settle within %s: %v", timeout, last)
		}
		if time.Since(lastLog) > time.Minute {
			t.Logf("not settled yet: %v", last)
			lastLog = time.Now()
		}
		time.Sleep(scalePoll)
	}
}

// scaleSettled is nil once the reports have settled (waitScaleSettled). It counts the reports
// first, with metadata-only lists, and compares them with the resources only when the counts are
// right.
func scaleSettled(ctx context.Context, client kubernetes.Interface, dc dynamic.Interface, mc metadata.Interface, namespaces []string, want int) error {
	inScope := func(ns string) bool { return slices.Contains(namespaces, ns) }
	var reports, ephemeral int
	for _, c := range []struct {
		n   *int
		res interface {
			List(context.Context, metav1.ListOptions) (*metav1.PartialObjectMetadataList, error)
		}
	}{{&reports, mc.Resource(policyReports)}, {&ephemeral, mc.Resource(ephemeralReports)}} {
		list, err := c.res.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, it := range list.Items {
			if inScope(it.Namespace) {
				*c.n++
			}
		}
	}
	if reports != want || ephemeral != 0 {
		return fmt.Errorf("%d PolicyReports of %d, %d ephemeral reports left", reports, want, ephemeral)
	}
	expected, err := scaleExpected(ctx, client, namespaces)
	if err != nil {
		return err
	}
	errs, err := matchReports(ctx, dc, namespaces, expected, func(r scaleResource) string { return r.what }, checkScaleReport)
	if err != nil {
		return err
	}
	if len(errs) > 5 {
		return fmt.Errorf("%d problems, e.g. %w", len(errs), errors.Join(errs[:5]...))
	}
	return errors.Join(errs...)
}

// checkScaleReport compares a PolicyReport with the expected one: owned by the resource, one
// result per rule, the expected results, a summary that counts them.
func checkScaleReport(rep unstructured.Unstructured, r scaleResource) error {
	owners := rep.GetOwnerReferences()
	if len(owners) != 1 || string(owners[0].UID) != rep.GetName() || owners[0].Kind != r.kind {
		return fmt.Errorf("report of %s: owners %v, want the resource", r.what, owners)
	}
	items, _, _ := unstructured.NestedSlice(rep.Object, "results")
	got := map[string]string{}
	tally := counts{}
	for _, it := range items {
		m, _ := it.(map[string]any)
		policy, _ := m["policy"].(string)
		rule, _ := m["rule"].(string)
		result, _ := m["result"].(string)
		got[policy+"/"+rule] = result
		tally[result]++
	}
	if !maps.Equal(got, r.results) || len(items) != len(r.results) {
		return fmt.Errorf("report of %s: results %v, want %v", r.what, got, r.results)
	}
	for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
		if n, _, _ := unstructured.NestedInt64(rep.Object, "summary", k); n != tally[k] {
			return fmt.Errorf("report of %s: summary.%s %d, results %v", r.what, k, n, tally)
		}
	}
	return nil
}

func cpuTimes(t *testing.T, processes map[string][]*cluster.Process) map[string]time.Duration {
	t.Helper()
	out := map[string]time.Duration{}
	for name, ps := range processes {
		for _, p := range ps {
			d, err := p.CPUTime()
			if err != nil {
				t.Fatal(err)
			}
			out[name] += d
		}
	}
	return out
}

// pgCPU is the CPU time the processes of the PostgreSQL server postmaster have used so far.
func pgCPU(t *testing.T, postmaster int) time.Duration {
	t.Helper()
	d, err := procstat.TreeCPUTime(postmaster)
	if err != nil {
		t.Fatalf("reports-server's PostgreSQL server: %v", err)
	}
	return d
}

// peakRSS sums the peak RSS of each component's processes.
func peakRSS(t *testing.T, processes map[string][]*cluster.Process) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for name, ps := range processes {
		for _, p := range ps {
			n, err := p.PeakRSS()
			if err != nil {
				t.Fatal(err)
			}
			out[name] += n
		}
	}
	return out
}

// etcdInUse is etcd's etcd_mvcc_db_total_size_in_use_in_bytes: the pages of its database that
// hold data (current keys and the history not yet compacted).
func etcdInUse(ctx context.Context, t *testing.T, c *cluster.Cluster) int64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.EtcdURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("read etcd's metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_mvcc_db_total_size_in_use_in_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatal("etcd's metrics have no etcd_mvcc_db_total_size_in_use_in_bytes")
	return 0
}

// etcdCompactedInUse compacts etcd's history up to its current revision (what kube-apiserver
// does every five minutes), waits for the compaction, and returns the size in use: what the
// current objects take.
func etcdCompactedInUse(ctx context.Context, t *testing.T, c *cluster.Cluster) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdURL()}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connect to etcd: %v", err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read etcd's revision: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact etcd at %d: %v", resp.Header.Revision, err)
	}
	// The metric follows the backend's commits (every 100 ms by default).
	time.Sleep(2 * time.Second)
	return etcdInUse(ctx, t, c)
}

// etcdPrefixBytes counts the keys under the prefixes and their bytes (key and value).
func etcdPrefixBytes(ctx context.Context, t *testing.T, c *cluster.Cluster, prefixes ...string) (keys, bytes int64) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdURL()}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connect to etcd: %v", err)
	}
	defer cli.Close()
	for _, prefix := range prefixes {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("read etcd under %s: %v", prefix, err)
		}
		for _, kv := range resp.Kvs {
			keys++
			bytes += int64(len(kv.Key) + len(kv.Value))
		}
	}
	return keys, bytes
}

// postgresSizes is the size of the database's tables and materialized views (heap, TOAST,
// indexes) after VACUUM, and the reports table's share of it.
func postgresSizes(ctx context.Context, t *testing.T, url string) (total, reports int64) {
	t.Helper()
	sizes, err := benchreport.Relations(ctx, url)
	if err != nil {
		t.Fatalf("database size: %v", err)
	}
	for _, r := range sizes {
		total += r.Total
	}
	return total, sizes["public.reports"].Total
}

// scaleTable is the Markdown table of the runs, one column per side.
func scaleTable(w scaleWorkload, runs []*scaleRun) string {
	var b strings.Builder
	cms, pods, deps := w.counts()
	fmt.Fprintf(&b, "%d objects: %d ConfigMaps, %d Pods, %d Deployments (+%d Pods of theirs) in %d namespaces; %d writers\n\n",
		w.n, cms, pods, deps, deps, len(w.namespaces), scaleWriters)
	b.WriteString("| measure |")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s |", r.side)
	}
	b.WriteString("\n|---|")
	for range runs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	row := func(name string, cell func(r *scaleRun) string) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range runs {
			fmt.Fprintf(&b, " %s |", cell(r))
		}
		b.WriteString("\n")
	}
	row("PolicyReports settled", func(r *scaleRun) string { return strconv.Itoa(r.reports) })
	row("create time (admission webhooks on)", func(r *scaleRun) string { return seconds(r.create) })
	row("**time until settled** (from the first create)", func(r *scaleRun) string { return "**" + seconds(r.settle) + "**" })
	row("**etcd in use after compaction**, before → after", func(r *scaleRun) string {
		return fmt.Sprintf("%s → **%s** (+%s)", mib(r.etcdBefore), mib(r.etcdAfter), mib(r.etcdAfter-r.etcdBefore))
	})
	row("etcd in use when settled, before compaction", func(r *scaleRun) string { return mib(r.etcdRaw) })
	row("report keys in etcd (keys, bytes)", func(r *scaleRun) string {
		return fmt.Sprintf("%d, %s", r.etcdReportKeys, mib(r.etcdReportBytes))
	})
	row("PostgreSQL after VACUUM, before → after (reports table)", func(r *scaleRun) string {
		if r.replicas == 0 {
			return "–"
		}
		return fmt.Sprintf("%s → %s (%s)", mib(r.pgBefore), mib(r.pgAfter), mib(r.pgReports))
	})
	row("PostgreSQL's settings (autovacuum)", func(r *scaleRun) string {
		if r.pgSettings == "" {
			return "–"
		}
		return r.pgSettings
	})
	total := func(r *scaleRun) time.Duration {
		var sum time.Duration
		for _, d := range r.cpu {
			sum += d
		}
		return sum
	}
	for _, req := range []string{"POST ephemeralreports", "PUT ephemeralreports", "DELETE ephemeralreports", "LIST ephemeralreports",
		"POST policyreports", "PUT policyreports"} {
		row("requests: "+req, func(r *scaleRun) string { return fmt.Sprintf("%.0f", r.requests[req]) })
	}
	for _, name := range scaleComponents {
		row("CPU s, "+name, func(r *scaleRun) string {
			if d, ok := r.cpu[name]; ok {
				return seconds(d)
			}
			return "–"
		})
	}
	row("CPU s, all of the above", func(r *scaleRun) string { return seconds(total(r)) })
	for _, name := range scaleComponents {
		row("peak RSS, "+name, func(r *scaleRun) string {
			n, ok := r.peakRSS[name]
			if !ok {
				return "–"
			}
			if name == "reports-server" {
				return fmt.Sprintf("%s (%d replicas)", mib(n), r.replicas)
			}
			return mib(n)
		})
	}
	return b.String()
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
