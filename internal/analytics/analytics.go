// Package analytics maintains the private tables behind the published SQL schema `reporting`
// (sql/schema/00002_reporting.sql, contract in docs/sql.md):
//
//   - the projector keeps analytics_results, one row per report result, in step with the reports:
//     it follows the change log in revision order and, for the keys changed since its checkpoint,
//     deletes their rows and inserts the new ones (set-based SQL, one transaction per batch
//     together with the checkpoint). A checkpoint older than the compacted revision, or none,
//     means a full rebuild of that cluster. It is woken by the NOTIFY every write sends and polls
//     as a safety net;
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
)

// Defaults of Config.
const (
	DefaultSummaryRefreshInterval = 30 * time.Second
	DefaultPollInterval           = 5 * time.Second
	DefaultLeaderRetryInterval    = 5 * time.Second
	DefaultBatchRevisions         = 1000
	DefaultProjectInterval        = 100 * time.Millisecond
)

// Advisory lock keys (single bigint key space, per database). Any constants work as long as they
// never change and differ from the other locks of the schema (migrations use 0x7265706f727473).
const (
	ProjectorLockKey int64 = 0x616e_616c_7072_6f6a // "analproj"
	RefresherLockKey int64 = 0x616e_616c_7265_6672 // "analrefr"
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
	// one transaction per notification. It is also about the lag when writes are rare.
	ProjectInterval time.Duration
	Logger          *slog.Logger
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

	// hook, when set (tests), runs while a component holds its lock and is about to write.
	hook func(component string)
}

// New returns a service on the database of pool. notifier may be nil: the projector then polls.
// The pool only supplies connection settings: the service opens its own connections, so it never
// holds connections the API needs.
func New(pool *pgxpool.Pool, notifier *db.Notifier, cfg Config) *Service {
	cfg.defaults()
	return &Service{pool: pool, notifier: notifier, cfg: cfg, q: db.New(), log: cfg.Logger}
}

// Run projects and refreshes, whenever this process is the leader of a component, until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.lead(ctx, Projector, ProjectorLockKey, s.runProjector) })
	wg.Go(func() { s.lead(ctx, Refresher, RefresherLockKey, s.runRefresher) })
	wg.Wait()
}

// ProjectOnce brings the projection of every cluster up to its current revision, if no other
// process is projecting (it reports false then).
func (s *Service) ProjectOnce(ctx context.Context) (bool, error) {
	return s.once(ctx, ProjectorLockKey, func(conn *pgx.Conn) error {
		return s.catchUp(ctx, conn)
	})
}

// RefreshOnce refreshes the summaries the projection has moved past, if no other process is
// refreshing (it reports false then).
func (s *Service) RefreshOnce(ctx context.Context) (bool, error) {
	return s.once(ctx, RefresherLockKey, func(conn *pgx.Conn) error {
		return s.refreshStale(ctx, conn)
	})
}

// once runs fn on a new connection that holds the lock key, or reports false without running it.
func (s *Service) once(ctx context.Context, key int64, fn func(*pgx.Conn) error) (bool, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	locked, err := s.q.AnalyticsTryLock(ctx, conn, key)
	if err != nil {
		return false, fmt.Errorf("try advisory lock: %w", err)
	}
	if !locked {
		return false, nil
	}
	// Closing the connection releases the lock too; unlocking first lets the next leader in
	// without waiting for the backend to exit.
	defer func() { _, _ = s.q.AnalyticsUnlock(context.WithoutCancel(ctx), conn, key) }()
	return true, fn(conn)
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

// lead runs work whenever this process holds the component's lock. The connection that holds
// the lock is the one work runs on; work returns on error (the connection is then closed, which
// releases the lock) or when ctx ends.
func (s *Service) lead(ctx context.Context, component string, key int64, work func(context.Context, *pgx.Conn) error) {
	log := s.log.With("analytics", component)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for ctx.Err() == nil {
		if conn == nil || conn.IsClosed() {
			c, err := s.connect(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("cannot connect; retrying", "err", err, "retry_in", s.cfg.LeaderRetryInterval)
				}
				sleep(ctx, s.cfg.LeaderRetryInterval)
				continue
			}
			conn = c
		}
		locked, err := s.q.AnalyticsTryLock(ctx, conn, key)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot try the leader lock; reconnecting", "err", err)
			}
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
			sleep(ctx, s.cfg.LeaderRetryInterval)
			continue
		}
		if !locked {
			sleep(ctx, s.cfg.LeaderRetryInterval)
			continue
		}
		log.Info("leading")
		err = work(ctx, conn)
		s.release(ctx, conn, key)
		conn = nil
		if ctx.Err() != nil {
			return
		}
		log.Warn("stepped down after an error; retrying", "err", err, "retry_in", s.cfg.LeaderRetryInterval)
		sleep(ctx, s.cfg.LeaderRetryInterval)
	}
}

// release gives up the lock and closes conn. Closing alone releases the lock only when the
// backend has exited, which happens after Close returns; unlocking first (when the connection
// still works) hands the lock to the next leader at once, e.g. a one-shot run right after a
// shutdown.
func (s *Service) release(ctx context.Context, conn *pgx.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if !conn.IsClosed() {
		_, _ = s.q.AnalyticsUnlock(ctx, conn, key)
	}
	conn.Close(ctx)
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
