package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/analytics"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// TestMigrationsKeepReports rolls the newest migration back and applies it again on a database
// holding reports, then every migration back to the first and all of them again: every report
// stays, with its object unchanged, and the generated columns (the metadata column of 00009 and
// 00012 among them) come back exactly as they were.
func TestMigrationsKeepReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, m := emptyDatabase(t)
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}

	const reports = 500
	if _, err := pool.Exec(ctx, `
		INSERT INTO reports (cluster, key, resource_version, object)
		SELECT 'c', '/wgpolicyk8s.io/policyreports/ns/r' || i, i,
		       jsonb_build_object('apiVersion', 'wgpolicyk8s.io/v1alpha2', 'kind', 'PolicyReport',
		           'metadata', jsonb_build_object('name', 'r' || i, 'namespace', 'ns', 'uid', 'u' || i,
		               'creationTimestamp', '2026-12-06T10:00:00Z', 'labels', jsonb_build_object('n', i::text)),
		           'scope', jsonb_build_object('apiVersion', 'v1', 'kind', 'Pod', 'namespace', 'ns', 'name', 'p' || i),
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
	// Every column of every report, the generated ones (the metadata column among them) included.
	rowsDigest := func(step string) string {
		t.Helper()
		var digest string
		if err := pool.QueryRow(ctx, `SELECT md5(string_agg(row_to_json(r)::text, '' ORDER BY key)) FROM reports r`).Scan(&digest); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return digest
	}
	rows := rowsDigest("before")
	check("before")
	if err := m.Down(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	check("after down")
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	check("after up")
	// Every migration back to the first (which made the table), then all of them again: each
	// keeps the reports, and the columns they rebuild come back as they were.
	if err := m.DownTo(ctx, 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	check("after down to 1")
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up from 1: %v", err)
	}
	check("after up from 1")
	if got := rowsDigest("after up from 1"); got != rows {
		t.Errorf("the reports' rows (generated columns included) changed after every migration down and up")
	}
	var stale int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM reports WHERE metadata::text IS DISTINCT FROM (object->'metadata')::json::text`).Scan(&stale); err != nil || stale != 0 {
		t.Errorf("%d reports' metadata column differs from their objects' metadata (%v)", stale, err)
	}

	big := fmt.Sprintf(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"big","namespace":"ns"},"summary":{"pass":%d}}`, int64(1)<<40)
	if _, err := pool.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ('c', '/wgpolicyk8s.io/policyreports/ns/big', 9999, $1)`, big); err != nil {
		t.Fatalf("a summary count beyond 2^31-1: %v", err)
	}
	var pass int64
	if err := pool.QueryRow(ctx, `SELECT summary_pass FROM reports WHERE key = '/wgpolicyk8s.io/policyreports/ns/big'`).Scan(&pass); err != nil || pass != 2147483647 {
		t.Errorf("summary_pass of a count beyond 2^31-1 = %d (%v), want it clamped to 2147483647", pass, err)
	}
}

