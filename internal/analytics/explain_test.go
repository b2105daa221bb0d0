package analytics_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/analytics"
)

// generateSQL is a fast stand-in for many API writes: it inserts n policy reports of `per`
// results each into cluster exactly as the storage write path stores them (object row, change
// log row, revision), in one statement. Results (pseudo-random): 70% pass, 20% fail, 5% warn,
// 3% error, 2% skip; 2% critical; 200 policies; 100 namespaces; every other result a Trivy-like
// finding with a score (uniform 0.0–9.9) and a fixed version.
const generateSQL = `
WITH base AS (
    INSERT INTO revisions AS v (cluster, current) VALUES ($1, 1 + $2::bigint)
    ON CONFLICT (cluster) DO UPDATE SET current = v.current + $2::bigint
    RETURNING current - $2::bigint AS current
),
gen AS (
    SELECT i,
           format('/wgpolicyk8s.io/policyreports/ns-%s/rep-%s', i % 100, i) AS key,
           jsonb_build_object(
               'apiVersion', 'wgpolicyk8s.io/v1alpha2', 'kind', 'PolicyReport',
               'metadata', jsonb_build_object('name', 'rep-' || i, 'namespace', 'ns-' || (i % 100),
                   'uid', md5(i::text), 'creationTimestamp', '2026-01-01T00:00:00Z'),
               'scope', jsonb_build_object('apiVersion', 'v1', 'kind', 'Pod', 'name', 'pod-' || i,
                   'namespace', 'ns-' || (i % 100), 'uid', md5('pod' || i)),
               'summary', jsonb_build_object('pass', 7, 'fail', 2, 'warn', 1),
               'results', (SELECT jsonb_agg(jsonb_build_object(
                   'policy', CASE WHEN j % 2 = 1 THEN 'CVE-2024-' || ((i * 7 + j) % 500) ELSE 'policy-' || ((i + j) % 200) END,
                   'rule', 'rule-' || j,
                   'result', CASE WHEN h.r < 70 THEN 'pass' WHEN h.r < 90 THEN 'fail'
                                  WHEN h.r < 95 THEN 'warn' WHEN h.r < 98 THEN 'error' ELSE 'skip' END,
                   'severity', CASE WHEN h.s < 2 THEN 'critical' WHEN h.s < 15 THEN 'high'
                                    WHEN h.s < 50 THEN 'medium' WHEN h.s < 85 THEN 'low' ELSE 'info' END,
                   'source', CASE WHEN j % 2 = 1 THEN 'Trivy' ELSE 'kyverno' END,
                   'scored', true,
                   'message', 'generated result ' || j,
                   'timestamp', jsonb_build_object('seconds', 1700000000 + i, 'nanos', 0),
                   'properties', CASE WHEN j % 2 = 1 THEN jsonb_build_object(
                       'score', to_char(h.c / 10.0, 'FM990.0'),
                       'nvd.v3_score', to_char(h.c / 10.0, 'FM990.0'),
                       'InstalledVersion', '1.0.' || j, 'FixedVersion', '1.1.' || j,
                       'VulnerabilityID', 'CVE-2024-' || ((i * 7 + j) % 500))
                       ELSE jsonb_build_object('category', 'Pod Security') END))
                   FROM generate_series(0, $3::int - 1) AS j
                   -- Pseudo-random percentiles of result, severity and score.
                   CROSS JOIN LATERAL (SELECT (hashint8(i * 16 + j)::bigint & 65535) % 100 AS r,
                                              (hashint8(i * 16 + j + 5)::bigint & 65535) % 100 AS s,
                                              (hashint8(i * 16 + j + 9)::bigint & 65535) % 100 AS c) AS h)) AS obj
    FROM generate_series(1, $2::bigint) AS i
),
ins AS (
    INSERT INTO reports (cluster, key, resource_version, object)
    SELECT $1, g.key, b.current + g.i, g.obj FROM gen g CROSS JOIN base b
    RETURNING key, resource_version
)
INSERT INTO changes (cluster, resource_version, key, event)
SELECT $1, resource_version, key, 'ADDED' FROM ins`

