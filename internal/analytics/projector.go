package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// runProjector is the projector's leader loop: catch up, then wait for a notification or the
// safety poll, and at least ProjectInterval after the previous catch-up began. Notifications that
// arrive meanwhile are coalesced into the next catch-up.
func (s *Service) runProjector(ctx context.Context, conn *pgx.Conn) error {
	notes, cancel := s.subscribe()
	defer cancel()
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	for {
		began := time.Now()
		if err := s.catchUp(ctx, conn); err != nil {
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
		sleep(ctx, s.cfg.ProjectInterval-time.Since(began))
	drain:
		for {
			select {
			case <-notes:
			default:
				break drain
			}
		}
	}
}

// catchUp projects every cluster up to the revision that is current when it looks, batch by
// batch.
func (s *Service) catchUp(ctx context.Context, conn *pgx.Conn) error {
	clusters, err := s.q.AnalyticsClusters(ctx, conn)
	if err != nil {
		return fmt.Errorf("list clusters: %w", err)
	}
	for _, c := range clusters {
		if c.Checkpoint >= c.Current {
			continue
		}
		for done := false; !done; {
			if done, err = s.projectBatch(ctx, conn, c.Cluster); err != nil {
				return fmt.Errorf("project cluster %q: %w", c.Cluster, err)
			}
		}
	}
	return nil
}

// projectBatch runs one projection transaction for cluster and reports whether the projection
// reached the current revision.
//
// The transaction is REPEATABLE READ and its first statement reads the cluster's revisions, so
// its snapshot holds every change up to `current` and none after (revisions are gapless and
// commit-ordered, docs/design.md). The keys changed in (checkpoint, upto] are re-flattened from
// their rows in that snapshot, which is the state at `current` >= upto: a key's rows may be
// newer than the checkpoint says, never older, and a later batch that sees the key change again
// replaces them. A deleted key has no row and loses its results. After a rebuild the tables are
// analyzed.
func (s *Service) projectBatch(ctx context.Context, conn *pgx.Conn, cluster string) (done bool, err error) {
	start := time.Now()
	rebuilt := false
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		st, err := s.q.AnalyticsClusterState(ctx, tx, cluster)
		if err != nil {
			return fmt.Errorf("read revisions: %w", db.NoRows(err))
		}
		if st.Checkpoint >= st.Current {
			done = true
			return nil
		}
		if s.hook != nil {
			s.hook(Projector)
		}
		// The change log below `compacted` may be gone: the changes since the checkpoint are
		// then incomplete, and only a rebuild from the reports is right.
		rebuild := st.Checkpoint < 0 || st.Checkpoint < st.Compacted
		upto := st.Current
		if !rebuild {
			upto = min(st.Current, st.Checkpoint+s.cfg.BatchRevisions)
		}
		if err := s.replace(ctx, tx, sqlc.AnalyticsDeleteReportsParams{
			Cluster: cluster, Rebuild: rebuild, AfterRevision: st.Checkpoint, UptoRevision: upto,
		}); err != nil {
			return err
		}
		if err := s.q.AnalyticsSetCheckpoint(ctx, tx, sqlc.AnalyticsSetCheckpointParams{
			Cluster: cluster, Revision: upto, DurationMs: msSince(start), Rebuilt: rebuild,
		}); err != nil {
			return fmt.Errorf("set checkpoint: %w", err)
		}
		rebuilt = rebuild
		if rebuild {
			s.log.Info("rebuilt the results of a cluster", "cluster", cluster, "revision", upto,
				"checkpoint", st.Checkpoint, "compacted", st.Compacted, "duration", time.Since(start))
		}
		done = upto == st.Current
		return nil
	})
	if err == nil {
		s.cfg.Metrics.ObserveProjection(time.Since(start))
	}
	if err == nil && rebuilt {
		// Every row of the cluster is new: without statistics the planner joins the tables badly
		// until autovacuum analyzes them. A failure costs plans, not the projection.
		if err := s.q.AnalyticsAnalyze(ctx, conn); err != nil && ctx.Err() == nil {
			s.log.Warn("analyze the projection after a rebuild", "cluster", cluster, "err", err)
		}
	}
	return done, err
}

// replace replaces the projection of the keys changed in (AfterRevision, UptoRevision] (of every key
// of the cluster when Rebuild) with the flattening of their rows in tx's snapshot, and deletes the
// outcomes only the replaced results said.
func (s *Service) replace(ctx context.Context, tx pgx.Tx, keys sqlc.AnalyticsDeleteReportsParams) error {
	outcomes, err := s.q.AnalyticsDeleteReports(ctx, tx, keys)
	if err != nil {
		return fmt.Errorf("delete results: %w", err)
	}
	if _, err := s.q.AnalyticsInsertReports(ctx, tx, sqlc.AnalyticsInsertReportsParams(keys)); err != nil {
		return fmt.Errorf("insert results: %w", err)
	}
	if _, err := s.q.AnalyticsDeleteUnusedOutcomes(ctx, tx, outcomes); err != nil {
		return fmt.Errorf("delete unused outcomes: %w", err)
	}
	return nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
