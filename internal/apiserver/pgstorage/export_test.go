package pgstorage

import (
	"context"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/reports-server/reports-server/internal/ahead"
	"github.com/reports-server/reports-server/internal/db"
)

// BumpRevision advances the cluster's revision by exactly one without writing an object: the
// suite's IncreaseRVFunc (etcd tests write an unrelated key for the same effect).
func (s *Store) BumpRevision(ctx context.Context) (int64, error) {
	var rev int64
	err := db.Tx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		rev, err = s.q.NextRevision(ctx, tx, s.cluster)
		return err
	})
	return rev, err
}

// RawObject returns the stored JSON of key.
func (s *Store) RawObject(ctx context.Context, key string) ([]byte, error) {
	object, _, err := readStored(ctx, s.q, s.pool, s.cluster, key)
	if err != nil {
		return nil, err
	}
	if object == nil {
		return nil, db.ErrNotFound
	}
	return object, nil
}

// Codec returns the store's codec.
func (s *Store) Codec() runtime.Codec { return s.codec }

// FollowerStats are a follower's counters and its window.
type FollowerStats struct {
	FollowerReads, LogReads, Dropped int64
	Wakeups                          int64 // watchers woken by new changes
	Current, WindowStart             int64
	WindowEvents                     int
	WindowBytes                      int64
}

// Stats returns the follower's counters and the extent of its window.
func (f *Follower) Stats() FollowerStats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return FollowerStats{
		FollowerReads: f.followerReads.Load(), LogReads: f.logReads.Load(), Dropped: f.dropped.Load(), Wakeups: f.wakeups.Load(),
		Current: f.current, WindowStart: f.start, WindowEvents: len(f.window), WindowBytes: f.bytes,
	}
}

// Pass runs one periodic compaction pass; led says whether this compactor held leadership.
func (c *Compactor) Pass(ctx context.Context) (bool, error) { return c.pass(ctx) }

// OnLeading sets a function run while the compactor holds leadership, before it compacts.
func (c *Compactor) OnLeading(fn func(ctx context.Context)) { c.leading = fn }

// CompactionLockClass is the first key of the compaction advisory lock.
const CompactionLockClass = compactionLockClass

// WriteResult is the outcome of one write of a batch: its revision, or its error.
type WriteResult struct {
	Rev int64
	Err error
}

// WriteOp is one write of CommitBatch: Kind "create", "update" or "delete"; Expected is the
// revision an update or delete requires.
type WriteOp struct {
	Kind, Key string
	Data      []byte
	Expected  int64
}

// CommitBatch commits ops as one batch of the store's writer, as if they had been queued
// together, and returns their outcomes.
func (s *Store) CommitBatch(ops []WriteOp) []WriteResult {
	batch := make([]*writeOp, len(ops))
	for i, o := range ops {
		kind := map[string]opKind{"create": opCreate, "update": opUpdate, "delete": opDelete}[o.Kind]
		batch[i] = &writeOp{kind: kind, key: o.Key, data: o.Data, expected: o.Expected, done: make(chan writeResult, 1)}
	}
	s.writer.commit(batch)
	out := make([]WriteResult, len(ops))
	for i, op := range batch {
		r := <-op.done
		out[i] = WriteResult{Rev: r.rev, Err: r.err}
	}
	return out
}

// ApplyBatch applies ops as one batch, as CommitBatch does, but without commit's retry of a
// failed batch one write at a time: an error of the batch's statements is returned, not hidden.
func (s *Store) ApplyBatch(ops []WriteOp) ([]WriteResult, error) {
	batch := make([]*writeOp, len(ops))
	for i, o := range ops {
		kind := map[string]opKind{"create": opCreate, "update": opUpdate, "delete": opDelete}[o.Kind]
		batch[i] = &writeOp{kind: kind, key: o.Key, data: o.Data, expected: o.Expected}
	}
	results, err := s.writer.apply(context.Background(), batch)
	out := make([]WriteResult, len(ops))
	for i, r := range results {
		out[i] = WriteResult{Rev: r.rev, Err: r.err}
	}
	return out, err
}

// OneByOneBatches is how many batches the store's writer applied one write at a time after their
// pipeline found a failed precondition.
func (s *Store) OneByOneBatches() int64 { return s.writer.oneByOne.Load() }

// ConfirmBatch says what the writer concludes about a batch of ops written at revs that the
// database reports committed (after a lost COMMIT answer): "committed", "aborted" or "unknown".
func (s *Store) ConfirmBatch(ctx context.Context, ops []WriteOp, revs []int64) (string, error) {
	batch := make([]*writeOp, len(ops))
	results := make([]writeResult, len(ops))
	for i, o := range ops {
		kind := map[string]opKind{"create": opCreate, "update": opUpdate, "delete": opDelete}[o.Kind]
		batch[i] = &writeOp{kind: kind, key: o.Key, data: o.Data, expected: o.Expected}
		results[i].rev = revs[i]
	}
	outcome, err := s.writer.confirm(ctx, batch, results)
	return map[batchOutcome]string{committed: "committed", aborted: "aborted", unknownOutcome: "unknown"}[outcome], err
}

// PrefetchStats returns the counters of the store's list read-ahead.
func (s *Store) PrefetchStats() ahead.Stats { return s.prefetcher.Stats() }

// Kept returns what c keeps for key of cluster: its revision and the object as clients receive
// it (nil when only its metadata is kept).
func (c *ObjectCache) Kept(cluster, key string) (int64, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[objectCacheKey{cluster, key}]
	return e.rev, e.object, ok
}
