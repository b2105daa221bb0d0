// Package metrics is the reports server's own Prometheus metrics (reports_server_*), served at
// /metrics beside the generic API server's.
//
// Registry choice: every server has its own prometheus.Registry, and its /metrics handler gathers
// that registry together with component-base's process-global legacyregistry
// (prometheus.Gatherers). Several servers run in one process (the integration tests start many),
// and each must report its own pool, writer, watchers and reports: registering per-server
// collectors in the global registry would collide (same names, same labels), and a process-wide
// set of live servers would be global state that mixes the servers' values into one series. With
// one registry per server nothing is global, and a server's metrics end with the server.
//
// Values that are state (pool connections, watchers, lags, stored counts) are read at scrape time
// from the server's objects by a collector (sources.go); events (query, batch and refresh
// durations) are recorded as they happen in histograms. Every method is safe on a nil *Metrics,
// so components built without metrics (unit tests) need no checks.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Namespace prefixes every metric of ours.
const Namespace = "reports_server"

// Metrics holds one server's metrics.
type Metrics struct {
	registry *prometheus.Registry

	queryDuration      *prometheus.HistogramVec
	writeBatchSize     prometheus.Histogram
	writeBatchDuration prometheus.Histogram
	refreshDuration    *prometheus.HistogramVec
	projectDuration    prometheus.Histogram

	sources *collector
}

// New returns the metrics of one server, with no scrape-time sources yet (see SetSources).
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "db", Name: "query_duration_seconds",
			Help:    "Duration of database queries, by sqlc query name (\"other\" for unnamed statements).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"query"}),
		writeBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "write", Name: "batch_size",
			Help:    "Writes (creates, updates, deletes) committed together in one write batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		writeBatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "write", Name: "batch_duration_seconds",
			Help:    "Time from the start of a write batch to the answer of its writes, retries included.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		refreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "analytics", Name: "refresh_duration_seconds",
			Help:    "Duration of analytics summary refreshes, by summary (on the refresher's leader).",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"summary"}),
		projectDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "analytics", Name: "projection_batch_duration_seconds",
			Help:    "Duration of analytics projection transactions (on the projector's leader).",
			Buckets: []float64{0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		sources: &collector{},
	}
	m.registry.MustRegister(m.queryDuration, m.writeBatchSize, m.writeBatchDuration,
		m.refreshDuration, m.projectDuration, m.sources)
	return m
}

// Registry is the server's own registry (tests gather it directly).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the generic API server's metrics (legacyregistry) and ours in one exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{legacyregistry.DefaultGatherer, m.registry},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// WithHandler serves GET /metrics with Handler and passes everything else to next (DELETE
// /metrics, the generic server's reset, included). It belongs inside the authentication and
// authorization filters, so /metrics keeps the generic server's access control.
func (m *Metrics) WithHandler(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	metrics := m.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			metrics.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ObserveWriteBatch records a write batch of size writes that took d.
func (m *Metrics) ObserveWriteBatch(size int, d time.Duration) {
	if m == nil {
		return
	}
	m.writeBatchSize.Observe(float64(size))
	m.writeBatchDuration.Observe(d.Seconds())
}

// ObserveRefresh records the refresh of an analytics summary that took d.
func (m *Metrics) ObserveRefresh(summary string, d time.Duration) {
	if m == nil {
		return
	}
	m.refreshDuration.WithLabelValues(summary).Observe(d.Seconds())
}

// ObserveProjection records an analytics projection transaction that took d.
func (m *Metrics) ObserveProjection(d time.Duration) {
	if m == nil {
		return
	}
	m.projectDuration.Observe(d.Seconds())
}
