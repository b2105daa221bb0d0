package pgstorage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
	"github.com/reports-server/reports-server/internal/metrics"
)

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

// writeOp is one object write waiting for a batch.
type writeOp struct {
	kind     opKind
	key      string
	data     []byte // the new object (create, update)
	expected int64  // the revision the caller read (update, delete)
	done     chan writeResult

	// mu guards what the caller and the writer's loop decide together: whether the write goes
	// into a batch (taken) or its caller stopped waiting first (withdrawn), and whether a caller
	// stopped waiting for a batch (left).
	mu    sync.Mutex
	state opState
	batch *batch
}

type opState int

const (
	opQueued opState = iota
	opTaken
	opWithdrawn
	opLeft
)

// batch is the context of one batch: it ends once every caller of the batch has stopped
// waiting (their requests' deadlines passed), since nobody needs its outcome then, and a batch
// stuck on a database that does not answer must not hold up the writes queued behind it.
type batch struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiting atomic.Int64
}

func (b *batch) leave() {
	if b.waiting.Add(-1) == 0 {
		b.cancel()
	}
}

type writeResult struct {
	rev int64
	err error
}

// Writer commits the object writes of one cluster, from every resource of a process, in
// batches: one transaction takes the cluster's revision row lock, applies every queued write
// with consecutive revisions, and commits once.
//
// Why batches: revisions must be gapless and commit-ordered (see docs/design.md), so writes to a
// cluster are serialised by the revision row lock until commit, and a commit waits for its WAL
// flush. One write per transaction would cap throughput at one flush per write; a batch shares
// the flush (group commit) while keeping the order.
//
// A batch's statements go to PostgreSQL in one round trip (a pipeline), on the assumption that
// every precondition holds. A write whose precondition fails (the key exists, the revision
// moved) changes nothing and must take no revision, which would leave a gap after it: the
// pipeline is then rolled back to its savepoint and the batch applied one statement at a time,
// where such a write simply does not spend a revision. A database error aborts the batch; its
// writes are then retried one per transaction, so a write that the database rejects fails alone.
//
// A batch whose connection breaks while it commits (PostgreSQL restarted, a connection reset)
// may or may not have committed: the answer to COMMIT is what was lost. Rather than answer 503
// for a write that is stored, the writer asks PostgreSQL, once it answers again, what became of
// the batch's transaction (pg_xact_status of the id LockRevision returned, checked against the
// batch's writes: see confirm) and answers the truth. Only when the database stays away longer
// than resolveTimeout, or the writes cannot tell, is the outcome unknown (a 503 that says so).
//
// A database that hangs instead (a frozen host, a lock every write waits for, no free
// connection) is not waited for past the request: a caller whose context ends withdraws its
// write if it is still queued (it is never sent), or stops waiting for its batch (a 503 saying
// the write may have been stored). A batch whose callers have all stopped waiting is cancelled,
// so the writes queued behind it are not held up by it.
type Writer struct {
	pool     *pgxpool.Pool
	q        *db.Queries
	rev      clusterRevision
	cluster  string
	maxBatch int
	// resolveTimeout bounds how long a batch whose commit answer was lost waits for the database
	// to say whether it committed.
	resolveTimeout time.Duration

	start   sync.Once
	ops     chan *writeOp
	metrics *metrics.Metrics
	// oneByOne counts the batches whose pipeline was rolled back and applied one write at a
	// time (a failed precondition), for tests.
	oneByOne atomic.Int64
}

// WithMetrics makes w record its batches in m; call it before the first write.
func (w *Writer) WithMetrics(m *metrics.Metrics) *Writer {
	w.metrics = m
	return w
}

// NewWriter returns the writer of cluster. Share one per process and cluster.
func NewWriter(pool *pgxpool.Pool, cluster string) *Writer {
	return &Writer{pool: pool, q: db.New(), rev: newClusterRevision(cluster), cluster: cluster, maxBatch: 256, resolveTimeout: 10 * time.Second, ops: make(chan *writeOp, 1024)}
}

