package integration

import (
	"context"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/pglocal"
)

// startPrivatePostgres starts a PostgreSQL of the test's own in dataDir (for tests that change
// the server itself: replication, TLS, faults), stopped when the test ends.
func startPrivatePostgres(ctx context.Context, t *testing.T, dataDir string) *pglocal.Server {
	t.Helper()
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("start private PostgreSQL in %s: %v", dataDir, err)
	}
	t.Cleanup(func() { stopPG(pg) })
	return pg
}

// migratedDatabase creates database name on pg, migrates it and returns its URL.
func migratedDatabase(ctx context.Context, t *testing.T, pg *pglocal.Server, name string) string {
	t.Helper()
	if err := pg.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	url := pg.URL(name)
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate database %s: %v", name, err)
	}
	return url
}

// stopPG stops pg, giving it a minute.
func stopPG(pg *pglocal.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = pg.Stop(ctx)
}
