package db

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Replica is an optional PostgreSQL streaming replica that takes reads off the primary. A
// replica replays the primary's WAL, so a snapshot on it is a consistent past state of the
// primary. Each reader decides whether that state is new enough for its read (ErrReplicaBehind
// when not); ReadTx then reads from the primary instead, as it does while the replica is away
// or hung. Share one per process.
type Replica struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// pausedUntil (unix nanoseconds): after a failure, reads skip the replica until then, so a
	// replica that is down or hung costs one attempt per pause, not one per request.
	pausedUntil      atomic.Int64
	served, fellBack atomic.Int64
}

// NewReplica wraps the pool of a read replica.
func NewReplica(pool *pgxpool.Pool, log *slog.Logger) *Replica {
	if log == nil {
		log = slog.Default()
	}
	return &Replica{pool: pool, log: log}
}

// ReplicaStats are a replica's read counts since start.
type ReplicaStats struct {
	// Served reads ran on the replica; FellBack reads tried it and went to the primary (it was
	// behind, away or hung).
	Served, FellBack int64
}

// Stats returns the read counts (nil-safe).
func (r *Replica) Stats() ReplicaStats {
	if r == nil {
		return ReplicaStats{}
	}
	return ReplicaStats{Served: r.served.Load(), FellBack: r.fellBack.Load()}
}

const (
	// replicaPause is how long reads skip a replica after it failed.
	replicaPause = 5 * time.Second
	// replicaTimeout bounds one read on the replica, so a hung replica leaves the request time
	// to be answered by the primary.
	replicaTimeout = 10 * time.Second
)

// ErrReplicaBehind is what a read's function returns when the replica's snapshot is older than
// the read may be: ReadTx then reads from the primary.
var ErrReplicaBehind = errors.New("the read replica is behind what the read needs")

// ReadOnly is the snapshot of a read: one read-only REPEATABLE READ transaction.
var ReadOnly = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// ReadTx runs fn in a read-only snapshot: first on r (when r is not nil and not paused), then on
// primary if fn found the replica behind (ErrReplicaBehind) or the replica failed. fn learns
// where it runs, so it can check the replica's state; it may run twice.
func (r *Replica) ReadTx(ctx context.Context, primary *pgxpool.Pool, fn func(tx pgx.Tx, onReplica bool) error) error {
	if r != nil && time.Now().UnixNano() >= r.pausedUntil.Load() {
		rctx, cancel := context.WithTimeout(ctx, replicaTimeout)
		err := Tx(rctx, r.pool, ReadOnly, func(tx pgx.Tx) error { return fn(tx, true) })
		cancel()
		switch {
		case err == nil:
			r.served.Add(1)
			return nil
		case errors.Is(err, ErrReplicaBehind):
			r.fellBack.Add(1)
		case ctx.Err() != nil:
			return err // the request itself ended
		case IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded):
			r.fellBack.Add(1)
			r.pausedUntil.Store(time.Now().Add(replicaPause).UnixNano())
			r.log.Warn("read replica failed; reading from the primary", "err", err, "pause", replicaPause)
		default:
			return err // the read's own error (a 410, a bad selector): the primary would say the same
		}
	}
	return Tx(ctx, primary, ReadOnly, func(tx pgx.Tx) error { return fn(tx, false) })
}

// Active tells whether reads may try the replica at all (a nil Replica: never).
func (r *Replica) Active() bool { return r != nil }
