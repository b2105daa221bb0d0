package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// summary is one materialized summary and the named query that refreshes it.
type summary struct {
	name    string // its row in analytics_refreshes, and the published view reporting.<name>
	refresh func(*db.Queries, context.Context, sqlc.DBTX) error
}

// summaries are refreshed in this order; the cluster summary feeds the history.
var summaries = []summary{
	{"cluster_summary", (*db.Queries).AnalyticsRefreshClusterSummary},
	{"namespace_summary", (*db.Queries).AnalyticsRefreshNamespaceSummary},
	{"policy_summary", (*db.Queries).AnalyticsRefreshPolicySummary},
	{"resource_summary", (*db.Queries).AnalyticsRefreshResourceSummary},
}

// runRefresher is the refresher's leader loop. It refreshes at once what is stale when it takes
// over; after that, a write (its notification) or the poll starts a debounce window of
// SummaryRefreshInterval, at the end of which the stale summaries are refreshed. Writes during
// the window are gathered into that one refresh, so summaries are refreshed at most once per
// interval however fast reports change, and at most about two intervals after a change.
func (s *Service) runRefresher(ctx context.Context, conn *pgx.Conn) error {
	notes, cancel := s.subscribe()
	defer cancel()
	poll := time.NewTicker(s.cfg.SummaryRefreshInterval)
	defer poll.Stop()
	for {
		if err := s.refreshStale(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notes:
		case <-poll.C:
		}
		window := time.NewTimer(s.cfg.SummaryRefreshInterval)
	gather:
		for {
			select {
			case <-ctx.Done():
				window.Stop()
				return nil
			case <-notes:
			case <-window.C:
				break gather
			}
		}
	}
}

// refreshStale refreshes every summary whose generation is not the projection's, each
// CONCURRENTLY (readers are never blocked) in its own transaction, and records when and how
// long. The generation is read before the refresh, so changes projected during it leave the
// summary stale for the next round.
func (s *Service) refreshStale(ctx context.Context, conn *pgx.Conn) error {
	gen, err := s.q.AnalyticsGeneration(ctx, conn)
	if err != nil {
		return fmt.Errorf("read projection generation: %w", err)
	}
	states, err := s.q.AnalyticsRefreshes(ctx, conn)
	if err != nil {
		return fmt.Errorf("read refresh states: %w", err)
	}
	refreshed := map[string]int64{}
	for _, st := range states {
		refreshed[st.Name] = st.Generation
	}
	for _, sum := range summaries {
		if g, ok := refreshed[sum.name]; ok && g == gen {
			continue
		}
		if s.hook != nil {
			s.hook(Refresher)
		}
		start := time.Now()
		if err := sum.refresh(s.q, ctx, conn); err != nil {
			return fmt.Errorf("refresh %s: %w", sum.name, err)
		}
		if err := s.q.AnalyticsRecordRefresh(ctx, conn, sqlc.AnalyticsRecordRefreshParams{
			Name: sum.name, DurationMs: msSince(start), Generation: gen,
		}); err != nil {
			return fmt.Errorf("record refresh of %s: %w", sum.name, err)
		}
		s.cfg.Metrics.ObserveRefresh(sum.name, time.Since(start))
		s.log.Debug("refreshed summary", "summary", sum.name, "generation", gen, "duration", time.Since(start))
		if sum.name == "cluster_summary" {
			if _, err := s.q.AnalyticsRecordHistory(ctx, conn); err != nil {
				return fmt.Errorf("record cluster history: %w", err)
			}
			if _, err := s.q.AnalyticsPruneHistory(ctx, conn); err != nil {
				return fmt.Errorf("prune cluster history: %w", err)
			}
		}
	}
	return nil
}