// do queues op and waits for its batch to commit, or for ctx to end. A write still queued when
// ctx ends is withdrawn: it was never sent, and the error says so. One already in a batch may
// commit after its caller stopped waiting, so that error is errAnswerLate (a 503 telling the
// client to read before writing again): the database did not answer in time (it hangs, or
// every connection is taken), and the request must be answered before its own deadline.
func (w *Writer) do(ctx context.Context, op *writeOp) (int64, error) {
	w.start.Do(func() { go w.loop() })
	op.done = make(chan writeResult, 1)
	select {
	case w.ops <- op:
	case <-ctx.Done():
		return 0, fmt.Errorf("the write was not sent: %w", ctx.Err())
	}
	select {
	case r := <-op.done:
		return r.rev, r.err
	case <-ctx.Done():
	}
	op.mu.Lock()
	state, b := op.state, op.batch
	if state == opQueued {
		op.state = opWithdrawn
	} else {
		op.state = opLeft
	}
	op.mu.Unlock()
	switch {
	case state == opQueued:
		return 0, fmt.Errorf("the write was not sent: %w", ctx.Err())
	case b != nil:
		b.leave()
	}
	return answerAfterLeaving(op, ctx.Err())
}

// answerAfterLeaving is the answer to a caller that stopped waiting for its batch (its context
// ended with ctxErr). The batch may have answered meanwhile: its outcome stands, unless it is
// the batch's cancellation, which leaving causes (the last caller to leave cancels the batch).
// That is no answer: the write may have been stored, as with any answer that comes too late. (A
// cancellation taken for the answer was a 500 "did not complete: context canceled" to a client
// still waiting, when a frozen database should be a 503: TestDatabaseFaults/Freeze.)
func answerAfterLeaving(op *writeOp, ctxErr error) (int64, error) {
	select {
	case r := <-op.done:
		if !errors.Is(r.err, context.Canceled) {
			return r.rev, r.err
		}
	default:
	}
	return 0, fmt.Errorf("%w: %w", errAnswerLate, ctxErr)
}

func (w *Writer) loop() {
	for op := range w.ops {
		var ops []*writeOp
		ops = take(ops, op)
	drain:
		for len(ops) < w.maxBatch {
			select {
			case next := <-w.ops:
				ops = take(ops, next)
			default:
				break drain
			}
		}
		if len(ops) > 0 {
			w.commit(ops)
		}
	}
}

// take adds op to ops unless its caller has withdrawn it.
func take(ops []*writeOp, op *writeOp) []*writeOp {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.state == opWithdrawn {
		return ops
	}
	op.state = opTaken
	return append(ops, op)
}

// newBatch starts the context of ops, counting the callers still waiting.
func newBatch(ops []*writeOp) *batch {
	ctx, cancel := context.WithCancel(context.Background())
	b := &batch{ctx: ctx, cancel: cancel}
	b.waiting.Add(int64(len(ops)) + 1) // one for commit itself, until it has looked at every op
	for _, op := range ops {
		op.mu.Lock()
		op.batch = b
		left := op.state == opLeft
		op.mu.Unlock()
		if left {
			b.leave()
		}
	}
	b.leave()
	return b
}

// commit applies batch in one transaction, or one by one if that fails, and answers every op.
func (w *Writer) commit(batch []*writeOp) {
	b := newBatch(batch)
	defer b.cancel()
	defer func(start time.Time) { w.metrics.ObserveWriteBatch(len(batch), time.Since(start)) }(time.Now())
	ctx := b.ctx
	results, err := w.apply(ctx, batch)
	// A batch known not to have committed is retried one write at a time, so a write the
	// database rejects fails alone; one whose outcome is unknown is not written again.
	if err != nil && len(batch) > 1 && !errors.Is(err, errOutcomeUnknown) {
		for _, op := range batch {
			r, err := w.apply(ctx, []*writeOp{op})
			if err != nil {
				op.done <- writeResult{err: err}
				continue
			}
			op.done <- r[0]
		}
		return
	}
	for i, op := range batch {
		if err != nil {
			op.done <- writeResult{err: err}
			continue
		}
		op.done <- results[i]
	}
}

