package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Sources are what the collector reads at scrape time. Every field is optional.
type Sources struct {
	// Pool is the server's connection pool (pool.Stat()).
	Pool *pgxpool.Pool
	// Watch reports the watch follower's state.
	Watch func() WatchStats
	// NotifyReconnects is how often the LISTEN connection was lost and re-established.
	NotifyReconnects func() int64
	// ReplicaReads counts the reads that tried the read replica: served there, or fell back to
	// the primary (nil without a replica).
	ReplicaReads func() (served, fellBack int64)
	// ListPrefetch counts the list pages read ahead of their request: used, unused (never
	// taken), skipped (not read ahead: the bounds were reached).
	ListPrefetch func() (used, unused, skipped int64)
	// ListAhead counts the list pages answered ahead of their request: used, unused (never
	// taken, or not servable), skipped (not answered ahead: the bounds were reached).
	ListAhead func() (used, unused, skipped int64)
	// ObjectCache counts the objects and metadata lists found in the object cache (hits) and
	// read from the database (misses), and the bytes it keeps.
	ObjectCache func() (hits, misses, bytes int64)
	// Stored counts the stored reports and results. It queries the database: the collector
	// caches its answer for StoredTTL.
	Stored func(context.Context) ([]StoredCount, error)
	// AnalyticsLag reports the projection's lag (nil when this process runs no analytics). It
	// queries the database: cached like Stored.
	AnalyticsLag func(context.Context) (AnalyticsLag, error)
}

// WatchStats is the watch follower's state.
type WatchStats struct {
	// LagRevisions is how far the follower's window is behind the newest revision it was
	// told about (0 while nobody watches).
	LagRevisions int64
	// Watchers counts open watches by resource.
	Watchers map[string]int
}

// StoredCount is the stored reports of one kind and their results.
type StoredCount struct {
	Kind             string
	Reports, Results int64
}

// AnalyticsLag is how far the analytics projection is behind the committed revision.
type AnalyticsLag struct {
	Revisions int64
	Seconds   float64
}

// StoredTTL is how long the collector reuses the answers of the database-backed sources: a
// count over every report is not something to run at every scrape of every replica.
const StoredTTL = 30 * time.Second

// queryTimeout bounds a database-backed source at scrape time.
const queryTimeout = 5 * time.Second

// SetSources installs the scrape-time sources (once the server's objects exist).
func (m *Metrics) SetSources(s Sources) {
	if m == nil {
		return
	}
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	m.sources.src = s
	m.sources.stored = cached[[]StoredCount]{}
	m.sources.lag = cached[AnalyticsLag]{}
}

func desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, name), help, labels, nil)
}

var (
	poolConnsDesc = desc("db_pool", "connections",
		"Connections of the pool by state: in_use (acquired), idle; the LISTEN and analytics connections are not pooled.", "state")
	poolMaxDesc      = desc("db_pool", "max_connections", "The most connections the pool opens.")
	poolWaitsDesc    = desc("db_pool", "acquire_waits_total", "Acquires that had to wait for a connection (none was idle).")
	poolWaitSecsDesc = desc("db_pool", "acquire_wait_seconds_total", "Time spent acquiring connections, waits included.")
	poolCanceledDesc = desc("db_pool", "acquire_canceled_total", "Acquires given up (their context ended) before a connection was free.")
	watchLagDesc     = desc("watch", "changelog_lag_revisions", "Revisions notified but not yet read into the watch window (0 while nobody watches).")
	watchersDesc     = desc("", "watchers", "Open watches, by resource.", "resource")
	notifyDesc       = desc("notify", "reconnects_total", "Times the LISTEN connection was lost and re-established.")
	replicaReadsDesc = desc("db", "replica_reads_total",
		"Reads that tried the read replica, by outcome: served (on the replica), primary (it was behind, away or hung).", "outcome")
	prefetchDesc = desc("list", "prefetched_pages_total",
		"Pages of paged lists read ahead of their request, by outcome: used (taken by it), unused (never taken), skipped (not read: bounds reached).", "outcome")
	aheadDesc = desc("list", "answered_ahead_pages_total",
		"Pages of compressed JSON lists answered ahead of their request, by outcome: used (served to it), unused (never taken, or behind a compaction), skipped (not answered: bounds reached).", "outcome")
	objectCacheDesc = desc("list", "objects_total",
		"Whole objects and metadata read by lists and watch-lists of the current state, by where they came from: cache (the object cache, by key and revision) or database (0 when the cache is off).", "source")
	objectCacheBytesDesc = desc("list", "object_cache_bytes", "Stored JSON and metadata kept in the object cache.")
	storedReportsDesc    = desc("", "stored_reports", "Stored reports of this server's cluster, by kind (refreshed at most every 30 s).", "kind")
	storedResultsDesc    = desc("", "stored_results", "Results of the stored reports (sum of their summaries), by kind (refreshed at most every 30 s).", "kind")
	analyticsRevsDesc    = desc("analytics", "projection_lag_revisions", "Committed revisions not yet projected into the analytics tables (refreshed at most every 30 s).")
	analyticsSecsDesc    = desc("analytics", "projection_lag_seconds", "Seconds since the projection checkpoint last moved while it is behind; 0 when caught up.")
	allDescs             = []*prometheus.Desc{poolConnsDesc, poolMaxDesc, poolWaitsDesc, poolWaitSecsDesc, poolCanceledDesc, watchLagDesc, watchersDesc, notifyDesc, replicaReadsDesc, prefetchDesc, aheadDesc, objectCacheDesc, objectCacheBytesDesc, storedReportsDesc, storedResultsDesc, analyticsRevsDesc, analyticsSecsDesc}
)

