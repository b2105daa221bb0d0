package benchreport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/procstat"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestPostmaster finds the server of a test database, and its processes' CPU counts what a
// backend of it spends on a query.
func TestPostmaster(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	postmaster, err := Postmaster(ctx, url)
	if errors.Is(err, ErrNotVisible) {
		t.Skipf("DATABASE_URL's server: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if p, err := procstat.Lookup(postmaster); err != nil || p.Comm != "postgres" {
		t.Fatalf("Postmaster = %d, %+v (%v), want a postgres", postmaster, p, err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if p, err := procstat.Lookup(backend); err != nil || p.PPID != postmaster {
		t.Fatalf("backend %d = %+v (%v), want a child of the postmaster %d", backend, p, err, postmaster)
	}
	before, err := procstat.TreeCPUTime(postmaster)
	if err != nil {
		t.Fatal(err)
	}
	// Busy for a while on the server's side only, until the kernel has counted it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 2000000)"); err != nil {
			t.Fatal(err)
		}
		after, err := procstat.TreeCPUTime(postmaster)
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 100*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's processes used %v of CPU over 30 s of queries", after-before)
		}
	}
}

// TestRelations gives each table its heap, TOAST and indexes, and the whole at least their sum.
func TestRelations(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Values of 20 KB of random text: too large for a page, and not compressible enough to fit.
	if _, err := conn.Exec(ctx, `CREATE TABLE sized (id int PRIMARY KEY, v text);
		INSERT INTO sized SELECT i, (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 640) j)
		FROM generate_series(1, 50) i`); err != nil {
		t.Fatal(err)
	}
	sizes, err := Relations(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := sizes["public.sized"]
	if !ok {
		t.Fatalf("no public.sized among %d relations", len(sizes))
	}
	if r.Heap <= 0 || r.TOAST < 50*20_000 || r.Indexes <= 0 || r.Total < r.Heap+r.TOAST+r.Indexes {
		t.Errorf("public.sized: %+v, want a heap, 50 values of 20 KB in TOAST, an index, and a total of at least their sum", r)
	}
	if _, ok := sizes["public.reports"]; !ok {
		t.Errorf("no public.reports among the migrated database's relations")
	}
}
