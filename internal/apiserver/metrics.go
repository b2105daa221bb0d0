package apiserver

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/metrics"
)

// metricSources are what the server's metrics read at scrape time (internal/metrics). The
// served kinds always have a series (0 when none), so a kind does not vanish from dashboards.
func metricSources(extra ExtraConfig, notifier *db.Notifier, follower *pgstorage.Follower, replica *db.Replica, prefetcher *pgstorage.Prefetcher, ahead *pagesAhead, objects *pgstorage.ObjectCache) metrics.Sources {
	pool, cluster, kinds := extra.Pool, extra.Cluster, extra.Kinds
	src := metrics.Sources{
		Pool: pool,
		Watch: func() metrics.WatchStats {
			st := follower.WatchStats()
			for _, k := range kinds {
				st.Watchers[k.Resource] += 0
			}
			return st
		},
		NotifyReconnects: notifier.Reconnects,
		ListPrefetch: func() (int64, int64, int64) {
			st := prefetcher.Stats()
			return st.Used, st.Unused, st.Skipped
		},
		ListAhead: func() (int64, int64, int64) {
			st := ahead.Stats()
			return st.Used, st.Unused, st.Skipped
		},
		ObjectCache: func() (int64, int64, int64) {
			st := objects.Stats()
			return st.Hits, st.Misses, st.Bytes
		},
		Stored: func(ctx context.Context) ([]metrics.StoredCount, error) {
			return storedCounts(ctx, pool, cluster, kinds)
		},
	}
	if replica.Active() {
		src.ReplicaReads = func() (int64, int64) {
			st := replica.Stats()
			return st.Served, st.FellBack
		}
	}
	if extra.Analytics != nil {
		src.AnalyticsLag = func(ctx context.Context) (metrics.AnalyticsLag, error) {
			row, err := db.New().MetricsAnalyticsLag(ctx, pool, cluster)
			return metrics.AnalyticsLag{Revisions: row.LagRevisions, Seconds: row.LagSeconds}, db.NoRows(err)
		}
	}
	return src
}

// storedCounts counts the stored reports and results of cluster by kind (the kind of their
// group and resource; the resource when no kind has it), with a count for every served kind.
func storedCounts(ctx context.Context, pool *pgxpool.Pool, cluster string, served []reports.Kind) ([]metrics.StoredCount, error) {
	rows, err := db.New().MetricsStoredReports(ctx, pool, cluster)
	if err != nil {
		return nil, err
	}
	kinds := map[[2]string]string{}
	for _, k := range reports.All() {
		kinds[[2]string{k.GroupVersion.Group, k.Resource}] = k.Kind
	}
	byKind := map[string]*metrics.StoredCount{}
	for _, k := range served {
		byKind[k.Kind] = &metrics.StoredCount{Kind: k.Kind}
	}
	var out []metrics.StoredCount
	for _, r := range rows {
		kind, ok := kinds[[2]string{r.ApiGroup.String, r.Resource.String}]
		if !ok {
			kind = r.Resource.String
		}
		c := byKind[kind]
		if c == nil {
			c = &metrics.StoredCount{Kind: kind}
			byKind[kind] = c
		}
		c.Reports += r.Reports
		c.Results += r.Results
	}
	for _, c := range byKind {
		out = append(out, *c)
	}
	return out, nil
}
