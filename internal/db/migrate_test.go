package db_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

var coreTables = []string{"reports", "changes", "revisions"}

// TestMigrationsUpDownUp applies every migration, rolls them back one at a time down to zero,
// applies them again, and rolls back with DownTo(0): each step leaves the schema it should.
func TestMigrationsUpDownUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, m := emptyDatabase(t)

	total := len(status(ctx, t, m))
	if total == 0 {
		t.Fatal("no migrations embedded")
	}
	wantApplied(ctx, t, m, 0)
	empty := schema(ctx, t, pool)

	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	wantApplied(ctx, t, m, total)
	wantTables(ctx, t, pool, true)
	full := schema(ctx, t, pool)
	if len(full) <= len(empty) {
		t.Fatalf("schema description did not see the migrated objects: %d lines before, %d after", len(empty), len(full))
	}

	// Down one migration at a time: each one's Down undoes exactly what its Up did, checked by
	// re-applying it and comparing with the fully migrated schema at the end.
	for applied := total - 1; applied >= 0; applied-- {
		if err := m.Down(ctx); err != nil {
			t.Fatalf("down to %d applied: %v", applied, err)
		}
		wantApplied(ctx, t, m, applied)
	}
	wantTables(ctx, t, pool, false)
	if got := schema(ctx, t, pool); !slices.Equal(got, empty) {
		t.Fatalf("down to zero left objects behind:\n%s", diff(empty, got))
	}

	if err := m.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	wantApplied(ctx, t, m, total)
	wantTables(ctx, t, pool, true)
	if got := schema(ctx, t, pool); !slices.Equal(got, full) {
		t.Fatalf("schema after down and up differs from the first up:\n%s", diff(full, got))
	}

	if err := m.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	wantApplied(ctx, t, m, 0)
	wantTables(ctx, t, pool, false)
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up after DownTo(0): %v", err)
	}
	wantTables(ctx, t, pool, true)
}

// TestMigrateIsIdempotent: db.Migrate on an up-to-date database changes nothing.
func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	pool, url := dbtest.Pool(t)
	before := schema(ctx, t, pool)
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if got := schema(ctx, t, pool); !slices.Equal(got, before) {
		t.Fatalf("second migrate changed the schema:\n%s", diff(before, got))
	}
}

// emptyDatabase returns a pool on a new database without any migration and a migrator of it,
// both closed when t ends.
func emptyDatabase(t *testing.T) (*pgxpool.Pool, *db.Migrator) {
	t.Helper()
	url := dbtest.EmptyURL(t)
	pool, err := db.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := db.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return pool, m
}

func status(ctx context.Context, t *testing.T, m *db.Migrator) []db.MigrationStatus {
	t.Helper()
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// wantApplied checks that exactly the first n migrations are applied.
func wantApplied(ctx context.Context, t *testing.T, m *db.Migrator, n int) {
	t.Helper()
	for i, s := range status(ctx, t, m) {
		if s.Applied != (i < n) {
			t.Fatalf("migration %d (%s): applied=%v, want %v", s.Version, s.Path, s.Applied, i < n)
		}
	}
}

func wantTables(ctx context.Context, t *testing.T, pool *pgxpool.Pool, exist bool) {
	t.Helper()
	for _, table := range coreTables {
		var ok bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok != exist {
			t.Fatalf("table %s exists=%v, want %v", table, ok, exist)
		}
	}
}

// schema describes every object the migrations own: relations, columns, constraints, indexes,
// functions, views and types in non-system schemas, leaving out goose's bookkeeping table.
func schema(ctx context.Context, t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	const q = `
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
)
SELECT 'schema ' || nspname FROM ns
UNION ALL
SELECT format('relation %s.%s kind=%s', ns.nspname, c.relname, c.relkind)
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
WHERE c.relname NOT LIKE 'goose_db_version%'
UNION ALL
SELECT format('column %s.%s.%s %s notnull=%s default=%s generated=%s collation=%s', ns.nspname, c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attcollation)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname NOT LIKE 'goose_db_version%'
UNION ALL
SELECT format('constraint %s.%s %s', ns.nspname, co.conname, pg_get_constraintdef(co.oid))
FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
WHERE co.conrelid NOT IN (SELECT oid FROM pg_class WHERE relname = 'goose_db_version')
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
WHERE c.relname <> 'goose_db_version'
UNION ALL
SELECT 'view ' || ns.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid)
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT format('type %s.%s', ns.nspname, ty.typname)
FROM pg_type ty JOIN ns ON ns.oid = ty.typnamespace
WHERE ty.typtype IN ('e', 'd', 'c', 'r', 'm') AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ty.typrelid AND c.relkind <> 'c')
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(tg.oid) FROM pg_trigger tg WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
ORDER BY 1`
	return textRows(ctx, t, pool, "describe schema", q)
}

// textRows runs q, whose rows are one text column, and returns them; what names the query in a
// failure.
func textRows(ctx context.Context, t *testing.T, pool *pgxpool.Pool, what, q string) []string {
	t.Helper()
	rows, err := pool.Query(ctx, q)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return out
}

func diff(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("- " + w + "\n")
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("+ " + g + "\n")
		}
	}
	return b.String()
}

// TestConcurrentMigrate: replicas that start together all run Migrate on an empty database; the
// advisory lock lets one apply the migrations and the others find nothing to do.
func TestConcurrentMigrate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := dbtest.EmptyURL(t)
	const replicas = 4
	errs := make(chan error, replicas)
	for range replicas {
		go func() { errs <- db.Migrate(ctx, url) }()
	}
	for range replicas {
		if err := <-errs; err != nil {
			t.Errorf("replica migrate: %v", err)
		}
	}
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	wantTables(ctx, t, pool, true)
}
