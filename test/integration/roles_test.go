package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

// TestLeastPrivilege installs the database as docs/operations.md ("Database roles") says: the
// roles script (deploy/sql/roles.sql) run by a superuser, the migrations run by the owner, and the
// server logged in as a role that owns nothing (`--migrate=false`). The server then does
// everything it does — writes, reads, watches, the analytics projection and summary refreshes —
// and its role can neither change the schema nor touch what is not its own.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := dbtest.EmptyURL(t) // a superuser's connection; the script makes its own database
	suffix := randomSuffix(t)
	owner, app, database := "rs_owner_"+suffix, "rs_app_"+suffix, "rs_roles_"+suffix
	t.Cleanup(func() { dropInstallation(t, admin, database, owner, app) })

	runRolesScript(t, admin, owner, app, database)
	ownerURL, appURL := asUser(t, admin, owner, database), asUser(t, admin, app, database)

	// The server refuses an unmigrated schema rather than serve on it.
	if err := db.CheckMigrated(ctx, appURL); !errors.Is(err, db.ErrNotMigrated) {
		t.Fatalf("server on an unmigrated database: %v, want ErrNotMigrated", err)
	}
	// The server's role cannot migrate.
	if err := db.Migrate(ctx, appURL); err == nil {
		t.Fatal("the server's role applied the migrations; it must own nothing")
	}
	if err := db.Migrate(ctx, ownerURL); err != nil {
		t.Fatalf("migrate as the owner: %v", err)
	}

	srv := startServerWith(t, appURL, func(o *server.Options, _ *server.Hooks) {
		o.Migrate = false
		o.Analytics.SummaryRefreshInterval = 100 * time.Millisecond
	})
	c := newRawClient(t, srv.Config)
	const ns = "roles"
	for _, k := range reports.All() {
		collection := collectionPath(k, ns)
		u := sample(k, ns, "r", map[string]string{"app": "web"}, "Pod", "fail")
		if r := c.do(http.MethodPost, collection, "application/json", encodeObject(t, u)); r.code != http.StatusCreated {
			t.Fatalf("create %s as the server's role: %d %s", k.Kind, r.code, r.body)
		}
		if r := c.do(http.MethodPatch, collection+"/r", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"app":"db"}}}`)); r.code != http.StatusOK {
			t.Errorf("patch %s: %d %s", k.Kind, r.code, r.body)
		}
		if r := c.do(http.MethodGet, collection+"?labelSelector=app%3Ddb&limit=10", "", nil); r.code != http.StatusOK {
			t.Errorf("list %s: %d %s", k.Kind, r.code, r.body)
		}
		if r := c.do(http.MethodGet, collection+"?watch=1&resourceVersion=1&timeoutSeconds=1", "", nil); r.code != http.StatusOK {
			t.Errorf("watch %s: %d %s", k.Kind, r.code, r.body)
		}
	}
	if r := c.do(http.MethodDelete, collectionPath(kindNamed(t, "PolicyReport"), ns)+"/r", "", nil); r.code != http.StatusOK {
		t.Errorf("delete: %d %s", r.code, r.body)
	}

	// The analytics ran as the server's role: the projection holds the final reports' results and
	// the summaries were refreshed (REFRESH and ANALYZE go through the owner's functions).
	ownerConn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ownerConn.Close(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		var results, summarized int
		err := ownerConn.QueryRow(ctx, `SELECT (SELECT count(*) FROM reporting.results WHERE NOT ephemeral),
			(SELECT coalesce(sum(results), 0) FROM reporting.cluster_summary)`).Scan(&results, &summarized)
		if err != nil {
			t.Fatal(err)
		}
		if results == 3 && summarized == 3 { // Report, ClusterReport, ClusterPolicyReport; the PolicyReport is gone
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("analytics as the server's role: %d results projected, %d summarized, want 3 and 3", results, summarized)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := c.do(http.MethodGet, "/apis/analytics.reports-server.io/v1alpha1/findings?limit=5", "", nil); r.code != http.StatusOK {
		t.Errorf("findings API as the server's role: %d %s", r.code, r.body)
	}

	// What the server's role may not do.
	appConn, err := pgx.Connect(ctx, appURL)
	if err != nil {
		t.Fatal(err)
	}
	defer appConn.Close(ctx)
	for _, stmt := range []string{
		"CREATE TABLE mine (x int)",
		"CREATE SCHEMA mine",
		"DROP TABLE changes",
		"ALTER TABLE reports ADD COLUMN x int",
		"CREATE INDEX ON reports (cluster)",
		"TRUNCATE reports",
		"INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)",
		"DELETE FROM goose_db_version",
		"REFRESH MATERIALIZED VIEW analytics_cluster_summary",
		"INSERT INTO analytics_reader_clusters VALUES ('x', 'y')",
		"CREATE OR REPLACE FUNCTION analytics_analyze() RETURNS void LANGUAGE sql AS 'SELECT 1'",
		"CREATE TEMP TABLE mine (x int)",
	} {
		_, err := appConn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "42P01") {
			t.Errorf("as the server's role, %s: %v, want permission denied (42501)", stmt, err)
		}
	}
	// The statistics keeper's function analyzes reports as the owner (what ANALYZE needs): after
	// more rows changed than autovacuum's threshold, a call by the server's role (or the server's
	// own keeper, whichever comes first) leaves the table analyzed.
	for i := range 60 {
		u := sample(kindNamed(t, "PolicyReport"), ns, fmt.Sprintf("bulk-%d", i), nil, "Pod", "pass")
		if r := c.do(http.MethodPost, collectionPath(kindNamed(t, "PolicyReport"), ns), "application/json", encodeObject(t, u)); r.code != http.StatusCreated {
			t.Fatalf("create: %d %s", r.code, r.body)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := appConn.Exec(ctx, "SELECT reports_analyze_if_stale()"); err != nil {
			t.Fatalf("reports_analyze_if_stale as the server's role: %v", err)
		}
		var analyzed bool
		if err := ownerConn.QueryRow(ctx, "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'reports'").Scan(&analyzed); err != nil {
			t.Fatal(err)
		}
		if analyzed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reports not analyzed within 30 s of 60 creates")
		}
	}
	// The refresh function does what it names and nothing else.
	if _, err := appConn.Exec(ctx, "SELECT analytics_refresh('reports; DROP TABLE reports')"); err == nil {
		t.Error("analytics_refresh accepted a name that is not a summary")
	}
}

// runRolesScript runs deploy/sql/roles.sql with psql as the administrator, twice: it must be
// safe to run again.
func runRolesScript(t *testing.T, admin, owner, app, database string) {
	t.Helper()
	psql := findPsql(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "sql", "roles.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		cmd := exec.Command(psql, "-X", "-q", "-d", admin, "-v", "owner="+owner, "-v", "app="+app, "-v", "database="+database, "-f", script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql -f deploy/sql/roles.sql: %v\n%s", err, out)
		}
	}
}

// findPsql is psql from PATH or beside the PostgreSQL server binaries (Debian keeps them apart).
func findPsql(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	for _, p := range matches {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatal("psql not found: install the PostgreSQL client (Debian: postgresql-client)")
	return ""
}

// asUser is a connection string for user to database on admin's server (trust authentication,
// as the test servers have it; the TLS and password test covers authentication).
func asUser(t *testing.T, admin, user, database string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, user, database)
}

// dropInstallation removes what the roles script made. reports_server and reports_reader stay:
// every database of the server shares them.
func dropInstallation(t *testing.T, admin, database string, roles ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("clean up: %v", err)
		return
	}
	defer conn.Close(ctx)
	stmts := []string{"DROP DATABASE IF EXISTS " + pgx.Identifier{database}.Sanitize() + " WITH (FORCE)"}
	for _, r := range roles {
		stmts = append(stmts, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Errorf("clean up: %s: %v", s, err)
		}
	}
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