// cached is a database-backed answer and when it was taken.
type cached[T any] struct {
	val T
	at  time.Time
	ok  bool
}

// get returns the cached answer, asking fetch again once it is older than StoredTTL. A failed
// fetch keeps the previous answer (or none).
func (c *cached[T]) get(fetch func(context.Context) (T, error)) (T, bool) {
	if c.ok && time.Since(c.at) < StoredTTL {
		return c.val, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	v, err := fetch(ctx)
	if err != nil {
		return c.val, c.ok
	}
	c.val, c.at, c.ok = v, time.Now(), true
	return v, true
}

// collector reads Sources at scrape time.
type collector struct {
	mu     sync.Mutex // held through a scrape: one database query at a time
	src    Sources
	stored cached[[]StoredCount]
	lag    cached[AnalyticsLag]
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.src.Pool; p != nil {
		st := p.Stat()
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.AcquiredConns()), "in_use")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
		ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(st.MaxConns()))
		ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
		ch <- prometheus.MustNewConstMetric(poolWaitSecsDesc, prometheus.CounterValue, st.AcquireDuration().Seconds())
		ch <- prometheus.MustNewConstMetric(poolCanceledDesc, prometheus.CounterValue, float64(st.CanceledAcquireCount()))
	}
	if c.src.Watch != nil {
		w := c.src.Watch()
		ch <- prometheus.MustNewConstMetric(watchLagDesc, prometheus.GaugeValue, float64(w.LagRevisions))
		for resource, n := range w.Watchers {
			ch <- prometheus.MustNewConstMetric(watchersDesc, prometheus.GaugeValue, float64(n), resource)
		}
	}
	if c.src.ReplicaReads != nil {
		served, fellBack := c.src.ReplicaReads()
		ch <- prometheus.MustNewConstMetric(replicaReadsDesc, prometheus.CounterValue, float64(served), "served")
		ch <- prometheus.MustNewConstMetric(replicaReadsDesc, prometheus.CounterValue, float64(fellBack), "primary")
	}
	collectAhead(ch, prefetchDesc, c.src.ListPrefetch)
	collectAhead(ch, aheadDesc, c.src.ListAhead)
	if c.src.ObjectCache != nil {
		hits, misses, bytes := c.src.ObjectCache()
		ch <- prometheus.MustNewConstMetric(objectCacheDesc, prometheus.CounterValue, float64(hits), "cache")
		ch <- prometheus.MustNewConstMetric(objectCacheDesc, prometheus.CounterValue, float64(misses), "database")
		ch <- prometheus.MustNewConstMetric(objectCacheBytesDesc, prometheus.GaugeValue, float64(bytes))
	}
	if c.src.NotifyReconnects != nil {
		ch <- prometheus.MustNewConstMetric(notifyDesc, prometheus.CounterValue, float64(c.src.NotifyReconnects()))
	}
	if c.src.Stored != nil {
		if counts, ok := c.stored.get(c.src.Stored); ok {
			for _, s := range counts {
				ch <- prometheus.MustNewConstMetric(storedReportsDesc, prometheus.GaugeValue, float64(s.Reports), s.Kind)
				ch <- prometheus.MustNewConstMetric(storedResultsDesc, prometheus.GaugeValue, float64(s.Results), s.Kind)
			}
		}
	}
	if c.src.AnalyticsLag != nil {
		if lag, ok := c.lag.get(c.src.AnalyticsLag); ok {
			ch <- prometheus.MustNewConstMetric(analyticsRevsDesc, prometheus.GaugeValue, float64(lag.Revisions))
			ch <- prometheus.MustNewConstMetric(analyticsSecsDesc, prometheus.GaugeValue, lag.Seconds)
		}
	}
}

// collectAhead sends the counters of work made ahead (a read-ahead's pages) by outcome, when
// there is such work (stats is not nil).
func collectAhead(ch chan<- prometheus.Metric, desc *prometheus.Desc, stats func() (used, unused, skipped int64)) {
	if stats == nil {
		return
	}
	used, unused, skipped := stats()
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(used), "used")
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(unused), "unused")
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(skipped), "skipped")
}
