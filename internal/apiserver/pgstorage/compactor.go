package pgstorage

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Defaults of the compaction settings (the `reports-server serve` flags).
const (
	// DefaultWatchHistoryWindow is the change history kept at least. kube-apiserver compacts
	// etcd every 5 minutes to the revision it saw at the previous run, so etcd keeps between 5
	// and 10 minutes; we keep the upper end as a guarantee, because a client that gets 410 must
	// re-list, and re-listing every report of a large cluster costs far more than ten minutes of
	// change rows. It covers a rolling update of several replicas, during which every informer
	// re-watches from its last resourceVersion.
	DefaultWatchHistoryWindow = 10 * time.Minute
	// DefaultWatchHistoryMaxEvents caps the change log during write bursts, whatever the window
	// says: ~100,000 rows of ~3.5 KB (new and replaced object, TOAST-compressed) is ~350 MB.
	DefaultWatchHistoryMaxEvents = 100_000
	// DefaultCompactionInterval is how often a compaction pass runs; history kept is between
	// the window and the window plus one interval.
	DefaultCompactionInterval = time.Minute
	// defaultCompactionBatch is the number of change rows one DELETE removes.
	defaultCompactionBatch = 5000
	// compactionLockClass is the class of the compaction leadership of a cluster ("rpct"; its
	// scope is the cluster).
	compactionLockClass = 0x72706374
)

// CompactorOptions configure a Compactor.
type CompactorOptions struct {
	// Window keeps at least the changes recorded within it (0: no time-based compaction).
	Window time.Duration
	// MaxEvents keeps at most about this many revisions of history, whatever Window says
	// (0: no cap).
	MaxEvents int64
	// Interval is the time between passes of Run (0: Run does nothing; Compact still works).
	Interval time.Duration
	// BatchSize is the number of change rows one DELETE removes (default 5000).
	BatchSize int
	// Follower learns of every compaction at once, so CompactRevision and expired watchers do
	// not wait for the next read.
	Follower *Follower
	Log      *slog.Logger
}

// Compactor compacts the change log of one cluster. Run one per process and cluster: every
// Interval, the process that gets the cluster's compaction lock compacts and the others skip
// the pass, so one replica at a time compacts and none waits for another.
//
// A compaction has two steps:
//
//  1. a short transaction takes the next revision (like etcd, a compaction is itself a
//     revision), raises revisions.compacted and notifies. It holds the revision row lock for
//     three statements, so writers wait for it no longer than for one more write;
//  2. DELETEs of the change rows at or below the compacted revision, in batches of BatchSize,
//     each its own transaction, without the revision lock: writers never wait for them.
//
// Readers stay correct in between, because compacted is committed before any row goes: every
// read of the change log reads compacted in the same snapshot (ReadChanges, ListObjectsAt
// behind GetList), so a snapshot that misses deleted rows also sees that they are compacted
// and answers 410 instead of an incomplete result. A pass that was interrupted leaves rows
// below compacted; the next pass deletes them.
//
// Leadership is a session-level advisory lock (pg_try_advisory_lock) held, for the duration of
// one pass, on the pooled connection that runs the pass; it is released at the end of the pass
// (or with the connection, if the process dies). A transaction-level lock
// (pg_try_advisory_xact_lock) would end with the short transaction of step 1 and leave the
// batched DELETEs of step 2 unguarded, or force them into one long transaction, which holds
// back vacuum on the whole database; the session lock spans both steps while every step
// commits on its own.
type Compactor struct {
	pool    *pgxpool.Pool
	q       *db.Queries
	rev     clusterRevision
	elector *db.Elector
	cluster string
	opts    CompactorOptions

	compacted atomic.Int64
	// leading, when set (tests), runs while the compactor holds leadership, before it compacts.
	leading func(ctx context.Context)
}

// NewCompactor returns the compactor of cluster.
func NewCompactor(pool *pgxpool.Pool, cluster string, opts CompactorOptions) *Compactor {
	if opts.BatchSize <= 0 {
		opts.BatchSize = defaultCompactionBatch
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Compactor{
		pool: pool, q: db.New(), rev: newClusterRevision(cluster), cluster: cluster, opts: opts,
		elector: db.NewElector(pool, db.Lock{Class: compactionLockClass, Scope: cluster}, nil),
	}
}

// Run compacts every Interval until ctx ends. It does nothing when Interval is zero or neither
// Window nor MaxEvents is set.
func (c *Compactor) Run(ctx context.Context) {
	if c.opts.Interval <= 0 || (c.opts.Window <= 0 && c.opts.MaxEvents <= 0) {
		return
	}
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.pass(ctx); err != nil && ctx.Err() == nil {
			c.opts.Log.Warn("compaction failed; retrying at the next interval", "cluster", c.cluster, "err", err)
		}
	}
}

// CompactRevision is the newest compacted revision this compactor has seen.
func (c *Compactor) CompactRevision() int64 { return c.compacted.Load() }

func (c *Compactor) observe(rev int64) {
	for {
		old := c.compacted.Load()
		if rev <= old || c.compacted.CompareAndSwap(old, rev) {
			break
		}
	}
	if c.opts.Follower != nil {
		c.opts.Follower.observeCompacted(rev)
	}
}