// TestLeanChangeLogMigration writes a history (creates, updates, deletes, a re-creation) through
// the storage's own statements, then rolls back 00008_lean_changes, which puts the written state
// back into every change row, and applies it again: the change log the watchers read (ReadChanges)
// is the same before, in between (as stored) and after, event for event.
func TestLeanChangeLogMigration(t *testing.T) {
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
	q := sqlc.New()
	const cluster = "c"
	if err := q.EnsureCluster(ctx, pool, cluster); err != nil {
		t.Fatal(err)
	}
	rv := int64(0)
	current := map[string]int64{}    // key -> resource version of its current row
	stateOf := map[string][]byte{}   // key -> its current object
	written := map[int64][2][]byte{} // resource version -> the object a write wrote and the one it replaced
	record := func(key string, obj []byte) {
		written[rv] = [2][]byte{obj, stateOf[key]}
		if obj == nil {
			delete(stateOf, key)
		} else {
			stateOf[key] = obj
		}
	}
	object := func(name string, gen int) []byte {
		return fmt.Appendf(nil, `{"kind":"PolicyReport","metadata":{"name":%q,"labels":{"gen":"%d"}},"results":[{"policy":"p","result":"pass","message":"version %d"}]}`, name, gen, gen)
	}
	write := func(what string, n int64, err error) {
		t.Helper()
		if err != nil || n != 1 {
			t.Fatalf("%s: %d rows, %v", what, n, err)
		}
	}
	for i := range 40 {
		key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
		rv++
		n, err := q.CreateObject(ctx, pool, sqlc.CreateObjectParams{Cluster: cluster, ResourceVersion: rv, Key: key, Object: object(key, 0)})
		write("create "+key, n, err)
		record(key, object(key, 0))
		current[key] = rv
	}
	for gen := 1; gen <= 2; gen++ {
		for i := 0; i < 40; i += 2 {
			key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
			rv++
			n, err := q.ReplaceObject(ctx, pool, sqlc.ReplaceObjectParams{Cluster: cluster, ResourceVersion: rv,
				ExpectedResourceVersion: current[key], Object: object(key, gen), Key: key})
			write("update "+key, n, err)
			record(key, object(key, gen))
			current[key] = rv
		}
	}
	for i := 0; i < 40; i += 4 {
		key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
		rv++
		n, err := q.RemoveObject(ctx, pool, sqlc.RemoveObjectParams{Cluster: cluster, ResourceVersion: rv,
			ExpectedResourceVersion: current[key], Key: key})
		write("delete "+key, n, err)
		record(key, nil)
		if i%8 == 0 {
			rv++
			n, err := q.CreateObject(ctx, pool, sqlc.CreateObjectParams{Cluster: cluster, ResourceVersion: rv, Key: key, Object: object(key, 9)})
			write("re-create "+key, n, err)
			record(key, object(key, 9))
		}
	}
	if err := q.SetRevision(ctx, pool, sqlc.SetRevisionParams{Current: rv, Cluster: cluster}); err != nil {
		t.Fatal(err)
	}

	type event struct{ object, prev string }
	asText := func(b []byte) string {
		if b == nil {
			return "<nil>"
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	readLog := func(step string) map[int64]event {
		t.Helper()
		rows, err := q.ReadChanges(ctx, pool, sqlc.ReadChangesParams{AfterRevision: 0, RowLimit: 10_000, Cluster: cluster})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		out := map[int64]event{}
		for _, r := range rows {
			out[r.ResourceVersion] = event{asText(r.Object), asText(r.PrevObject)}
		}
		if int64(len(out)) != rv {
			t.Fatalf("%s: %d changes, want %d", step, len(out), rv)
		}
		return out
	}
	before := readLog("before")
	for r, w := range written {
		if want := (event{asText(w[0]), asText(w[1])}); before[r] != want {
			t.Errorf("change %d = %+v, want what the write wrote and replaced: %+v", r, before[r], want)
		}
	}

	m, err := db.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.DownTo(ctx, 7); err != nil {
		t.Fatalf("down: %v", err)
	}
	stored := map[int64]event{}
	rows, err := pool.Query(ctx, `SELECT resource_version, object, prev_object FROM changes WHERE cluster = $1`, cluster)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r int64
		var obj, prev []byte
		if err := rows.Scan(&r, &obj, &prev); err != nil {
			t.Fatal(err)
		}
		stored[r] = event{asText(obj), asText(prev)}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	after := readLog("after")
	for r, want := range before {
		if got := stored[r]; got != want {
			t.Errorf("change %d as stored after the rollback = %+v, want %+v", r, got, want)
		}
		if got := after[r]; got != want {
			t.Errorf("change %d after down and up = %+v, want %+v", r, got, want)
		}
	}
}

// TestNormalizedAnalyticsMigration applies 00007 (the normalized analytics projection) to a
// database at 00006 holding reports of every shape (per-report and per-result subjects, several
// resources in one result, ephemeral and cluster-scoped reports, free-text and missing severities
// and results, scores, two clusters) and a projection that is behind the change log, and rolls it
// back again: the reports stay as they are; the published views show the same rows before and
// after the conversion; the projector then catches up incrementally and rebuilds to exactly the
// flattening of the reports, leaving no outcome nothing refers to; and the rollback keeps the
// results.
func TestNormalizedAnalyticsMigration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, m := emptyDatabase(t)
	if err := m.UpTo(ctx, 6); err != nil {
		t.Fatal(err)
	}

	write := func(cluster, key string, obj map[string]any) {
		t.Helper()
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `
			WITH v AS (
			    INSERT INTO revisions AS v (cluster, current) VALUES ($1, 1)
			    ON CONFLICT (cluster) DO UPDATE SET current = v.current + 1
			    RETURNING current
			), w AS (
			    INSERT INTO reports (cluster, key, resource_version, object)
			    SELECT $1, $2, v.current, $3 FROM v
			    ON CONFLICT (cluster, key) DO UPDATE SET resource_version = excluded.resource_version, object = excluded.object
			    RETURNING resource_version
			)
			INSERT INTO changes (cluster, resource_version, key, event, object)
			SELECT $1, w.resource_version, $2, 'MODIFIED', $3 FROM w`, cluster, key, data); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
	}
	remove := func(cluster, key string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `
			WITH v AS (UPDATE revisions SET current = current + 1 WHERE cluster = $1 RETURNING current),
			     d AS (DELETE FROM reports WHERE cluster = $1 AND key = $2 RETURNING key)
			INSERT INTO changes (cluster, resource_version, key, event) SELECT $1, v.current, d.key, 'DELETED' FROM v, d`,
			cluster, key); err != nil {
			t.Fatalf("delete %s: %v", key, err)
		}
	}
	const perCluster = 150
	for _, cluster := range []string{"east", "west"} {
		for i := range perCluster {
			key, obj := populatedReport(i, 0)
			write(cluster, key, obj)
		}
	}
	// Projected at 00006 as its projector did, then more writes the projection does not have yet.
	if _, err := pool.Exec(ctx, `
		INSERT INTO analytics_results
		SELECT f.* FROM reports r CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f;
		INSERT INTO analytics_checkpoints (cluster, revision, projected_at, duration_ms) SELECT cluster, current, now(), 0 FROM revisions;
		REFRESH MATERIALIZED VIEW analytics_cluster_summary;
		REFRESH MATERIALIZED VIEW analytics_namespace_summary;
		REFRESH MATERIALIZED VIEW analytics_policy_summary;
		REFRESH MATERIALIZED VIEW analytics_resource_summary;`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < perCluster; i += 3 {
		key, obj := populatedReport(i, 1)
		write("east", key, obj)
	}
	for i := 1; i < perCluster; i += 10 {
		key, _ := populatedReport(i, 0)
		remove("east", key)
	}
	for i := perCluster; i < perCluster+5; i++ {
		key, obj := populatedReport(i, 0)
		write("west", key, obj)
	}

	rows := func(q string) []string {
		t.Helper()
		return textRows(ctx, t, pool, q, "SELECT x::text FROM ("+q+") AS x ORDER BY 1")
	}
	const published = `SELECT * FROM reporting.results`
	// The flattening of the stored reports, as reporting.results shows it.
	const flattened = `
		SELECT f.cluster, f.report_api_group, f.report_api_version, f.report_kind, f.report_namespace, f.report_name,
		       f.report_uid, f.result_index, f.source, f.policy, f.rule, f.category, f.severity, f.result, f.finding,
		       f.scored, f.message, f."timestamp", f.namespace, f.resource_api_version, f.resource_kind,
		       f.resource_namespace, f.resource_name, f.resource_uid, f.resources, f.properties, f.score,
		       f.report_api_group = 'reports.kyverno.io' AS ephemeral
		FROM reports r CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f`
	const summaries = `
		SELECT 'cluster', to_jsonb(s) FROM reporting.cluster_summary s
		UNION ALL SELECT 'namespace', to_jsonb(s) FROM reporting.namespace_summary s
		UNION ALL SELECT 'policy', to_jsonb(s) FROM reporting.policy_summary s
		UNION ALL SELECT 'resource', to_jsonb(s) FROM reporting.resource_summary s`
	const checkpoints = `SELECT cluster, revision FROM analytics_checkpoints`
	const stored = `SELECT cluster, key, resource_version, md5(object::text) FROM reports`
	same := func(step, what string, want, got []string) {
		t.Helper()
		if !slices.Equal(want, got) {
			t.Fatalf("%s: %s differ (%d rows, want %d):\n%s", step, what, len(got), len(want), diffRows(want, got))
		}
	}

	reports, results, sums, marks := rows(stored), rows(published), rows(summaries), rows(checkpoints)
	if len(results) < 2*perCluster*5 || len(sums) == 0 {
		t.Fatalf("only %d results and %d summary rows to convert", len(results), len(sums))
	}
	if slices.Equal(results, rows(flattened)) {
		t.Fatal("the projection is not behind the reports: the catch-up after the migration tests nothing")
	}
	if err := m.UpTo(ctx, 7); err != nil {
		t.Fatalf("up to 7: %v", err)
	}
	same("after up", "reports", reports, rows(stored))
	same("after up", "reporting.results", results, rows(published))
	same("after up", "summaries", sums, rows(summaries))
	same("after up", "checkpoints", marks, rows(checkpoints))

	// Every later migration too: the projector is today's code.
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	project := func(step string) {
		t.Helper()
		if ran, err := analytics.New(pool, nil, analytics.Config{}).ProjectOnce(ctx); err != nil || !ran {
			t.Fatalf("%s: project: ran %v, %v", step, ran, err)
		}
		same(step, "reporting.results and the flattened reports", rows(flattened), rows(published))
		var unused int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM analytics_outcomes o
			WHERE NOT EXISTS (SELECT FROM analytics_results r WHERE r.outcome_id = o.id)`).Scan(&unused); err != nil || unused != 0 {
			t.Fatalf("%s: %d outcomes nothing refers to (%v)", step, unused, err)
		}
	}
	project("incremental projection after up")
	if _, err := pool.Exec(ctx, "DELETE FROM analytics_checkpoints"); err != nil {
		t.Fatal(err)
	}
	project("rebuild after up")
	results, marks = rows(published), rows(checkpoints)

	if err := m.DownTo(ctx, 6); err != nil {
		t.Fatalf("down to 6: %v", err)
	}
	same("after down", "reports", reports, rows(stored))
	same("after down", "reporting.results", results, rows(published))
	same("after down", "checkpoints", marks, rows(checkpoints))
}

// populatedReport is report i of TestNormalizedAnalyticsMigration in version v of its results.
func populatedReport(i, v int) (string, map[string]any) {
	ns := fmt.Sprintf("ns-%d", i%4)
	name := fmt.Sprintf("r-%d", i)
	var results []any
	for j := range 5 + i%4 {
		r := map[string]any{
			"policy": fmt.Sprintf("policy-%d", (i+j+v)%9), "rule": fmt.Sprintf("rule-%d", j%3),
			"source": []string{"kyverno", "Trivy", "kube-bench"}[j%3], "category": "Pod Security",
			"scored":    j%2 == 0,
			"message":   fmt.Sprintf("message %d", (j+v)%4),
			"timestamp": map[string]any{"seconds": 1700000000 + i, "nanos": (j - 2) * 1500},
		}
		if res := []string{"pass", "fail", "warn", "error", "skip", ""}[(i+j+v)%6]; res != "" {
			r["result"] = res
		}
		switch (i + j) % 7 {
		case 0: // none
		case 1: // from the properties, free text
			r["properties"] = map[string]any{"severity": "Notice"}
		default:
			r["severity"] = []string{"critical", "high", "medium", "low", "info"}[(i+j)%5]
		}
		if j%3 == 1 {
			r["properties"] = map[string]any{"score": fmt.Sprintf("%d.%d", (i+j)%10, j), "nvd.v3_score": "9.1", "FixedVersion": "1.2"}
		}
		if i%5 == 0 { // results about resources of their own, one of them about two
			res := []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": fmt.Sprintf("pod-%d", j%2), "uid": fmt.Sprintf("u-%d-%d", i, j%2)}}
			if j == 0 {
				res = append(res, map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": "pod-x"})
			}
			r["resources"] = res
		}
		results = append(results, r)
	}
	meta := map[string]any{"name": name, "namespace": ns, "uid": fmt.Sprintf("uid-%d", i)}
	switch {
	case i%11 == 0:
		delete(meta, "namespace")
		return "/wgpolicyk8s.io/clusterpolicyreports/" + name, map[string]any{
			"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "ClusterPolicyReport", "metadata": meta,
			"scope":   map[string]any{"apiVersion": "v1", "kind": "Node", "name": fmt.Sprintf("node-%d", i%3)},
			"results": results,
		}
	case i%7 == 0:
		return "/reports.kyverno.io/ephemeralreports/" + ns + "/" + name, map[string]any{
			"apiVersion": "reports.kyverno.io/v1", "kind": "EphemeralReport", "metadata": meta,
			"spec": map[string]any{
				"owner":   map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": fmt.Sprintf("web-%d", i%3), "uid": "d-1"},
				"results": results,
			},
		}
	}
	return "/wgpolicyk8s.io/policyreports/" + ns + "/" + name, map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport", "metadata": meta,
		"scope":   map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": fmt.Sprintf("web-%d", i%3)},
		"results": results,
	}
}

// diffRows lists the rows only one side has.
func diffRows(want, got []string) string {
	var b strings.Builder
	n := 0
	for _, w := range want {
		if !slices.Contains(got, w) && n < 10 {
			b.WriteString("- " + w + "\n")
			n++
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) && n < 20 {
			b.WriteString("+ " + g + "\n")
			n++
		}
	}
	return b.String()
}

// TestGeneratedColumnsPLpgSQL checks that the generated columns' functions in PL/pgSQL
// (00014_generated_plpgsql) compute what their SQL bodies did, on objects that take every branch:
// missing and empty fields, labels, summaries in either place, counts that are null, negative,
// fractional or beyond 2^31-1, timestamps with and without fractions. Each object's columns are
// read as the SQL functions compute them (down to 00013, every row rewritten) and as the
// PL/pgSQL ones do (up again, rewritten again), and must be equal.
func TestGeneratedColumnsPLpgSQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, m := emptyDatabase(t)
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}

	objects := []string{
		`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"a","namespace":"ns","labels":{"x":"1","y":""},"creationTimestamp":"2026-12-05T10:11:12Z"},"scope":{"apiVersion":"v1","kind":"Pod","name":"p","namespace":"ns","uid":"u"},"summary":{"pass":3,"fail":0,"warn":-2,"error":2147483648,"skip":1.6}}`,
		`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"ClusterPolicyReport","metadata":{"name":"b","creationTimestamp":"2026-12-05T10:11:12.123456Z"}}`,
		`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"c","namespace":"","labels":{}},"scope":{},"summary":{"pass":null,"fail":"7"}}`,
		`{"apiVersion":"openreports.io/v1alpha1","kind":"Report","metadata":{"name":"d","namespace":"ns"},"spec":{"summary":{"pass":-3000000000,"fail":12}},"scope":{"kind":"Deployment"}}`,
		`{"apiVersion":"reports.kyverno.io/v1","kind":"EphemeralReport","metadata":{"name":"e","namespace":"ns","labels":{"audit.kyverno.io/resource.uid":"0b5f"}},"summary":{},"spec":{"summary":{"pass":1}}}`,
		`{"kind":"PolicyReport","metadata":{}}`,
	}
	for i, o := range objects {
		if _, err := pool.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ('c', $1, $2, $3)`,
			fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%d", i), i+1, o); err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
	}
	// columns rewrites every row, so PostgreSQL computes its generated columns again with the
	// functions defined now, and reads them.
	columns := func(step string) []string {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE reports SET object = object`); err != nil {
			t.Fatalf("%s: rewrite: %v", step, err)
		}
		return textRows(ctx, t, pool, step, `SELECT concat_ws(' | ', key, labels::text, fields::text, coalesce(created_at::text, 'null'), summary_pass,
			summary_fail, summary_warn, summary_error, summary_skip) FROM reports ORDER BY key`)
	}
	var lang string
	language := func() string {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT string_agg(DISTINCT l.lanname, ',') FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
			WHERE p.proname IN ('reports_rfc3339', 'reports_fields', 'reports_labels', 'reports_summary_count')`).Scan(&lang); err != nil {
			t.Fatal(err)
		}
		return lang
	}
	if got := language(); got != "plpgsql" {
		t.Fatalf("the generated columns' functions are in %s, want plpgsql", got)
	}
	if err := m.DownTo(ctx, 13); err != nil {
		t.Fatalf("down to 13: %v", err)
	}
	if got := language(); got != "sql" {
		t.Fatalf("after down to 13 the functions are in %s, want sql", got)
	}
	want := columns("sql")
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	got := columns("plpgsql")
	if d := diffRows(want, got); d != "" {
		t.Errorf("generated columns differ between the SQL (-) and PL/pgSQL (+) functions:\n%s", d)
	}
	t.Logf("%d objects, columns:\n%s", len(got), strings.Join(got, "\n"))
}

