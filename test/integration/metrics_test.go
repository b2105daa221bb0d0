package integration

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestMetrics scrapes /metrics of two servers in one process: each shows the generic API
// server's metrics and its own reports_server_* metrics, with values of its own (its pool, its
// writes, its watchers, its database's reports), not the other's.
func TestMetrics(t *testing.T) {
	t.Parallel()
	a, b := startServer(t), startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	kind, cluster := mustKind(t, "PolicyReport"), mustKind(t, "ClusterPolicyReport")
	ca, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := dynamic.NewForConfig(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	// A: three policy reports, one cluster policy report, and an open watch of policy reports.
	for i := range 3 {
		obj := sample(kind, "metrics", fmt.Sprintf("r%d", i), nil, "Pod", "fail")
		if _, err := resourceFor(ca, kind, "metrics").Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create on A: %v", err)
		}
	}
	if _, err := resourceFor(ca, cluster, "").Create(ctx, sample(cluster, "", "c0", nil, "Namespace", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create on A: %v", err)
	}
	w, err := ca.Resource(kind.GroupVersionResource()).Namespace("metrics").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch on A: %v", err)
	}
	defer w.Stop()
	// B: one policy report, no watch.
	if _, err := resourceFor(cb, kind, "metrics").Create(ctx, sample(kind, "metrics", "only", nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create on B: %v", err)
	}

	// A lists its policy reports twice: the second list finds them in the object cache.
	for range 2 {
		if l, err := resourceFor(ca, kind, "metrics").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 3 {
			t.Fatalf("list on A: %v", err)
		}
	}

	ma, mb := scrape(t, ctx, a), scrape(t, ctx, b)

	// The generic server's metrics are still there.
	if _, ok := ma["apiserver_request_total"]; !ok {
		t.Errorf("apiserver_request_total missing: the generic metrics are not served beside ours")
	}
	for _, name := range []string{
		"reports_server_db_pool_connections", "reports_server_db_pool_max_connections",
		"reports_server_db_pool_acquire_waits_total", "reports_server_db_pool_acquire_wait_seconds_total",
		"reports_server_db_pool_acquire_canceled_total", "reports_server_db_query_duration_seconds",
		"reports_server_write_batch_size", "reports_server_write_batch_duration_seconds",
		"reports_server_watch_changelog_lag_revisions", "reports_server_watchers",
		"reports_server_notify_reconnects_total", "reports_server_stored_reports", "reports_server_stored_results",
		"reports_server_list_objects_total", "reports_server_list_object_cache_bytes",
		"reports_server_analytics_projection_lag_revisions", "reports_server_analytics_projection_lag_seconds",
	} {
		if _, ok := ma[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if v := value(ma, "reports_server_db_pool_connections", "state", "in_use") + value(ma, "reports_server_db_pool_connections", "state", "idle"); v < 1 {
		t.Errorf("pool connections = %v, want ≥ 1", v)
	}
	if v := value(ma, "reports_server_db_pool_max_connections", "", ""); v < 1 {
		t.Errorf("pool max connections = %v, want ≥ 1", v)
	}
	if n := histCount(ma, "reports_server_db_query_duration_seconds", "query", "LockRevision"); n < 1 {
		t.Errorf("query duration of LockRevision: %d samples, want ≥ 1 (queries: %v)", n, labels(ma, "reports_server_db_query_duration_seconds", "query"))
	}
	if got := value(ma, "reports_server_stored_reports", "kind", "PolicyReport"); got != 3 {
		t.Errorf("A: stored PolicyReports = %v, want 3", got)
	}
	if got := value(ma, "reports_server_stored_reports", "kind", "ClusterPolicyReport"); got != 1 {
		t.Errorf("A: stored ClusterPolicyReports = %v, want 1", got)
	}
	if got := value(ma, "reports_server_stored_results", "kind", "PolicyReport"); got != 3 {
		t.Errorf("A: stored PolicyReport results = %v, want 3", got)
	}
	if got := value(ma, "reports_server_watchers", "resource", kind.Resource); got < 1 {
		t.Errorf("A: watchers of %s = %v, want ≥ 1", kind.Resource, got)
	}
	// Every write of A went through a batch: 4 writes in at least one batch, each counted once.
	if n, sum := histCountSum(ma, "reports_server_write_batch_size"); n < 1 || sum != 4 {
		t.Errorf("A: write batches %d with %v writes, want ≥ 1 with 4", n, sum)
	}
	if n, _ := histCountSum(ma, "reports_server_write_batch_duration_seconds"); n < 1 {
		t.Errorf("A: write batch durations: %d samples, want ≥ 1", n)
	}
	if db, cache := value(ma, "reports_server_list_objects_total", "source", "database"), value(ma, "reports_server_list_objects_total", "source", "cache"); db < 3 || cache < 3 {
		t.Errorf("A: objects listed from the database %v, from the cache %v, want ≥ 3 each", db, cache)
	}
	if v := value(ma, "reports_server_list_object_cache_bytes", "", ""); v <= 0 {
		t.Errorf("A: object cache bytes = %v, want > 0", v)
	}
	if v := value(ma, "reports_server_analytics_projection_lag_revisions", "", ""); v < 0 {
		t.Errorf("A: analytics lag = %v, want ≥ 0", v)
	}

	// B sees its own values only.
	if got := value(mb, "reports_server_stored_reports", "kind", "PolicyReport"); got != 1 {
		t.Errorf("B: stored PolicyReports = %v, want 1", got)
	}
	// Served kinds have a series even at 0.
	if got := find(mb, "reports_server_stored_reports", "kind", "ClusterPolicyReport"); len(got) != 1 || got[0].GetGauge().GetValue() != 0 {
		t.Errorf("B: stored ClusterPolicyReports = %v, want one series at 0 (A's?)", got)
	}
	if got := find(mb, "reports_server_watchers", "resource", kind.Resource); len(got) != 1 || got[0].GetGauge().GetValue() != 0 {
		t.Errorf("B: watchers of %s = %v, want one series at 0 (A's watch?)", kind.Resource, got)
	}
	if _, sum := histCountSum(mb, "reports_server_write_batch_size"); sum != 1 {
		t.Errorf("B: %v writes in batches, want 1", sum)
	}
}

func mustKind(t *testing.T, name string) reports.Kind {
	t.Helper()
	for _, k := range reports.All() {
		if k.Kind == name {
			return k
		}
	}
	t.Fatalf("no kind %s", name)
	return reports.Kind{}
}

// scrape reads /metrics of srv as its admin.
func scrape(t *testing.T, ctx context.Context, srv *testServer) map[string]*dto.MetricFamily {
	t.Helper()
	client, err := kubernetes.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	body, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// find returns the metrics of family name whose label key is val (all when key is "").
func find(families map[string]*dto.MetricFamily, name, key, val string) []*dto.Metric {
	f, ok := families[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		if key == "" {
			out = append(out, m)
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == key && l.GetValue() == val {
				out = append(out, m)
			}
		}
	}
	return out
}

// value sums the gauges or counters of family name with label key=val.
func value(families map[string]*dto.MetricFamily, name, key, val string) float64 {
	var v float64
	for _, m := range find(families, name, key, val) {
		v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return v
}

func histCount(families map[string]*dto.MetricFamily, name, key, val string) uint64 {
	var n uint64
	for _, m := range find(families, name, key, val) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

func histCountSum(families map[string]*dto.MetricFamily, name string) (uint64, float64) {
	var n uint64
	var sum float64
	for _, m := range find(families, name, "", "") {
		n += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return n, sum
}

func labels(families map[string]*dto.MetricFamily, name, key string) []string {
	var out []string
	for _, m := range find(families, name, "", "") {
		for _, l := range m.GetLabel() {
			if l.GetName() == key {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}