// TestFiltersUseIndexes: on 10^5 results, the filters docs/sql.md promises are indexed (severity,
// result, policy, namespace, resource kind/name, score) use an index when a reader queries
// reporting.results, and none reads all of analytics_results: the security-barrier view, the
// cluster filter and the joins behind the view do not get in the way.
func TestFiltersUseIndexes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	if _, err := e.pool.Exec(e.ctx, generateSQL, "big", 10_000, 10); err != nil {
		t.Fatal(err)
	}
	generated := time.Since(start)
	start = time.Now()
	if ran, err := analytics.New(e.pool, nil, analytics.Config{}).ProjectOnce(e.ctx); err != nil || !ran {
		t.Fatalf("project: ran=%v err=%v", ran, err)
	}
	projected := time.Since(start)
	var n int64
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM analytics_results").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 100_000 {
		t.Fatalf("%d results projected, want 100000", n)
	}
	t.Logf("10^4 reports generated in %v, 10^5 results projected in %v", generated, projected)
	// What autovacuum does after a bulk load; the test does not wait for it.
	if _, err := e.pool.Exec(e.ctx, "ANALYZE analytics_results, analytics_reports, analytics_outcomes"); err != nil {
		t.Fatal(err)
	}

	// Filters on the result's own columns (severity, result, score) use an index of
	// analytics_results; filters on its report row or outcome find those by an index and their
	// results through analytics_results_report_idx or _outcome_idx.
	cases := []struct {
		filter string
		query  string
		any    []string // any of these indexes serves it
	}{
		{"severity", "SELECT * FROM reporting.results WHERE severity = 'critical'", []string{"analytics_results_severity_idx"}},
		{"severity and result", "SELECT * FROM reporting.results WHERE severity = 'critical' AND result = 'fail'",
			[]string{"analytics_results_severity_idx"}},
		{"result", "SELECT * FROM reporting.results WHERE result = 'error'", []string{"analytics_results_severity_idx"}},
		{"policy", "SELECT * FROM reporting.results WHERE policy = 'policy-7'", []string{"analytics_outcomes_policy_idx"}},
		{"namespace", "SELECT * FROM reporting.results WHERE namespace = 'ns-5'", []string{"analytics_reports_namespace_idx"}},
		{"resource kind and name", "SELECT * FROM reporting.results WHERE resource_kind = 'Pod' AND resource_name = 'pod-5'",
			[]string{"analytics_reports_resource_idx"}},
		{"resource name", "SELECT * FROM reporting.results WHERE resource_name = 'pod-5'", []string{"analytics_reports_resource_idx"}},
		{"score", "SELECT * FROM reporting.results WHERE score >= 9.5", []string{"analytics_results_score_idx"}},
		{"critical findings per namespace",
			"SELECT namespace, count(*) FROM reporting.results WHERE severity = 'critical' AND finding GROUP BY namespace",
			[]string{"analytics_results_severity_idx"}},
	}
	asReader(e.ctx, t, e.pool, func(tx pgx.Tx) {
		for _, c := range cases {
			var plan string
			if err := tx.QueryRow(e.ctx, "EXPLAIN (FORMAT JSON) "+c.query).Scan(&plan); err != nil {
				t.Fatalf("%s: %v", c.query, err)
			}
			used := indexNames(t, plan)
			if !slices.ContainsFunc(c.any, func(ix string) bool { return slices.Contains(used, ix) }) {
				t.Errorf("filter on %s does not use %v; plan uses indexes %v:\n%s", c.filter, c.any, used, plan)
			}
			if slices.Contains(seqScans(t, plan), "analytics_results") {
				t.Errorf("filter on %s reads all of analytics_results:\n%s", c.filter, plan)
			}
		}
	})
}

// TestProjectionFunctionsInlined: the SQL functions the projector's flattening calls for every
// report and result are inlined into its statement, not run as function calls of their own (an
// executor started and ended per call, about an eighth of PostgreSQL's CPU under a stream of
// creates until migration 00017). PostgreSQL inlines a SQL function only when its body is no more
// volatile than it is declared: a function declared IMMUTABLE that calls a STABLE one (as
// jsonb_build_array is) stays a call, which EXPLAIN VERBOSE shows by its name.
func TestProjectionFunctionsInlined(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct{ function, query string }{
		{"analytics_outcome_digest", "SELECT analytics_outcome_digest(v.t, v.t, v.t, v.t, v.b, v.t, v.j) FROM (VALUES ('x', true, '{}'::jsonb)) AS v(t, b, j)"},
		{"analytics_subject", "SELECT analytics_subject(v.t, v.t, v.t, v.t, v.t, v.t, v.j) FROM (VALUES ('x', '[]'::jsonb)) AS v(t, j)"},
		{"analytics_code", "SELECT analytics_code(v.t) FROM (VALUES ('fail')) AS v(t)"},
		{"analytics_key_namespace", "SELECT analytics_key_namespace(v.t) FROM (VALUES ('/g/r/ns/n')) AS v(t)"},
		{"analytics_number", "SELECT analytics_number(v.j->>'score') FROM (VALUES ('{}'::jsonb)) AS v(j)"},
		{"analytics_flatten", "SELECT f.* FROM reports r CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f"},
	}
	for _, c := range cases {
		rows, err := e.pool.Query(e.ctx, "EXPLAIN (VERBOSE, FORMAT TEXT) "+c.query)
		if err != nil {
			t.Fatalf("%s: %v", c.function, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", c.function, err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, c.function+"(") {
			t.Errorf("%s is not inlined:\n%s", c.function, plan)
		}
	}
}

// indexNames lists the "Index Name" of every node of a JSON plan.
func indexNames(t *testing.T, plan string) []string {
	t.Helper()
	return planValues(t, plan, "Index Name")
}

// seqScans lists the relations a JSON plan reads with a sequential scan.
func seqScans(t *testing.T, plan string) []string {
	t.Helper()
	var out []string
	walkPlan(t, plan, func(node map[string]any) {
		if node["Node Type"] == "Seq Scan" {
			out = append(out, fmt.Sprint(node["Relation Name"]))
		}
	})
	return out
}

// planValues lists the string values of key in every node of a JSON plan.
func planValues(t *testing.T, plan, key string) []string {
	t.Helper()
	var out []string
	walkPlan(t, plan, func(node map[string]any) {
		if v, ok := node[key].(string); ok {
			out = append(out, v)
		}
	})
	return out
}

// walkPlan calls fn with every node of a JSON plan.
func walkPlan(t *testing.T, plan string, fn func(map[string]any)) {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(plan), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			fn(x)
			for _, v := range x {
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(doc)
}