// TestObjectsCompressedWithLZ4: after 00015_toast_lz4 a stored object and a change log's previous
// object are compressed with lz4, rows stored before keep pglz and read the same, and rolling the
// migration back makes new values pglz again.
func TestObjectsCompressedWithLZ4(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, m := emptyDatabase(t)
	if err := m.UpTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	// A report large enough to be compressed (over 2 KB), different each time.
	object := func(name string) string {
		results := make([]string, 40)
		for i := range results {
			results[i] = fmt.Sprintf(`{"policy":"p%d","rule":"r%d","result":"fail","message":"%s %s"}`, i, i, name, strings.Repeat("must be set; ", 8))
		}
		return `{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"` + name +
			`","namespace":"ns"},"results":[` + strings.Join(results, ",") + `]}`
	}
	insert := func(name string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ('c', $1, 1, $2)`,
			"/wgpolicyk8s.io/policyreports/ns/"+name, object(name)); err != nil {
			t.Fatal(err)
		}
	}
	compression := func(name string) string {
		t.Helper()
		var method string
		if err := pool.QueryRow(ctx, `SELECT coalesce(pg_column_compression(object), 'none') FROM reports WHERE key = $1`,
			"/wgpolicyk8s.io/policyreports/ns/"+name).Scan(&method); err != nil {
			t.Fatal(err)
		}
		return method
	}
	insert("before")
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	insert("after")
	// The replaced version goes to the change log's prev_object.
	if _, err := pool.Exec(ctx, `INSERT INTO changes (cluster, resource_version, key, event, prev_object) VALUES ('c', 2, 'k', 'MODIFIED', $1)`, object("prev")); err != nil {
		t.Fatal(err)
	}
	var prev string
	if err := pool.QueryRow(ctx, `SELECT pg_column_compression(prev_object) FROM changes WHERE key = 'k'`).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	if got := compression("before"); got != "pglz" {
		t.Errorf("an object stored before the migration is compressed with %s, want pglz (kept as stored)", got)
	}
	if got := compression("after"); got != "lz4" || prev != "lz4" {
		t.Errorf("after the migration objects are compressed with %s and previous objects with %s, want lz4", got, prev)
	}
	var same bool
	if err := pool.QueryRow(ctx, `SELECT (SELECT object FROM reports WHERE key LIKE '%/before') = $1::jsonb
		AND (SELECT object FROM reports WHERE key LIKE '%/after') = $2::jsonb`, object("before"), object("after")).Scan(&same); err != nil || !same {
		t.Errorf("objects read back differ from those written (%v)", err)
	}
	if err := m.DownTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	insert("down")
	if got := compression("down"); got != "pglz" {
		t.Errorf("after rolling the migration back an object is compressed with %s, want pglz", got)
	}
}