// Compact compacts the change log to rev now, waiting for leadership if another process is
// compacting. Like etcd's compaction it takes a revision, so "has anything happened since
// revision R" stays answerable by comparing numbers (the storage suite relies on this).
func (c *Compactor) Compact(ctx context.Context, rev int64) error {
	_, err := c.lead(ctx, true, func(conn *pgx.Conn) error {
		if err := c.setCompacted(ctx, conn, rev); err != nil {
			return err
		}
		return c.deleteUpTo(ctx, conn, rev)
	})
	if err != nil {
		return fmt.Errorf("compact change log to %d: %w", rev, err)
	}
	return nil
}

// pass is one periodic compaction; led says whether this process held leadership for it.
func (c *Compactor) pass(ctx context.Context) (led bool, err error) {
	return c.lead(ctx, false, func(conn *pgx.Conn) error {
		st, err := c.q.CompactionState(ctx, conn, sqlc.CompactionStateParams{Cluster: c.cluster, WindowSeconds: c.opts.Window.Seconds()})
		if err != nil {
			return fmt.Errorf("read compaction state: %w", db.NoRows(err))
		}
		c.observe(st.Compacted)
		target := st.Compacted
		if c.opts.Window > 0 {
			// Everything before the oldest change within the window; every change when none is.
			due := st.NewestChange
			if st.FirstKept > 0 {
				due = st.FirstKept - 1
			}
			target = max(target, due)
		}
		if c.opts.MaxEvents > 0 {
			target = max(target, st.Current-c.opts.MaxEvents)
		}
		if target > st.Compacted {
			if err := c.setCompacted(ctx, conn, target); err != nil {
				return err
			}
		}
		// Also finishes the deletion of an interrupted pass.
		return c.deleteUpTo(ctx, conn, target)
	})
}

// lead runs fn as the cluster's compaction leader, on the connection that holds leadership:
// waiting for it when wait is set, else skipping fn (led false) while another process compacts.
func (c *Compactor) lead(ctx context.Context, wait bool, fn func(*pgx.Conn) error) (led bool, err error) {
	return c.elector.Once(ctx, wait, func(conn *pgx.Conn) error {
		if c.leading != nil {
			c.leading(ctx)
		}
		return fn(conn)
	})
}

// setCompacted is step 1: the short transaction under the revision lock.
func (c *Compactor) setCompacted(ctx context.Context, conn *pgx.Conn, rev int64) error {
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := c.rev.take(ctx, tx); err != nil {
			return err
		}
		return c.q.SetCompacted(ctx, tx, sqlc.SetCompactedParams{Cluster: c.cluster, Revision: rev})
	})
	if err != nil {
		return err
	}
	c.observe(rev)
	return nil
}

// Exclusively runs fn while holding the cluster's compaction lock, waiting for it: one replica at
// a time runs fn, and no compaction runs meanwhile. The migration from CRDs runs this way.
func (c *Compactor) Exclusively(ctx context.Context, fn func(context.Context) error) error {
	_, err := c.lead(ctx, true, func(*pgx.Conn) error { return fn(ctx) })
	return err
}

// ExpireThrough makes every revision issued so far, and every external revision up to rv, too
// old: it raises the cluster's revision past rv and compacts everything before the new one, so a
// client holding such a resourceVersion gets 410 Gone and relists. The migration from CRDs uses
// it for the etcd resourceVersions the CRDs' clients hold, which mean nothing here. The change
// rows go with the next compaction pass.
func (c *Compactor) ExpireThrough(ctx context.Context, rv int64) error {
	var next int64
	err := db.Tx(ctx, c.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		// Compacted ends up at rv+1 or above: a watch from the compacted revision itself is
		// still valid (it wants what follows), so it must pass rv.
		if next, err = c.rev.raise(ctx, tx, rv+1); err != nil {
			return err
		}
		if err := c.q.SetCompacted(ctx, tx, sqlc.SetCompactedParams{Cluster: c.cluster, Revision: next - 1}); err != nil {
			return fmt.Errorf("set compacted: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.observe(next - 1)
	c.opts.Log.Info("expired every earlier resourceVersion", "cluster", c.cluster, "through", rv, "revision", next)
	return nil
}

// deleteUpTo is step 2: batched DELETEs of the change rows at or below rev, each committed on
// its own, outside the revision lock.
func (c *Compactor) deleteUpTo(ctx context.Context, conn *pgx.Conn, rev int64) error {
	var total int64
	start := time.Now()
	for {
		n, err := c.q.DeleteCompactedChanges(ctx, conn, sqlc.DeleteCompactedChangesParams{
			Cluster: c.cluster, Revision: rev, BatchSize: int32(c.opts.BatchSize),
		})
		if err != nil {
			return fmt.Errorf("delete compacted changes: %w", err)
		}
		total += n
		if n < int64(c.opts.BatchSize) {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if total > 0 {
		c.opts.Log.Info("compacted the change log", "cluster", c.cluster, "revision", rev, "deleted", total, "duration", time.Since(start))
	}
	return nil
}
