package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errNotExec: only statements whose result is a command tag can be pipelined.
var errNotExec = errors.New("pipeline: only :exec and :execrows queries can be queued")

// Pipeline queues the statements that generated :exec and :execrows queries would run, with
// their generated SQL and argument order, to send them to PostgreSQL in one round trip. Pass it
// as the DBTX of such a query: the query's own result is meaningless (zero rows); Send returns
// the real ones, in queue order. It starts with a savepoint, so that Rollback can undo what it
// did and keep the transaction, and the locks it holds, going.
type Pipeline struct {
	batch pgx.Batch
}

const pipelineSavepoint = "pipeline"

// NewPipeline returns an empty pipeline.
func NewPipeline() *Pipeline {
	p := &Pipeline{}
	p.batch.Queue("SAVEPOINT " + pipelineSavepoint)
	return p
}

var _ DBTX = (*Pipeline)(nil)

// Exec queues sql.
func (p *Pipeline) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	p.batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Query refuses: rows cannot be read before the pipeline is sent.
func (p *Pipeline) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errNotExec
}

// QueryRow refuses: a row cannot be read before the pipeline is sent.
func (p *Pipeline) QueryRow(context.Context, string, ...any) pgx.Row { return errRow{} }

type errRow struct{}

func (errRow) Scan(...any) error { return errNotExec }

// Send runs the queued statements on tx in one round trip and returns the rows each affected,
// in queue order. The first failing statement aborts the transaction, as it would one statement
// at a time.
func (p *Pipeline) Send(ctx context.Context, tx pgx.Tx) ([]int64, error) {
	br := tx.SendBatch(ctx, &p.batch)
	affected := make([]int64, p.batch.Len())
	for i := range affected {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("statement %d of %d: %w", i, len(affected)-1, err)
		}
		affected[i] = tag.RowsAffected()
	}
	return affected[1:], br.Close() // without the savepoint's
}

// Rollback undoes every statement of a sent pipeline; the transaction goes on.
func (p *Pipeline) Rollback(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+pipelineSavepoint); err != nil {
		return fmt.Errorf("roll back the pipeline: %w", err)
	}
	return nil
}
