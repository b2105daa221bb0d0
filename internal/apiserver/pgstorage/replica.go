package pgstorage

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/klog/v2"

	"github.com/reports-server/reports-server/internal/db"
)

// Replica is an optional PostgreSQL streaming replica that takes lists, continuation pages and
// watches' initial state off the primary. A replica replays the primary's WAL, so a snapshot on
// it is a consistent past state of the primary: the revisions row and the rows agree, as they did
// when that revision committed. A read goes to the replica only when that state is new enough —
// never older than a resourceVersion the client already saw (the one it names, or for a list
// "from the most recent" the primary's current revision, read first as kube-apiserver's
// consistent reads from its watch cache do) — and to the primary otherwise. Writes, gets and
// watch events always use the primary. Share one per process.
type Replica struct {
	pool *pgxpool.Pool
	// pausedUntil (unix nanoseconds): after a failure, reads skip the replica until then, so a
	// replica that is down or hung costs one attempt per pause, not one per request.
	pausedUntil atomic.Int64
	// Reads counts reads by where they were served (metrics).
	served, fellBack atomic.Int64
}

// NewReplica wraps the pool of a read replica.
func NewReplica(pool *pgxpool.Pool) *Replica { return &Replica{pool: pool} }

// ReplicaStats are the replica's read counts since start.
type ReplicaStats struct {
	// Served reads ran on the replica; FellBack reads tried it and went to the primary (it was
	// behind, away or hung).
	Served, FellBack int64
}

// Stats returns the read counts.
func (r *Replica) Stats() ReplicaStats {
	return ReplicaStats{Served: r.served.Load(), FellBack: r.fellBack.Load()}
}

const (
	// replicaPause is how long reads skip a replica after it failed.
	replicaPause = 5 * time.Second
	// replicaTimeout bounds one read on the replica, so a hung replica leaves the request time
	// to be answered by the primary.
	replicaTimeout = 10 * time.Second
)

// errReplicaBehind: the replica has not replayed the revision a read needs.
var errReplicaBehind = errors.New("the read replica is behind the revision asked for")

// readOnly is the snapshot every list and page reads in.
var readOnly = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// readTx runs fn in a read-only snapshot: first on the replica, when there is one and it is not
// paused, then on the primary if fn found the replica behind (errReplicaBehind) or the replica
// failed. fn learns where it runs, so it can check the replica's revision.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx, onReplica bool) error) error {
	if r := s.replica; r != nil && time.Now().UnixNano() >= r.pausedUntil.Load() {
		rctx, cancel := context.WithTimeout(ctx, replicaTimeout)
		err := db.Tx(rctx, r.pool, readOnly, func(tx pgx.Tx) error { return fn(tx, true) })
		cancel()
		switch {
		case err == nil:
			r.served.Add(1)
			return nil
		case errors.Is(err, errReplicaBehind):
			r.fellBack.Add(1)
		case ctx.Err() != nil:
			return err // the request itself ended
		case db.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded):
			r.fellBack.Add(1)
			r.pausedUntil.Store(time.Now().Add(replicaPause).UnixNano())
			klog.V(2).InfoS("Read replica failed; reading from the primary", "err", err, "pause", replicaPause)
		default:
			return err // the request's own error (a 410, a bad selector): the primary would say the same
		}
	}
	return db.Tx(ctx, s.pool, readOnly, func(tx pgx.Tx) error { return fn(tx, false) })
}

// primaryFloor is the lowest revision a replica must have replayed to serve a read of "the most
// recent" state (resourceVersion unset): the primary's current revision. Without a replica it is
// 0 and costs nothing.
func (s *Store) primaryFloor(ctx context.Context, req listRequest) (int64, error) {
	if s.replica == nil || req.opts.ResourceVersion != "" {
		return 0, nil
	}
	cur, err := s.rev.read(ctx, s.pool)
	if err != nil {
		return 0, db.NoRows(err)
	}
	return cur.Current, nil
}