func (w *Writer) apply(ctx context.Context, batch []*writeOp) ([]writeResult, error) {
	results := make([]writeResult, len(batch))
	var xact int64
	err := db.Tx(ctx, w.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		lock, err := w.rev.lock(ctx, tx)
		if err != nil {
			return err
		}
		xact = lock.Xact
		cur := lock.Current
		if done, err := w.pipelined(ctx, tx, batch, cur, results); done || err != nil {
			return err
		}
		w.oneByOne.Add(1)
		rev := cur
		for i, op := range batch {
			next := rev + 1
			n, err := w.exec(ctx, tx, op, next)
			if err != nil {
				return fmt.Errorf("write %s: %w", op.key, err)
			}
			if n == 0 {
				results[i].err = preconditionError(op.kind)
				continue
			}
			results[i].rev = next
			rev = next
		}
		if rev == cur {
			return nil
		}
		return w.rev.advance(ctx, tx, rev)
	})
	if err != nil && xact != 0 && db.IsUnavailable(err) {
		// The connection broke; the results are those of the transaction if it committed.
		err = w.resolve(ctx, xact, err, batch, results)
	}
	return results, err
}

// errOutcomeUnknown marks a batch whose connection broke while committing and whose fate the
// database did not tell: it did not answer within resolveTimeout, or it restarted and the
// batch's writes were overwritten since (see confirm).
var errOutcomeUnknown = errors.New("the database connection broke while the write was committing, and the database " +
	"could not tell whether it was stored: read the object before writing it again")

// errAnswerLate marks a write whose caller stopped waiting (its request's deadline came) while
// its batch was with the database: it may have been stored.
var errAnswerLate = errors.New("the database did not answer in time, and the write may have been stored: " +
	"read the object before writing it again")

