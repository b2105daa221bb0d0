package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/benchreport"
	"github.com/reports-server/reports-server/internal/httpread"
	"github.com/reports-server/reports-server/internal/procstat"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// labelLists is how many label-selected lists a round of the 1% label list reads per path.
const labelLists = 10

// BenchmarkCompareReads compares creates and reads of the same reports, in one cluster and one run, between
// the status quo and reports-server:
//
//   - CRD: kube-apiserver serving PolicyReport from a CRD in etcd (its watch cache answers);
//   - Aggregated: reports-server behind kube-apiserver's aggregation;
//   - Direct: one reports-server replica, straight.
//
// Each path holds COMPARE_REPORTS (default 3,000) reports of 20 results (~10 KB), created with
// COMPARE_WRITERS clients (default benchWriters) and timed once: the CRD path takes all of them,
// reports-server half through the aggregation and half straight, and the CPU each process spent
// per 1,000 creates on each path is logged as for the reads below. For each read —
// a paged list (limit=500) of whole objects, the same metadata-only, a watch-list
// (sendInitialEvents) of whole objects and metadata-only, and a label-selected list matching 1%
// (labelLists of them in a row) —
// the paths take turns, COMPARE_ROUNDS times (default 5), and the benchmark prints a Markdown
// table of median items/s and the ratios to the CRD path; for each read it also logs the CPU
// each process spent per 1,000 items on each path (the client, kube-apiserver, etcd, the
// replicas, PostgreSQL) and the wall time. Then, the same way, get+update
// (COMPARE_UPDATES reports, default 600, each a GET and an update) and a client-go metadata
// informer's sync; the peak RSS of kube-apiserver and of the larger replica; bytes per stored report: etcd's
// in-use size growth against PostgreSQL's total relation sizes (tables, TOAST, indexes, change
// log, analytics) after VACUUM, with each relation's growth per report (heap, TOAST, indexes)
// logged. `make bench-compare` runs it. With COMPARE_PROFILE=<dir> it also
// saves each replica's CPU profile of the direct creates there.
func BenchmarkCompareReads(b *testing.B) {
	n := envInt(b, "COMPARE_REPORTS", 3000)
	rounds := envInt(b, "COMPARE_ROUNDS", 5)
	clients := envInt(b, "COMPARE_WRITERS", benchWriters)
	c := startBenchCluster(b)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		b.Fatal(err)
	}
	core, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	crd := createBenchCRD(ctx, b, dyn)
	directCfg := c.ReplicaConfig(c.ReportsServers[0], nil)
	direct, err := dynamic.NewForConfig(directCfg)
	if err != nil {
		b.Fatal(err)
	}

	etcdBefore := etcdInUse(b, c.EtcdURL())
	pgBefore := postgresBytes(ctx, b, c.DatabaseURL)
	cpu := newCPUMeter(ctx, b, c)
	pgSettings, err := cluster.DatabaseSettings(ctx, c.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	// load creates reports from..to (1-based, inclusive) with `clients` writers and returns
	// creates/s. Every hundredth report carries a rare label (the 1% label list).
	load := func(client dynamic.ResourceInterface, apiVersion string, from, to int) float64 {
		next := atomic.Int64{}
		next.Store(int64(from - 1))
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(to) {
						return
					}
					r := benchreport.New(apiVersion, "bench", fmt.Sprintf("r%d", i))
					if i%100 == 0 {
						r.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "kyverno", "bench/rare": "yes"})
					}
					if _, err := client.Create(ctx, r, metav1.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		return float64(to-from+1) / time.Since(start).Seconds()
	}
	// Creates: the CRD path takes all n; reports-server half through the aggregation and half
	// straight to a replica (the reads below need all n in each store). The CPU every process
	// spends meanwhile is what a create costs each.
	// logPeaks logs each replica's peak RSS so far: which step raises it.
	logPeaks := func(after string) {
		var peaks []string
		for _, r := range c.ReportsServers {
			rss, err := r.PeakRSS()
			if err != nil {
				b.Fatal(err)
			}
			peaks = append(peaks, strconv.FormatInt(rss>>20, 10))
		}
		b.Logf("peak RSS of the replicas after %s: %s MB", after, strings.Join(peaks, ", "))
	}
	logPeaks("start")
	crdBefore := cpu.now()
	crdCreates := load(dyn.Resource(crd).Namespace("bench"), crd.GroupVersion().String(), 1, n)
	// Through the aggregation creates run at 1.5–2 times the CRD's rate: a profile of the time
	// half of them took on the CRD path stays within the step.
	aggProfiled := profileReplicas(b, c, time.Duration(float64(n/2)/crdCreates/2*float64(time.Second)), "aggregated-creates")
	aggBefore := cpu.now()
	aggCreates := load(dyn.Resource(policyReportsGVR).Namespace("bench"), policyReportsGVR.GroupVersion().String(), 1, n/2)
	aggSpent := cpu.now().since(aggBefore)
	aggProfiled()
	// The direct creates take less time than the aggregated ones did: a profile that long covers them.
	profiled := profileReplicas(b, c, time.Duration(float64(n/2)/aggCreates*float64(time.Second)), "creates")
	directBefore := cpu.now()
	directCreates := load(direct.Resource(policyReportsGVR).Namespace("bench"), policyReportsGVR.GroupVersion().String(), n/2+1, n)
	directSpent := cpu.now().since(directBefore)
	created := time.Now()
	profiled()
	b.Logf("creates/s: CRD %.0f, aggregated %.0f, direct %.0f", crdCreates, aggCreates, directCreates)
	// Where a create's time went, every process on the machine: on two cores the client's share
	// bounds the rate of whichever path spends least.
	b.Logf("creates, CPU ms per 1,000 creates (%s): CRD %s; Aggregated %s; Direct %s", cpuColumns,
		aggBefore.since(crdBefore).perThousand(n), aggSpent.perThousand(n/2), directSpent.perThousand(n-n/2))
	logPeaks("creates")
	perCreate := func(d time.Duration, count int) float64 { return d.Seconds() * 1000 / float64(count) }

	apiHTTP := httpClient(b, c.AdminConfig)
	directHTTP := httpClient(b, directCfg)
	type path struct {
		name   string
		client *http.Client
		url    string
	}
	paths := []path{
		{"CRD", apiHTTP, c.AdminConfig.Host + "/apis/" + crd.Group + "/" + crd.Version + "/namespaces/bench/policyreports"},
		{"Aggregated", apiHTTP, c.AdminConfig.Host + "/apis/wgpolicyk8s.io/v1alpha2/namespaces/bench/policyreports"},
		{"Direct", directHTTP, directCfg.Host + "/apis/wgpolicyk8s.io/v1alpha2/namespaces/bench/policyreports"},
	}
	const (
		full = "application/json"
		meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
		// Watch events carry single objects.
		metaItem = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
	)
	reads := []struct {
		name string
		want int
		read func(hc *http.Client, url string) int
	}{
		{"paged list, full", n, func(hc *http.Client, url string) int {
			return count(b)(httpread.PagedList(ctx, hc, url, "", full, 500))
		}},
		{"paged list, metadata", n, func(hc *http.Client, url string) int {
			return count(b)(httpread.PagedList(ctx, hc, url, "", meta, 500))
		}},
		{"watch-list, full", n, func(hc *http.Client, url string) int { return count(b)(httpread.WatchList(ctx, hc, url, full)) }},
		{"watch-list, metadata", n, func(hc *http.Client, url string) int { return count(b)(httpread.WatchList(ctx, hc, url, metaItem)) }},
		// One list takes milliseconds: a round reads labelLists of them in a row, so a round's
		// rate is not one request's scheduling luck.
		{fmt.Sprintf("1%% label list (30 of 3,000, %d in a row: items/s)", labelLists), labelLists * (n / 100), func(hc *http.Client, url string) int {
			read := 0
			for range labelLists {
				read += count(b)(httpread.PagedList(ctx, hc, url, "labelSelector=bench%2Frare%3Dyes", full, 500))
			}
			return read
		}},
	}
	table := []string{"| operation | CRD items/s | aggregated | direct | aggregated/CRD | direct/CRD |", "|---|---|---|---|---|---|",
		fmt.Sprintf("| create (%d writers, once) | %.0f | %.0f | %.0f | %.2f | %.2f |", clients, crdCreates, aggCreates, directCreates,
			aggCreates/crdCreates, directCreates/crdCreates),
		fmt.Sprintf("| server CPU per create, ms (both replicas, projection included) | | %.2f | %.2f | | |", perCreate(aggSpent.replicas, n/2), perCreate(directSpent.replicas, n-n/2)),
		// reports-server's PostgreSQL server (the private one unless REPORTS_TEST_LOCAL_PG names
		// the machine's), its backends and the projector's included.
		fmt.Sprintf("| PostgreSQL CPU per create, ms (projection included, while creating) | | %.2f | %.2f | | |", perCreate(aggSpent.postgres, n/2), perCreate(directSpent.postgres, n-n/2))}
	b.ResetTimer()
	for _, r := range reads {
		rates := map[string][]float64{}
		spent := map[string]cpuSpent{}
		for range rounds {
			for _, p := range paths {
				before := cpu.now()
				start := time.Now()
				got := r.read(p.client, p.url)
				if got != r.want {
					b.Fatalf("%s on %s read %d reports, want %d", r.name, p.name, got, r.want)
				}
				rates[p.name] = append(rates[p.name], float64(got)/time.Since(start).Seconds())
				spent[p.name] = spent[p.name].add(cpu.now().since(before))
			}
		}
		crdRate, agg, dir := median(rates["CRD"]), median(rates["Aggregated"]), median(rates["Direct"])
		table = append(table, fmt.Sprintf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f |", r.name, crdRate, agg, dir, agg/crdRate, dir/crdRate))
		logPeaks(r.name)
		// Where each path's time went: the CPU of each process while it read, per 1,000 items.
		var where []string
		for _, p := range paths {
			where = append(where, p.name+" "+spent[p.name].perThousand(rounds*r.want))
		}
		b.Logf("%s, CPU ms per 1,000 items read (%s): %s", r.name, cpuColumns, strings.Join(where, "; "))
	}
	// Label selections are planned from the statistics of reports (pgstorage.StatisticsKeeper):
	// say who analyzed the table, how often, and when last, against the end of the creates.
	b.Logf("reports after the creates: %s", analyzedAfter(ctx, b, c.DatabaseURL, created))

	b.StopTimer()
	// Sizes: etcd's growth in use (its history of the creates included until kube-apiserver
	// compacts, as in a cluster), PostgreSQL's after the projection caught up and VACUUM.
	etcdAfter := etcdInUse(b, c.EtcdURL())
	if err := benchreport.WaitProjected(ctx, c.DatabaseURL, n*benchreport.Results, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	relations, pgGrowth := relationGrowth(pgBefore, postgresBytes(ctx, b, c.DatabaseURL), n)
	b.Logf("PostgreSQL's bytes per stored report by relation, after VACUUM:\n%s", strings.Join(append([]string{
		"| relation | heap | TOAST | indexes | total |", "|---|---|---|---|---|"}, relations...), "\n"))
	etcdPer, pgPer := float64(etcdAfter-etcdBefore)/float64(n), float64(pgGrowth)/float64(n)
	sizeRow := fmt.Sprintf("| bytes per stored report (etcd in use / PostgreSQL total) | %.0f | %.0f | | %.2f | |", etcdPer, pgPer, pgPer/etcdPer)
	b.StartTimer()

	// get+update: `clients` writers rewrite a label of COMPARE_UPDATES reports, each a GET then
	// an update (retried on a conflict), the paths taking turns.
	updates := min(envInt(b, "COMPARE_UPDATES", 600), n)
	writers := []struct {
		name string
		res  dynamic.ResourceInterface
	}{
		{"CRD", dyn.Resource(crd).Namespace("bench")},
		{"Aggregated", dyn.Resource(policyReportsGVR).Namespace("bench")},
		{"Direct", direct.Resource(policyReportsGVR).Namespace("bench")},
	}
	updateRates := map[string][]float64{}
	for round := range rounds {
		for _, w := range writers {
			updateRates[w.name] = append(updateRates[w.name], getUpdate(ctx, b, w.res, clients, updates, fmt.Sprintf("%s-%d", w.name, round)))
		}
	}
	logPeaks("get+update")
	crdRate, agg, dir := median(updateRates["CRD"]), median(updateRates["Aggregated"]), median(updateRates["Direct"])
	table = append(table, fmt.Sprintf("| get + update (%d writers) | %.0f | %.0f | %.0f | %.2f | %.2f |", clients, crdRate, agg, dir, agg/crdRate, dir/crdRate))

	// A metadata informer's sync (client-go's defaults: a watch-list where the server offers
	// it, else list and watch), in items/s.
	syncRates := map[string][]float64{}
	for range rounds {
		for _, p := range []struct {
			name string
			cfg  *rest.Config
			gvr  schema.GroupVersionResource
		}{{"CRD", c.AdminConfig, crd}, {"Aggregated", c.AdminConfig, policyReportsGVR}, {"Direct", directCfg, policyReportsGVR}} {
			syncRates[p.name] = append(syncRates[p.name], float64(n)/metadataInformerSync(ctx, b, p.cfg, p.gvr, n).Seconds())
		}
	}
	logPeaks("metadata informers")
	crdRate, agg, dir = median(syncRates["CRD"]), median(syncRates["Aggregated"]), median(syncRates["Direct"])
	table = append(table, fmt.Sprintf("| metadata informer sync, items/s | %.0f | %.0f | %.0f | %.2f | %.2f |", crdRate, agg, dir, agg/crdRate, dir/crdRate))
	b.StopTimer()

	// Peak memory over the whole run: kube-apiserver (which also proxies the aggregated path)
	// and the larger of the two replicas.
	apiRSS, err := c.APIServer.PeakRSS()
	if err != nil {
		b.Fatal(err)
	}
	var replicaRSS int64
	for _, r := range c.ReportsServers {
		rss, err := r.PeakRSS()
		if err != nil {
			b.Fatal(err)
		}
		replicaRSS = max(replicaRSS, rss)
	}
	table = append(table, sizeRow)
	table = append(table, fmt.Sprintf("| peak RSS, MB: kube-apiserver / largest reports-server replica | %d | %d | | %.2f | |",
		apiRSS>>20, replicaRSS>>20, float64(replicaRSS)/float64(apiRSS)))

	b.Logf("%d reports, %d rounds, medians (reports-server's PostgreSQL settings: %s):\n%s", n, rounds, pgSettings, strings.Join(table, "\n"))
}

var policyReportsGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// cpuSpent is the CPU time the processes of a read have used: the benchmark's own (the client),
// kube-apiserver, etcd, the reports-server replicas and reports-server's PostgreSQL server.
type cpuSpent struct{ client, apiserver, etcd, replicas, postgres, wall time.Duration }

// cpuColumns names what cpuSpent.per writes, in order.
const cpuColumns = "client / kube-apiserver / etcd / replicas / postgres / wall"

// cpuMeter reads the CPU time c's processes and this one have used so far.
type cpuMeter struct {
	b *testing.B
	c *cluster.Cluster
	// postmaster is reports-server's PostgreSQL server: its processes are the postgres column.
	postmaster int
}

func newCPUMeter(ctx context.Context, b *testing.B, c *cluster.Cluster) cpuMeter {
	postmaster, err := benchreport.Postmaster(ctx, c.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	return cpuMeter{b: b, c: c, postmaster: postmaster}
}

// now is the CPU time used so far, and the time now as wall.
func (m cpuMeter) now() cpuSpent {
	of := func(p *cluster.Process) time.Duration {
		t, err := p.CPUTime()
		if err != nil {
			m.b.Fatal(err)
		}
		return t
	}
	self, err := procstat.CPUTime(os.Getpid())
	if err != nil {
		m.b.Fatal(err)
	}
	postgres, err := procstat.TreeCPUTime(m.postmaster)
	if err != nil {
		m.b.Fatalf("reports-server's PostgreSQL server: %v", err)
	}
	return cpuSpent{client: self, apiserver: of(m.c.APIServer), etcd: of(m.c.Etcd), replicas: replicasCPU(m.b, m.c),
		postgres: postgres, wall: time.Duration(time.Now().UnixNano())}
}

// replicasCPU is the CPU time c's reports-server replicas have used so far, together.
func replicasCPU(b *testing.B, c *cluster.Cluster) time.Duration {
	var total time.Duration
	for _, r := range c.ReportsServers {
		t, err := r.CPUTime()
		if err != nil {
			b.Fatal(err)
		}
		total += t
	}
	return total
}

func (s cpuSpent) since(before cpuSpent) cpuSpent {
	return cpuSpent{s.client - before.client, s.apiserver - before.apiserver, s.etcd - before.etcd,
		s.replicas - before.replicas, s.postgres - before.postgres, s.wall - before.wall}
}

func (s cpuSpent) add(o cpuSpent) cpuSpent {
	return cpuSpent{s.client + o.client, s.apiserver + o.apiserver, s.etcd + o.etcd,
		s.replicas + o.replicas, s.postgres + o.postgres, s.wall + o.wall}
}

// perThousand writes each part per 1,000 of items (what took the time), in ms.
func (s cpuSpent) perThousand(items int) string {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(d.Seconds()*1000*1000/float64(max(items, 1)), 'f', 1, 64)
	}
	return strings.Join([]string{ms(s.client), ms(s.apiserver), ms(s.etcd), ms(s.replicas), ms(s.postgres), ms(s.wall)}, " / ")
}

// getUpdate rewrites a label of reports r1..r<count> in res with `writers` clients, each a GET
// then an update retried on a conflict, and returns updates/s.
func getUpdate(ctx context.Context, b *testing.B, res dynamic.ResourceInterface, writers, count int, value string) float64 {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(count) {
					return
				}
				for {
					u, err := res.Get(ctx, fmt.Sprintf("r%d", i), metav1.GetOptions{})
					if err != nil {
						b.Error(err)
						return
					}
					labels := u.GetLabels()
					labels["bench/round"] = value
					u.SetLabels(labels)
					if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
						continue
					} else if err != nil {
						b.Error(err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return float64(count) / time.Since(start).Seconds()
}

// metadataInformerSync runs a metadata informer on gvr in namespace bench until it has synced
// and holds want objects, and returns how long that took.
func metadataInformerSync(ctx context.Context, b *testing.B, cfg *rest.Config, gvr schema.GroupVersionResource, want int) time.Duration {
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	inf := metadatainformer.NewFilteredMetadataInformer(client, gvr, "bench", 0, cache.Indexers{}, nil).Informer()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	go inf.RunWithContext(ctx)
	// Polled every millisecond: cache.WaitForCacheSync polls every 100 ms, which at a few
	// thousand reports made every sync take 0.1, 0.2 or 0.3 s.
	if err := wait.PollUntilContextCancel(ctx, time.Millisecond, true, func(context.Context) (bool, error) {
		return inf.HasSynced(), nil
	}); err != nil {
		b.Fatalf("metadata informer on %s did not sync: %v", gvr, err)
	}
	took := time.Since(start)
	if got := len(inf.GetStore().ListKeys()); got != want {
		b.Fatalf("metadata informer on %s holds %d objects, want %d", gvr, got, want)
	}
	return took
}

// profileReplicas starts a CPU profile of every replica (its /debug/pprof/profile) lasting d, when
// COMPARE_PROFILE names a directory (made if missing), and returns a function that waits for the
// profiles and writes them there as <step>-replica-<i>.pprof (go tool pprof reads them with the
// reports-server binary). Without COMPARE_PROFILE it does nothing. The benchmark waits for the
// profiles before its next step, so they hold the step alone. Profiling costs the step a little
// CPU: compare its numbers with runs without profiles.
func profileReplicas(b *testing.B, c *cluster.Cluster, d time.Duration, step string) func() {
	dir := os.Getenv("COMPARE_PROFILE")
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatalf("COMPARE_PROFILE: %v", err)
	}
	seconds := max(1, int(d.Seconds()+0.999))
	var wg sync.WaitGroup
	for i, r := range c.ReportsServers {
		cfg := c.ReplicaConfig(r, nil)
		hc := httpClient(b, cfg)
		url := cfg.Host + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds)
		file := filepath.Join(dir, fmt.Sprintf("%s-replica-%d.pprof", step, i))
		wg.Go(func() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Errorf("profile of replica %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, data)
			}
			if err == nil {
				err = os.WriteFile(file, data, 0o644)
			}
			if err != nil {
				b.Errorf("profile of replica %d: %v", i, err)
			}
		})
	}
	// Let the profiles start before the step does.
	time.Sleep(200 * time.Millisecond)
	return func() {
		wg.Wait()
		b.Logf("CPU profiles of %s (%d s) in %s", step, seconds, dir)
	}
}

