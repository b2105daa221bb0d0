package pgstorage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
)

// DefaultStatisticsInterval is how often the statistics keeper looks at the reports table: a
// bulk load is planned from stale statistics for at most about this long (autovacuum looks once
// a minute by default, and not at all where it is off).
const DefaultStatisticsInterval = 10 * time.Second

// StatisticsKeeper analyzes the reports table when its statistics are due, by autovacuum's own
// rule, without waiting for autovacuum (sql/schema/00016_reports_statistics.sql says why: label
// and field selections are planned from them). Run one per process; the database lets one call
// at a time analyze, and the others return at once.
type StatisticsKeeper struct {
	pool     *pgxpool.Pool
	q        *db.Queries
	interval time.Duration
	log      *slog.Logger
}

// NewStatisticsKeeper returns a keeper that looks every interval (0: Run does nothing; Pass
// still works).
func NewStatisticsKeeper(pool *pgxpool.Pool, interval time.Duration, log *slog.Logger) *StatisticsKeeper {
	if log == nil {
		log = slog.Default()
	}
	return &StatisticsKeeper{pool: pool, q: db.New(), interval: interval, log: log}
}

// Run calls Pass every interval until ctx ends.
func (k *StatisticsKeeper) Run(ctx context.Context) {
	if k.interval <= 0 {
		return
	}
	t := time.NewTicker(k.interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := k.Pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			// Stale statistics cost plans, not answers: retry at every interval, and say so
			// once rather than every 10 s of a database outage.
			k.log.Warn("analyze reports failed; retrying every interval", "interval", k.interval, "err", err)
		case err == nil && failing:
			k.log.Info("analyze reports works again")
		}
		failing = err != nil
	}
}

// Pass analyzes the reports table if its statistics are due and returns how many rows had
// changed since the previous ANALYZE (0 when it did not analyze).
func (k *StatisticsKeeper) Pass(ctx context.Context) (int64, error) {
	start := time.Now()
	changed, err := k.q.AnalyzeReportsIfStale(ctx, k.pool)
	if err != nil {
		return 0, fmt.Errorf("analyze reports: %w", err)
	}
	if changed > 0 {
		k.log.Info("analyzed reports", "changed", changed, "duration", time.Since(start))
	}
	return changed, nil
}
