// Package db is the only hand-written code that talks to the sqlc-generated package: it opens
// pools, runs migrations, maps driver errors, and wraps transactions. Everything above it uses
// Queries through these helpers and never builds SQL strings.
package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Queries is the generated query set. It is stateless: each method takes the DBTX to run on,
// so the same call works on the pool or inside a transaction.
type Queries = sqlc.Queries

// DBTX is what generated queries run on: a pool, a connection or a transaction.
type DBTX = sqlc.DBTX

// New returns the query set.
func New() *Queries { return sqlc.New() }

// ErrNotFound is returned in place of pgx.ErrNoRows.
var ErrNotFound = errors.New("not found")

// ParseConfig parses a PostgreSQL URL or keyword/value string into a pool config with the
// settings the server relies on.
func ParseConfig(databaseURL string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "reports-server"
	}
	// No JIT compilation of the server's statements (unless the URL asks for it). PostgreSQL
	// compiles a statement whose estimated cost passes jit_above_cost (100,000): the projector's
	// batches of a few hundred reports and more, its rebuilds. Compiling one takes 0.1–1.5 s,
	// more than it ever saved here: a rebuild of 1,500 reports took 2.5 s with JIT and 0.9 s
	// without, a batch of 1,000 changed reports 0.62 s and 0.55 s (BenchmarkProjectionJIT,
	// docs/benchmarks.md). Analysts' own sessions keep the server's setting.
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	return cfg, nil
}

// Open connects a pool and checks the connection.
func Open(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return OpenTraced(ctx, databaseURL, nil)
}

// OpenTraced is Open with a tracer that, when not nil, sees every query of the pool's
// connections (metrics.Metrics.QueryTracer).
func OpenTraced(ctx context.Context, databaseURL string, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// NoRows maps pgx.ErrNoRows to ErrNotFound and leaves other errors alone.
func NoRows(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// Tx runs fn in a transaction, committing when it returns nil and rolling back otherwise.
func Tx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, opts, fn)
}

// IsUnavailable reports whether err means the database could not be reached or is shutting down,
// as opposed to a problem with the statement: callers turn it into 503 with a retry hint.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources
			"57": // operator intervention (admin shutdown, cannot connect now)
			return true
		}
		return pgErr.Code == "40001" || pgErr.Code == "40P01" // serialization failure, deadlock: retryable
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	// The connection broke under a statement (the server was killed or restarted, a network
	// reset): the database is away, not the request wrong.
	var netErr *net.OpError
	if errors.As(err, &netErr) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// Ping reports whether the database answers. It tries a pooled connection first and, when that
// fails, a new one: a pooled connection may have died while idle (its backend was terminated),
// which says nothing about the database, and readiness must not flap for it.
func Ping(ctx context.Context, pool *pgxpool.Pool) error {
	err := pool.Ping(ctx)
	if err == nil {
		return nil
	}
	conn, cerr := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// CheckSettings returns what is wrong with the PostgreSQL server's settings for this storage, as
// messages for the operator (none when nothing is): today, autovacuum being off. The server runs
// either way; see the query VacuumSettings for what it costs.
func CheckSettings(ctx context.Context, conn sqlc.DBTX) ([]string, error) {
	row, err := New().VacuumSettings(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("read the server's vacuum settings: %w", err)
	}
	var problems []string
	if !row.Autovacuum || !row.TrackCounts {
		problems = append(problems, fmt.Sprintf("PostgreSQL runs with autovacuum=%s and track_counts=%s: "+
			"nothing removes the dead row versions every update and delete of reports leaves behind, so reads and "+
			"writes slow down and the database's CPU grows as the server runs; turn both on (docs/operations.md, \"The database\")",
			onOff(row.Autovacuum), onOff(row.TrackCounts)))
	}
	return problems, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
