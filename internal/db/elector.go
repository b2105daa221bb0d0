package db

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Lock names one leadership: a kind of work (Class, a constant of its own) in a scope (a
// cluster, or "" for work across clusters). It is PostgreSQL's two-key advisory lock
// (Class, hashtext(Scope)).
type Lock struct {
	Class int32
	Scope string
}

// Elector is the one home of leadership: it decides which process does a piece of work that
// must run once at a time across replicas (compacting a cluster's change log, projecting and
// refreshing the analytics). Leadership is a session-level advisory lock held by the connection
// the leader works on: a leader whose connection dies loses the lock with it, can no longer write
// through it, and PostgreSQL hands the lock to the next session that asks.
type Elector struct {
	lock    Lock
	q       *Queries
	connect func(context.Context) (*pgx.Conn, error)
}

// NewElector returns the elector of lock. Leaders work on a connection of their own, opened by
// connect (nil: a new connection with pool's settings), never on a pooled one, so the lock never
// outlives the work in a connection that something else then uses.
func NewElector(pool *pgxpool.Pool, lock Lock, connect func(context.Context) (*pgx.Conn, error)) *Elector {
	if connect == nil {
		connect = func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		}
	}
	return &Elector{lock: lock, q: New(), connect: connect}
}

// Once runs fn as the leader, on the connection that holds the lock, and reports whether it did:
// with wait it waits for the lock, without it it returns false (and does not run fn) while
// another session leads.
func (e *Elector) Once(ctx context.Context, wait bool, fn func(*pgx.Conn) error) (bool, error) {
	conn, err := e.connect(ctx)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer e.stepDown(ctx, conn)
	if wait {
		if err := e.q.WaitLead(ctx, conn, sqlc.WaitLeadParams(e.lock)); err != nil {
			return false, fmt.Errorf("wait for leadership: %w", err)
		}
	} else {
		led, err := e.q.TryLead(ctx, conn, sqlc.TryLeadParams(e.lock))
		if err != nil {
			return false, fmt.Errorf("try leadership: %w", err)
		}
		if !led {
			return false, nil
		}
	}
	return true, fn(conn)
}

// Run does work whenever this process leads, until ctx ends, asking for leadership every retry
// while another process has it. work runs on the connection that holds the lock and returns when
// ctx ends or on an error, which ends this leadership (the connection is closed); Run then asks
// again after retry.
func (e *Elector) Run(ctx context.Context, retry time.Duration, log *slog.Logger, work func(context.Context, *pgx.Conn) error) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for ctx.Err() == nil {
		if conn == nil || conn.IsClosed() {
			c, err := e.connect(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("cannot connect; retrying", "err", err, "retry_in", retry)
				}
				pause(ctx, retry)
				continue
			}
			conn = c
		}
		led, err := e.q.TryLead(ctx, conn, sqlc.TryLeadParams(e.lock))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot ask for leadership; reconnecting", "err", err)
			}
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
			pause(ctx, retry)
			continue
		}
		if !led {
			pause(ctx, retry)
			continue
		}
		log.Info("leading")
		err = work(ctx, conn)
		e.stepDown(ctx, conn)
		conn = nil
		if ctx.Err() != nil {
			return
		}
		log.Warn("stepped down after an error; retrying", "err", err, "retry_in", retry)
		pause(ctx, retry)
	}
}

// stepDown gives up the lock and closes conn. Closing alone releases the lock only once the
// backend has exited, after Close returns; unlocking first (when the connection still works)
// hands it to the next leader at once.
func (e *Elector) stepDown(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if !conn.IsClosed() {
		_, _ = e.q.StepDown(ctx, conn, sqlc.StepDownParams(e.lock))
	}
	conn.Close(ctx)
}

// pause waits d, or less if ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
