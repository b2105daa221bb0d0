package pgstorage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// statisticsLockClass is the advisory lock reports_analyze_if_stale takes ("rpst", 00016).
const statisticsLockClass int32 = 0x72707374

// TestStatisticsKeeper: a table autovacuum has not analyzed yet (a bulk load; a server without
// autovacuum) is analyzed by the keeper once enough rows changed, after which a 1% label
// selection is planned on the labels index; a fresh table is left alone; and while another
// process analyzes, a pass returns at once.
func TestStatisticsKeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := db.Open(ctx, dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keeper := pgstorage.NewStatisticsKeeper(pool, 0, quietLog)

	// 3,000 reports, one in a hundred labelled rare (the label list of make bench-compare).
	if _, err := pool.Exec(ctx, `
INSERT INTO reports (cluster, key, resource_version, object)
SELECT 'stats', '/wgpolicyk8s.io/policyreports/ns/r' || lpad(i::text, 5, '0'), i + 1,
       jsonb_build_object('apiVersion', 'wgpolicyk8s.io/v1alpha2', 'kind', 'PolicyReport',
           'metadata', jsonb_build_object('name', 'r' || lpad(i::text, 5, '0'), 'namespace', 'ns',
               'labels', CASE WHEN i % 100 = 0 THEN '{"bench/rare": "yes"}'::jsonb ELSE '{"app": "web"}'::jsonb END),
           'results', jsonb_build_array(jsonb_build_object('policy', 'p', 'message', repeat(md5(i::text), 20))))
FROM generate_series(1, 3000) i`); err != nil {
		t.Fatal(err)
	}

	// Before: planned without statistics, as a walk of the namespace's keys with a filter.
	t.Logf("plan before the keeper's first pass:\n%s", labelPlan(t, pool))
	// The inserting backend reports its counts to the statistics system within about a second.
	passUntilAnalyzed(t, keeper, 3000)
	var labelStats bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stats WHERE tablename = 'reports' AND attname = 'labels')`).Scan(&labelStats); err != nil {
		t.Fatal(err)
	}
	if !labelStats {
		t.Error("no statistics of labels after the keeper's ANALYZE")
	}
	if plan := labelPlan(t, pool); !strings.Contains(plan, "reports_labels_idx") {
		t.Errorf("a 1%% label selection after the keeper's ANALYZE does not use the labels index:\n%s", plan)
	}

	// Fresh statistics: nothing to do.
	if changed, err := keeper.Pass(ctx); err != nil || changed != 0 {
		t.Fatalf("pass on fresh statistics: %d, %v; want 0", changed, err)
	}

	// Another process analyzing (holding the keeper's lock): a pass returns at once, and the
	// next one after it analyzes the rows changed meanwhile.
	conn, err := pgx.Connect(ctx, pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, 0)", statisticsLockClass); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE reports SET object = object || '{"touched": true}' WHERE cluster = 'stats' AND resource_version <= 1001`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the counts reach the statistics system
	done := make(chan struct{})
	go func() {
		defer close(done)
		if changed, err := keeper.Pass(ctx); err != nil || changed != 0 {
			t.Errorf("pass while another process analyzes: %d, %v; want 0 at once", changed, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a pass waited for another process's lock")
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, 0)", statisticsLockClass); err != nil {
		t.Fatal(err)
	}
	passUntilAnalyzed(t, keeper, 1000)
}

// passUntilAnalyzed runs passes until one analyzes, and checks it counted at least want changed
// rows.
func passUntilAnalyzed(t *testing.T, keeper *pgstorage.StatisticsKeeper, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		changed, err := keeper.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if changed > 0 {
			if changed < want {
				t.Errorf("analyzed after %d changed rows, want at least %d", changed, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pass analyzed within 30 s of %d changed rows", want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// labelPlan is the plan of a 1% label selection's page in a namespace, as ListObjects filters
// and orders it.
func labelPlan(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `EXPLAIN SELECT key FROM reports
		WHERE cluster = 'stats' AND key >= '/wgpolicyk8s.io/policyreports/ns/' AND key < '/wgpolicyk8s.io/policyreports/ns0'
		  AND labels @> '{"bench/rare": "yes"}' ORDER BY key LIMIT 501`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
