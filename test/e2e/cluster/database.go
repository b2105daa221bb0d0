package cluster

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
)

// DatabaseSettings is what the server's start-up check (db.CheckSettings) finds wrong with the
// settings of the PostgreSQL at url: "ok", or its problems. Benchmarks report it with their
// results: a database without autovacuum is not the one a cluster runs.
func DatabaseSettings(ctx context.Context, url string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	problems, err := db.CheckSettings(ctx, conn)
	if err != nil {
		return "", err
	}
	if len(problems) == 0 {
		return "ok", nil
	}
	return strings.Join(problems, "; "), nil
}