func envInt(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return v
	}
	return def
}

func httpClient(b *testing.B, cfg *rest.Config) *http.Client {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return hc
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// count returns how many items a read returned, failing b on an error.
func count(b *testing.B) func([]json.RawMessage, error) int {
	return func(items []json.RawMessage, err error) int {
		if err != nil {
			b.Fatal(err)
		}
		return len(items)
	}
}

// etcdInUse is etcd's etcd_mvcc_db_total_size_in_use_in_bytes.
func etcdInUse(b *testing.B, etcdURL string) int64 {
	resp, err := http.Get(etcdURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_mvcc_db_total_size_in_use_in_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.Fatal(err)
			}
			return int64(f)
		}
	}
	b.Fatal("etcd reports no etcd_mvcc_db_total_size_in_use_in_bytes")
	return 0
}

// analyzedAfter says how soon after t the reports table was analyzed, by reports-server (its
// statistics keeper) or by autovacuum, and how often each did so.
func analyzedAfter(ctx context.Context, b *testing.B, url string, t time.Time) string {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var server, auto int64
	var serverAt, autoAt *time.Time
	if err := conn.QueryRow(ctx, `SELECT analyze_count, autoanalyze_count, last_analyze, last_autoanalyze
		FROM pg_stat_user_tables WHERE relname = 'reports'`).Scan(&server, &auto, &serverAt, &autoAt); err != nil {
		b.Fatal(err)
	}
	at := func(x *time.Time) string {
		if x == nil {
			return "never"
		}
		return fmt.Sprintf("last %+.1f s", x.Sub(t).Seconds())
	}
	return fmt.Sprintf("analyzed %d times by reports-server (%s), %d by autovacuum (%s)", server, at(serverAt), auto, at(autoAt))
}

