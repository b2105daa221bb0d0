package db_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestMigrationsKeepReports rolls the newest migration back and applies it again on a database
// holding reports: every report stays, with its object unchanged, and the generated columns the
// migration rebuilds are recomputed from the objects.
func TestMigrationsKeepReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := dbtest.EmptyURL(t)
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m, err := db.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	const reports = 500
	if _, err := pool.Exec(ctx, `
		INSERT INTO reports (cluster, key, resource_version, object)
		SELECT 'c', '/wgpolicyk8s.io/policyreports/ns/r' || i, i,
		       jsonb_build_object('apiVersion', 'wgpolicyk8s.io/v1alpha2', 'kind', 'PolicyReport',
		           'metadata', jsonb_build_object('name', 'r' || i, 'namespace', 'ns'),
		           'summary', jsonb_build_object('pass', i, 'fail', i % 7))
		FROM generate_series(1, $1) AS i`, reports); err != nil {
		t.Fatal(err)
	}
	// A count only the newest migration can store (beyond 2^31-1) would make the rollback fail
	// by design; it is checked after the final up.
	var reference string // digest of the objects before any step
	check := func(step string) {
		t.Helper()
		var n, pass, fail int64
		var digest string
		if err := pool.QueryRow(ctx, `SELECT count(*), sum(summary_pass), sum(summary_fail), md5(string_agg(object::text, '' ORDER BY key))
			FROM reports WHERE cluster = 'c'`).Scan(&n, &pass, &fail, &digest); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		var wantFail int64
		for i := 1; i <= reports; i++ {
			wantFail += int64(i % 7)
		}
		if n != reports || pass != reports*(reports+1)/2 || fail != wantFail {
			t.Errorf("%s: %d reports, pass %d, fail %d; want %d, %d, %d", step, n, pass, fail, reports, reports*(reports+1)/2, wantFail)
		}
		if reference == "" {
			reference = digest
		} else if digest != reference {
			t.Errorf("%s: stored objects changed", step)
		}
	}
	check("before")
	if err := m.Down(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	check("after down")
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	check("after up")

	big := fmt.Sprintf(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"big","namespace":"ns"},"summary":{"pass":%d}}`, int64(1)<<40)
	if _, err := pool.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ('c', '/wgpolicyk8s.io/policyreports/ns/big', 9999, $1)`, big); err != nil {
		t.Fatalf("a summary count beyond 2^31-1: %v", err)
	}
	var pass int64
	if err := pool.QueryRow(ctx, `SELECT summary_pass FROM reports WHERE key = '/wgpolicyk8s.io/policyreports/ns/big'`).Scan(&pass); err != nil || pass != 2147483647 {
		t.Errorf("summary_pass of a count beyond 2^31-1 = %d (%v), want it clamped to 2147483647", pass, err)
	}
}
