package pgstorage

import (
	"context"
	"fmt"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// clusterRevision is the one home of a cluster's revision, its row in the revisions table: every
// place that takes, moves or reads a revision goes through it, so "where is a resourceVersion
// assigned?" has one answer (the queries are the "Revisions" section of sql/queries/storage.sql).
//
// Revisions are gapless and commit-ordered because whatever moves the row holds its row lock
// until commit (docs/design.md, "Revisions"); every move is announced to every replica's
// watchers with a NOTIFY, delivered at that commit.
type clusterRevision struct {
	q       *db.Queries
	cluster string
}

func newClusterRevision(cluster string) clusterRevision {
	return clusterRevision{q: db.New(), cluster: cluster}
}

// read returns the current and the compacted revision, without locking.
func (r clusterRevision) read(ctx context.Context, q sqlc.DBTX) (sqlc.CurrentRevisionRow, error) {
	row, err := r.q.CurrentRevision(ctx, q, r.cluster)
	return row, db.NoRows(err)
}

// lock starts a write batch in tx: it takes the row lock, so the batch's commit comes before any
// later revision, and returns the current revision and the id of tx.
func (r clusterRevision) lock(ctx context.Context, tx sqlc.DBTX) (sqlc.LockRevisionRow, error) {
	row, err := r.q.LockRevision(ctx, tx, r.cluster)
	if err != nil {
		return row, fmt.Errorf("lock revision: %w", db.NoRows(err))
	}
	return row, nil
}

// advance ends a write batch that wrote every revision up to rev (under lock).
func (r clusterRevision) advance(ctx context.Context, q sqlc.DBTX, rev int64) error {
	if err := r.q.SetRevision(ctx, q, sqlc.SetRevisionParams{Cluster: r.cluster, Current: rev}); err != nil {
		return fmt.Errorf("set revision: %w", err)
	}
	return r.announce(ctx, q, rev)
}

// take takes the next revision for a change that writes no object (a compaction marks one).
func (r clusterRevision) take(ctx context.Context, tx sqlc.DBTX) (int64, error) {
	next, err := r.q.NextRevision(ctx, tx, r.cluster)
	if err != nil {
		return 0, fmt.Errorf("take revision: %w", db.NoRows(err))
	}
	return next, r.announce(ctx, tx, next)
}

// raise moves the revision to at least rev and returns it (expiring external resourceVersions).
func (r clusterRevision) raise(ctx context.Context, tx sqlc.DBTX, rev int64) (int64, error) {
	next, err := r.q.RaiseRevision(ctx, tx, sqlc.RaiseRevisionParams{Cluster: r.cluster, Revision: rev})
	if err != nil {
		return 0, fmt.Errorf("raise revision: %w", db.NoRows(err))
	}
	return next, r.announce(ctx, tx, next)
}

// announce wakes the watchers of every server process when the transaction commits.
func (r clusterRevision) announce(ctx context.Context, q sqlc.DBTX, rev int64) error {
	return r.q.Notify(ctx, q, sqlc.NotifyParams{Channel: db.ChangesChannel, Payload: db.Change{Cluster: r.cluster, Revision: rev}.Payload()})
}