// postgresBytes is the size of each of the database's tables and materialized views, by name,
// after VACUUM.
func postgresBytes(ctx context.Context, b *testing.B, url string) map[string]benchreport.Relation {
	sizes, err := benchreport.Relations(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	return sizes
}

// relationGrowth is what each relation grew by from before to after, per report (n of them), as
// Markdown rows, the largest first, and the total growth in bytes.
func relationGrowth(before, after map[string]benchreport.Relation, n int) (rows []string, total int64) {
	type grown struct {
		name string
		benchreport.Relation
	}
	var all []grown
	for name, a := range after {
		p := before[name]
		g := grown{name, benchreport.Relation{Heap: a.Heap - p.Heap, TOAST: a.TOAST - p.TOAST, Indexes: a.Indexes - p.Indexes, Total: a.Total - p.Total}}
		total += g.Total
		if g.Total != 0 {
			all = append(all, g)
		}
	}
	slices.SortFunc(all, func(x, y grown) int { return cmp.Compare(y.Total, x.Total) })
	per := func(v int64) string { return strconv.FormatFloat(float64(v)/float64(n), 'f', 0, 64) }
	for _, g := range all {
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", g.name, per(g.Heap), per(g.TOAST), per(g.Indexes), per(g.Total)))
	}
	return rows, total
}
