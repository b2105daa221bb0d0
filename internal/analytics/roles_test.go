package analytics_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// privateRelations are the server's own tables and views: the reader must not see them.
var privateRelations = []string{
	"reports", "changes", "revisions", "goose_db_version",
	"analytics_results", "analytics_reports", "analytics_outcomes", "analytics_flattened", "analytics_checkpoints", "analytics_refreshes", "analytics_cluster_history",
	"analytics_reader_clusters", "analytics_reader_scope", "analytics_cluster_summary",
	"analytics_namespace_summary", "analytics_policy_summary", "analytics_resource_summary",
}

var publishedViews = []string{
	"results", "reports", "cluster_summary", "namespace_summary", "policy_summary", "resource_summary",
	"cluster_history", "refresh_status",
}

// wantDenied runs stmt as the reader and wants SQLSTATE 42501 (insufficient_privilege), or
// 55000 (object_not_in_prerequisite_state) for writes to views that cannot be written at all.
func wantDenied(ctx context.Context, t *testing.T, e *env, stmt string) {
	t.Helper()
	asReader(ctx, t, e.pool, func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "55000") {
			t.Errorf("as reports_reader, %s: got %v, want permission denied (42501)", stmt, err)
		}
	})
}

// TestReaderRole: reports_reader is NOLOGIN, reads every published view, and can neither read
// the private tables nor write anything.
func TestReaderRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAll("staging", generated("staging"))
	e.projectAndRefresh()
	ctx := e.ctx

	var canLogin bool
	if err := e.pool.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'reports_reader'").Scan(&canLogin); err != nil {
		t.Fatalf("role reports_reader: %v", err)
	}
	if canLogin {
		t.Error("reports_reader can log in; it must be NOLOGIN")
	}
	asReader(ctx, t, e.pool, func(tx pgx.Tx) {
		for _, v := range publishedViews {
			if _, rows := queryRows(ctx, t, tx, "SELECT count(*) FROM reporting."+v); rows[0][0] == "0" {
				t.Errorf("reporting.%s is empty for the reader", v)
			}
		}
	})
	for _, rel := range privateRelations {
		wantDenied(ctx, t, e, "SELECT 1 FROM public."+rel+" LIMIT 1")
	}
	for _, stmt := range []string{
		"INSERT INTO reporting.results (cluster) VALUES ('x')",
		"UPDATE reporting.results SET severity = 'low'",
		"DELETE FROM reporting.results",
		"UPDATE reporting.reports SET name = 'x'",
		"DELETE FROM reporting.cluster_history",
		"INSERT INTO public.reports (cluster, key, resource_version, object) VALUES ('x', '/a/b/c', 1, '{}')",
		"UPDATE public.revisions SET current = current + 1",
		"DELETE FROM public.analytics_results",
		"INSERT INTO public.analytics_reader_clusters VALUES ('reports_reader', 'x')",
		"REFRESH MATERIALIZED VIEW public.analytics_cluster_summary",
		"CREATE TABLE reporting.mine (x int)",
		"CREATE VIEW reporting.mine AS SELECT 1",
		"CREATE TABLE public.mine (x int)",
		"DROP VIEW reporting.results",
		"TRUNCATE public.changes",
	} {
		wantDenied(ctx, t, e, stmt)
	}
}

// TestReaderClusterRestriction: a reader mapped to a cluster in analytics_reader_clusters sees
// only that cluster's rows in every view, even through a function of its own that would leak the
// rows it is given (the views are security barriers).
func TestReaderClusterRestriction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAll("prod", generated("prod"))
	e.createAll("staging", generated("staging"))
	e.projectAndRefresh()
	ctx := e.ctx

	// Roles are global to the server and tests run in parallel: a name of our own.
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "reports_test_team_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	for _, stmt := range []string{"CREATE ROLE " + ident + " NOLOGIN", "GRANT reports_reader TO " + ident} {
		if _, err := e.pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		if _, err := e.pool.Exec(context.Background(), "DROP ROLE "+ident); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	if _, err := e.pool.Exec(ctx, "INSERT INTO analytics_reader_clusters (role_name, cluster) VALUES ($1, 'staging')", role); err != nil {
		t.Fatal(err)
	}

	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident); err != nil {
		t.Fatal(err)
	}
	for _, v := range publishedViews {
		_, rows := queryRows(ctx, t, tx, "SELECT DISTINCT coalesce(cluster, '<all>') FROM reporting."+v+" ORDER BY 1")
		for _, r := range rows {
			if r[0] != "staging" && r[0] != "<all>" {
				t.Errorf("reporting.%s shows cluster %q to a reader limited to staging", v, r[0])
			}
		}
		if len(rows) == 0 {
			t.Errorf("reporting.%s shows nothing to a reader limited to staging", v)
		}
	}
	// A function the reader writes sees only the rows the barrier lets through.
	for _, stmt := range []string{
		"CREATE TEMP TABLE seen (cluster text)",
		`CREATE FUNCTION pg_temp.leak(c text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
		 $$ BEGIN INSERT INTO seen VALUES (c); RETURN true; END $$`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	queryRows(ctx, t, tx, "SELECT count(*) FROM reporting.results WHERE pg_temp.leak(cluster)")
	queryRows(ctx, t, tx, "SELECT count(*) FROM reporting.reports WHERE pg_temp.leak(cluster)")
	if _, rows := queryRows(ctx, t, tx, "SELECT DISTINCT cluster FROM seen ORDER BY 1"); len(rows) != 1 || rows[0][0] != "staging" {
		t.Errorf("a reader's function saw the rows of clusters %v; want only staging", rows)
	}

	// Unmapped readers (and superusers) see every cluster.
	asReader(ctx, t, e.pool, func(tx pgx.Tx) {
		if _, rows := queryRows(ctx, t, tx, "SELECT DISTINCT cluster FROM reporting.results ORDER BY 1"); len(rows) != 2 {
			t.Errorf("reports_reader without a mapping sees clusters %v, want prod and staging", rows)
		}
	})
}
