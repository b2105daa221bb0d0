package db

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// PlanEachCall runs tx's queries as unnamed prepared statements, so PostgreSQL plans each
// execution for its parameter values instead of settling on a generic plan after a few runs
// (pgx still caches the statements' descriptions: this costs a parse and a plan, not a round
// trip). For queries whose best plan depends on the values, e.g. how many rows a selector
// matches. Only Query and QueryRow are affected; Exec runs as usual.
func PlanEachCall(tx pgx.Tx) DBTX { return planEachCall{tx} }

type planEachCall struct{ pgx.Tx }

func (c planEachCall) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return c.Tx.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
}

func (c planEachCall) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return c.Tx.QueryRow(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
}
