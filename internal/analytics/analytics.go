// Package analytics maintains the private tables behind the published SQL schema `reporting`
// (sql/schema/00002_reporting.sql and 00007_analytics_normalized.sql, contract in docs/sql.md):
//
//   - the projector keeps the results in step with the reports (analytics_results, one row per
//     result, referring to its report's row in analytics_reports and to its interned outcome in
//     analytics_outcomes): it follows the change log in revision order and, for the keys changed
//     since its checkpoint, deletes their rows and inserts the new ones (set-based SQL, one
//     transaction per batch together with the checkpoint). A checkpoint older than the compacted
//     revision, or none, means a full rebuild of that cluster. It is woken by the NOTIFY every
//     write sends and polls as a safety net;
//   - the refresher refreshes the materialized summaries CONCURRENTLY, debounced: at most once
//     per refresh interval, and only when the projection moved since the last refresh.
//
// Each of the two runs in exactly one replica at a time: the one whose dedicated connection holds
// the component's session-level advisory lock. All of its work runs on that connection, so a
// leader that loses its connection loses the lock and can no longer write; another replica takes
// over within the retry interval. See docs/design.md ("Analytics").
package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/metrics"
)

// Defaults of Config.
const (
	DefaultSummaryRefreshInterval = 30 * time.Second
	DefaultPollInterval           = 5 * time.Second
	DefaultLeaderRetryInterval    = 5 * time.Second
	DefaultBatchRevisions         = 1000
	DefaultProjectInterval        = 500 * time.Millisecond
)

// Leadership of the two components (db.Elector), across all clusters of the database. Any
// classes work as long as they never change and differ from the other leaderships (the
// compactor's is "rpct").
var (
	ProjectorLock = db.Lock{Class: 0x616e_7072} // "anpr"
	RefresherLock = db.Lock{Class: 0x616e_7266} // "anrf"
)

// ApplicationName names the analytics connections in pg_stat_activity.
const ApplicationName = "reports-server-analytics"

// Component names, as logged and as passed to test hooks.
const (
	Projector = "projector"
	Refresher = "refresher"
)

// Config configures a Service. Zero values take the defaults.
type Config struct {
	// SummaryRefreshInterval is the debounce of summary refreshes: after a change, the refresher
	// waits this long (gathering more changes) before it refreshes.
	SummaryRefreshInterval time.Duration
	// PollInterval is how often the projector looks at the change log when no notification
	// arrives (notifications are a wake-up; they are lost while the LISTEN connection is down).
	PollInterval time.Duration
	// LeaderRetryInterval is how often a replica that is not the leader tries to become it,
	// which bounds the time to fail over.
	LeaderRetryInterval time.Duration
	// BatchRevisions bounds the revisions one projection transaction covers.
	BatchRevisions int64
	// ProjectInterval is the least time between two catch-ups of the projector: under a stream
	// of writes it projects what arrived in that time in one transaction per cluster, instead of
	// one transaction per notification. A write after a quiet spell is projected at once; under
	// a stream the lag is at most about this long plus a batch. Each batch costs its statements'
	// planning (4–12 ms, most of it the flattening's big statement) whatever its size, which at
	// 100 ms was about a fifth of the projection's time under a stream of creates
	// (docs/benchmarks.md, "Creates: what the projector costs").
	ProjectInterval time.Duration
	Logger          *slog.Logger
	// Metrics records projection and refresh durations (nil: none).
	Metrics *metrics.Metrics
}

func (c *Config) defaults() {
	if c.SummaryRefreshInterval <= 0 {
		c.SummaryRefreshInterval = DefaultSummaryRefreshInterval
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.LeaderRetryInterval <= 0 {
		c.LeaderRetryInterval = DefaultLeaderRetryInterval
	}
	if c.BatchRevisions <= 0 {
		c.BatchRevisions = DefaultBatchRevisions
	}
	if c.ProjectInterval <= 0 {
		c.ProjectInterval = DefaultProjectInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default().With("component", "analytics")
	}
}

// Service runs the projector and the refresher of one process.
type Service struct {
	pool     *pgxpool.Pool
	notifier *db.Notifier
	cfg      Config
	q        *db.Queries
	log      *slog.Logger
	// projector and refresher elect the process that runs each component.
	projector, refresher *db.Elector

	// hook, when set (tests), runs while a component holds its lock and is about to write.
	hook func(component string)
}

// New returns a service on the database of pool. notifier may be nil: the projector then polls.
// The pool only supplies connection settings: the service opens its own connections, so it never
// holds connections the API needs.
func New(pool *pgxpool.Pool, notifier *db.Notifier, cfg Config) *Service {
	cfg.defaults()
	s := &Service{pool: pool, notifier: notifier, cfg: cfg, q: db.New(), log: cfg.Logger}
	s.projector = db.NewElector(pool, ProjectorLock, s.connect)
	s.refresher = db.NewElector(pool, RefresherLock, s.connect)
	return s
}

// Run projects and refreshes, whenever this process is the leader of a component, until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		s.projector.Run(ctx, s.cfg.LeaderRetryInterval, s.log.With("analytics", Projector), s.runProjector)
	})
	wg.Go(func() {
		s.refresher.Run(ctx, s.cfg.LeaderRetryInterval, s.log.With("analytics", Refresher), s.runRefresher)
	})
	wg.Wait()
}

// ProjectOnce brings the projection of every cluster up to its current revision, if no other
// process is projecting (it reports false then).
func (s *Service) ProjectOnce(ctx context.Context) (bool, error) {
	return s.projector.Once(ctx, false, func(conn *pgx.Conn) error {
		return s.catchUp(ctx, conn)
	})
}

// RefreshOnce refreshes the summaries the projection has moved past, if no other process is
// refreshing (it reports false then).
func (s *Service) RefreshOnce(ctx context.Context) (bool, error) {
	return s.refresher.Once(ctx, false, func(conn *pgx.Conn) error {
		return s.refreshStale(ctx, conn)
	})
}

// connect opens a dedicated connection with the pool's settings.
func (s *Service) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	// Everything the service writes is derived from the reports and committed together with the
	// checkpoint that says how far it got: a crash can lose its last transactions but never
	// split one, and the projector then redoes them. Not waiting for the WAL flush keeps its
	// commits off the disk queue the API's writes wait in.
	cfg.RuntimeParams["synchronous_commit"] = "off"
	// Plan every statement for its parameters and the tables' current sizes. The prepared
	// statements live as long as the connection, and PostgreSQL keeps a generic plan once it
	// looks no worse than the custom ones: a plan made while the tables were small (a sequential
	// scan of analytics_results, say) then stays while they grow, and during a bulk load, before
	// autovacuum's ANALYZE invalidates it, batches that take milliseconds took 10–40 s. Planning
	// costs well under a millisecond per statement; the batches are few and large.
	cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// subscribe returns the notification channel (nil without a notifier) and its cancel function.
func (s *Service) subscribe() (<-chan db.Change, func()) {
	if s.notifier == nil {
		return nil, func() {}
	}
	return s.notifier.Subscribe()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
