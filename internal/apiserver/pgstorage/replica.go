package pgstorage

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
)

// Reads from a streaming replica (db.Replica). Lists, continuation pages and watches' initial
// state go to the replica whenever it has replayed the revision they need — never older than a
// resourceVersion the client already saw: the one it names, or, for a list of "the most recent"
// state, the primary's current revision, read first, as kube-apiserver's consistent reads from its
// watch cache do — and to the primary otherwise. A replica snapshot is a past state of the
// primary exactly as it committed: its revisions row and its rows agree. Writes, gets and watch
// events always use the primary.

// readTx runs fn in a read-only snapshot on the replica or the primary (db.Replica.ReadTx).
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx, onReplica bool) error) error {
	return s.replica.ReadTx(ctx, s.pool, fn)
}

// primaryFloor is the lowest revision a replica must have replayed to serve a read of "the most
// recent" state (resourceVersion unset): the primary's current revision. Without a replica it is
// 0 and costs nothing.
func (s *Store) primaryFloor(ctx context.Context, req listRequest) (int64, error) {
	if !s.replica.Active() || req.opts.ResourceVersion != "" {
		return 0, nil
	}
	cur, err := s.rev.read(ctx, s.pool)
	if err != nil {
		return 0, db.NoRows(err)
	}
	return cur.Current, nil
}