// resolve asks, until the database answers or resolveTimeout passes, whether transaction xact of
// batch, whose connection broke with cause, committed: nil when it did, cause when it did not.
// Each question is bounded too: a database that hangs rather than refuses would otherwise hold
// the writer.
func (w *Writer) resolve(ctx context.Context, xact int64, cause error, batch []*writeOp, results []writeResult) error {
	deadline := time.Now().Add(w.resolveTimeout)
	for ctx.Err() == nil {
		askCtx, cancel := context.WithDeadline(ctx, deadline)
		outcome, err := w.outcome(askCtx, xact, batch, results)
		cancel()
		if err == nil {
			switch outcome {
			case committed:
				return nil
			case aborted:
				return cause
			default:
				return fmt.Errorf("%w: %w", errOutcomeUnknown, cause)
			}
		}
		// The database did not answer, or the transaction is still in progress (its backend has
		// not noticed the broken connection yet).
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %w", errOutcomeUnknown, cause)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Every caller has stopped waiting: nobody needs the answer.
	return fmt.Errorf("%w: %w", errOutcomeUnknown, cause)
}

type batchOutcome int

const (
	unknownOutcome batchOutcome = iota
	committed
	aborted
)

var errInProgress = errors.New("the transaction is still in progress")

// outcome asks once what became of transaction xact of batch.
func (w *Writer) outcome(ctx context.Context, xact int64, batch []*writeOp, results []writeResult) (batchOutcome, error) {
	status, err := w.q.TransactionStatus(ctx, w.pool, xact)
	if err != nil {
		return unknownOutcome, err
	}
	switch status {
	case "committed":
		return w.confirm(ctx, batch, results)
	case "aborted":
		return aborted, nil
	case "":
		return unknownOutcome, nil // too old to know (never within the minutes a writer asks)
	}
	return unknownOutcome, errInProgress
}

// confirm checks that the transaction the database reports committed was the batch's.
// PostgreSQL hands out again, after a crash, the ids of transactions whose WAL it lost: the
// batch's id may then belong to a later transaction that committed (and took the same
// revisions, which were lost too). The batch's writes tell which: a batch is one transaction, so
// one write found as written (its key at its revision, with the object written) proves the batch
// committed, and one found missing (its key at an older revision, or another object at its
// revision) proves it did not. A write overwritten or deleted since proves neither; if none of
// the batch's writes tells, the outcome is unknown.
func (w *Writer) confirm(ctx context.Context, batch []*writeOp, results []writeResult) (batchOutcome, error) {
	for i, op := range batch {
		rev := results[i].rev
		if rev == 0 {
			continue // its precondition failed: not written either way
		}
		object, stored, err := readStored(ctx, w.q, w.pool, w.cluster, op.key)
		if err != nil {
			return unknownOutcome, err
		}
		switch {
		case object == nil, stored > rev:
			continue // absent or written since: never written, or deleted or overwritten since
		case stored < rev, op.kind == opDelete:
			return aborted, nil // not written at rev, or another write holds rev
		case sameJSON(object, op.data):
			return committed, nil
		default:
			return aborted, nil // another object at rev
		}
	}
	return unknownOutcome, nil
}

// sameJSON reports whether two JSON documents hold the same value (JSONB does not keep the
// bytes it was given).
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// pipelined applies batch in one round trip after cur, each write with the next revision, and
// reports whether it did: false (with everything since its savepoint rolled back) when a
// precondition failed, so the revisions after that write would have a gap. Consecutive creates
// go in one statement (CreateObjects): PostgreSQL prepares the insert once for all of them.
func (w *Writer) pipelined(ctx context.Context, tx pgx.Tx, batch []*writeOp, cur int64, results []writeResult) (bool, error) {
	p := db.NewPipeline()
	// want is the rows each queued statement must affect: one per write it carries.
	var want []int64
	for i := 0; i < len(batch); {
		rev := cur + int64(i) + 1
		creates := i
		for creates < len(batch) && batch[creates].kind == opCreate {
			creates++
		}
		if creates-i < 2 {
			if _, err := w.exec(ctx, p, batch[i], rev); err != nil {
				return false, err
			}
			want = append(want, 1)
			i++
			continue
		}
		run := batch[i:creates]
		params := sqlc.CreateObjectsParams{Cluster: w.cluster, FirstResourceVersion: rev, Keys: make([]string, len(run)), Objects: make([][]byte, len(run))}
		for j, op := range run {
			params.Keys[j], params.Objects[j] = op.key, op.data
		}
		if _, err := w.q.CreateObjects(ctx, p, params); err != nil {
			return false, err
		}
		want = append(want, int64(len(run)))
		i = creates
	}
	last := cur + int64(len(batch))
	if err := w.rev.advance(ctx, p, last); err != nil {
		return false, err
	}
	affected, err := p.Send(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("write batch: %w", err)
	}
	for i, n := range want {
		if affected[i] != n {
			// The notification goes too: it is sent at commit only if its subtransaction commits.
			return false, p.Rollback(ctx, tx)
		}
	}
	for i := range batch {
		results[i].rev = cur + int64(i) + 1
	}
	return true, nil
}

func (w *Writer) exec(ctx context.Context, tx db.DBTX, op *writeOp, rev int64) (int64, error) {
	switch op.kind {
	case opCreate:
		return w.q.CreateObject(ctx, tx, sqlc.CreateObjectParams{Cluster: w.cluster, Key: op.key, ResourceVersion: rev, Object: op.data})
	case opUpdate:
		return w.q.ReplaceObject(ctx, tx, sqlc.ReplaceObjectParams{
			Cluster: w.cluster, Key: op.key, ResourceVersion: rev, Object: op.data, ExpectedResourceVersion: op.expected,
		})
	case opDelete:
		return w.q.RemoveObject(ctx, tx, sqlc.RemoveObjectParams{Cluster: w.cluster, Key: op.key, ResourceVersion: rev, ExpectedResourceVersion: op.expected})
	}
	return 0, errors.New("unknown write")
}

func preconditionError(k opKind) error {
	if k == opCreate {
		return errKeyExists
	}
	return errConflict
}
