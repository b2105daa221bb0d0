package findings

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/fields"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestNames(t *testing.T) {
	kinds, err := newReportKinds(reports.All())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range reports.All() {
		name, err := kinds.name(k.GroupVersion.Group, k.Kind, "my.report-1", 12)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := kinds.parse(name)
		if !ok || n.kind.Kind != k.Kind || n.report != "my.report-1" || n.index != 12 {
			t.Errorf("%s: name %q parses as %+v %v", k.Kind, name, n, ok)
		}
		wantKey := "/" + k.GroupVersion.Group + "/" + k.Resource + "/my.report-1"
		if k.Namespaced {
			wantKey = "/" + k.GroupVersion.Group + "/" + k.Resource + "/ns/my.report-1"
		}
		if got := n.key("ns"); got != wantKey {
			t.Errorf("%s: key %q, want %q", k.Kind, got, wantKey)
		}
	}
	for _, bad := range []string{"", "polr", "polr.x", "polr.x.01", "polr.x.-1", "polr.x.+1", "polr..1", "nope.x.1", "polr.x.99999999999"} {
		if n, ok := kinds.parse(bad); ok {
			t.Errorf("%q parses as %+v", bad, n)
		}
	}
}

func TestContinueToken(t *testing.T) {
	in := continueToken{Namespace: "ns", Key: "/g/r/ns/name", Index: 7}
	out, err := decodeContinue(in.encode())
	if err != nil || out.Namespace != in.Namespace || out.Key != in.Key || out.Index != in.Index {
		t.Errorf("round trip: %+v %v", out, err)
	}
	for _, bad := range []string{"x", "e30", in.encode()[1:]} {
		if _, err := decodeContinue(bad); !apierrors.IsBadRequest(err) {
			t.Errorf("token %q: %v, want 400", bad, err)
		}
	}
}

// explainer runs every query twice: once under EXPLAIN, keeping the plan, and then for real.
type explainer struct {
	pgx.Tx
	plan string
}

func (e *explainer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := e.Tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		return nil, err
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	e.plan = strings.Join(lines, "\n")
	return e.Tx.Query(ctx, sql, args...)
}

func (e *explainer) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return e.Tx.QueryRow(ctx, sql, args...)
}

func (e *explainer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return e.Tx.Exec(ctx, sql, args...)
}

// TestSelectorsUseIndexes checks that field selectors are answered by index scans, not by reading
// the table: on 10^5 results, the plans of the list query for the selectors kubectl users type.
// Each query runs several times first, so a plan cache that switched to a generic plan would show.
func TestSelectorsUseIndexes(t *testing.T) {
	pool, _ := dbtest.Pool(t)
	ctx := context.Background()
	// 10^5 results: 10^4 reports of ten results in 100 namespaces; one result in 1,000 is critical,
	// one in three fails; 350 outcomes (50 policies, 7 rules).
	_, err := pool.Exec(ctx, `
		INSERT INTO analytics_reports (cluster, key, report_resource_version, report_api_group, report_api_version,
		    report_kind, report_namespace, report_name, report_uid, namespace, resource_api_version, resource_kind,
		    resource_namespace, resource_name, resource_uid)
		SELECT 'c', '/wgpolicyk8s.io/policyreports/ns-' || (g % 100) || '/r-' || g, 1, 'wgpolicyk8s.io',
		       'wgpolicyk8s.io/v1alpha2', 'PolicyReport', 'ns-' || (g % 100), 'r-' || g, md5(g::text),
		       'ns-' || (g % 100), 'v1', 'Pod', 'ns-' || (g % 100), 'pod-' || g, md5('pod' || g)
		FROM generate_series(0, 9999) AS g;
		INSERT INTO analytics_outcomes (digest, source, policy, rule, category, scored, message)
		SELECT analytics_outcome_digest(x.source, x.policy, x.rule, x.category, true, 'message', NULL), x.*, true, 'message'
		FROM (SELECT CASE WHEN p % 2 = 0 THEN 'kyverno' ELSE 'Trivy' END AS source, 'policy-' || p AS policy,
		             'rule-' || r AS rule, 'pod-security' AS category
		      FROM generate_series(0, 49) AS p, generate_series(0, 6) AS r) AS x;
		INSERT INTO analytics_results (report_id, outcome_id, "timestamp", result_index, severity_code, result_code)
		SELECT p.id, o.id, now(), g % 10,
		       analytics_code(CASE WHEN g % 1000 = 0 THEN 'critical' ELSE (ARRAY['high', 'medium', 'low', 'info'])[g % 4 + 1] END),
		       analytics_code(CASE WHEN g % 3 = 0 THEN 'fail' ELSE 'pass' END)
		FROM generate_series(0, 99999) AS g
		JOIN analytics_reports p ON p.report_name = 'r-' || (g / 10)
		JOIN analytics_outcomes o ON o.policy = 'policy-' || (g % 50) AND o.rule = 'rule-' || (g % 7);
		ANALYZE analytics_reports, analytics_outcomes, analytics_results;`)
	src, err := newSource(Config{Pool: pool, Cluster: "c", Projecting: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		namespace, selector string
		cluster             bool
		// after starts the page after this row (a continue token).
		after *continueToken
		// indexes are the indexes one of which the plan must use; none: any index (several are as good).
		indexes []string
		// scanOK allows reading the tables whole: a selector on the outcome (policy, rule, source,
		// category) that 2% of the results match touches nearly every page of analytics_results
		// (56-byte rows), which the planner then prefers to read in order and hash-join (6 ms by
		// index, 16 ms so, here).
		scanOK bool
	}{
		{selector: "severity=critical,result=fail", indexes: []string{"analytics_results_severity_idx"}},
		{selector: "severity=critical", indexes: []string{"analytics_results_severity_idx"}},
		{selector: "", indexes: []string{"analytics_reports_report_namespace_idx"}},
		{namespace: "ns-7", indexes: []string{"analytics_reports_report_namespace_idx"}},
		{namespace: "ns-0", selector: "severity=critical"},
		{selector: "policy=policy-3", scanOK: true},
		{selector: "policy=policy-3,rule=rule-2", indexes: []string{"analytics_results_outcome_idx"}},
		{selector: "subject.name=pod-42", indexes: []string{"analytics_reports_resource_idx"}},
		{selector: "subject.kind=Pod,subject.name=pod-42"},
		{selector: "metadata.namespace=ns-3,result=fail", indexes: []string{"analytics_reports_report_namespace_idx"}},
		{cluster: true, indexes: []string{"analytics_reports_report_namespace_idx"}},
		// Selective fields without an index of their own: pages in index order, filtered.
		{selector: "source=Trivy", indexes: []string{"analytics_reports_report_namespace_idx"}},
		{selector: "finding=true", indexes: []string{"analytics_reports_report_namespace_idx"}},
		{selector: "source=Trivy", after: &continueToken{Namespace: "ns-50", Key: "/wgpolicyk8s.io/policyreports/ns-50/r-50", Index: 3},
			indexes: []string{"analytics_reports_report_namespace_idx"}},
		{after: &continueToken{Namespace: "ns-50", Key: "/wgpolicyk8s.io/policyreports/ns-50/r-50", Index: 3},
			indexes: []string{"analytics_reports_report_namespace_idx"}},
	}
	for _, c := range cases {
		r := newFindingREST(src, !c.cluster)
		reqCtx := genericapirequest.WithNamespace(ctx, c.namespace)
		opts := &metainternalversion.ListOptions{FieldSelector: fields.ParseSelectorOrDie(c.selector), Limit: 500}
		if c.after != nil {
			opts.Continue = c.after.encode()
		}
		params, _, none, err := r.listParams(reqCtx, opts)
		if err != nil || none {
			t.Fatalf("%+v: %v %v", c, none, err)
		}
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.q.FindingsCustomPlans(ctx, tx); err != nil {
			t.Fatal(err)
		}
		e := &explainer{Tx: tx}
		var rows []sqlc.ListFindingsRow
		for range 7 {
			if rows, err = src.q.ListFindings(ctx, e, params); err != nil {
				t.Fatalf("%+v: %v", c, err)
			}
		}
		_ = tx.Rollback(ctx)
		if len(rows) == 0 && !c.cluster {
			t.Errorf("namespace %q selector %q: no rows; the case tests nothing", c.namespace, c.selector)
		}
		usesIndex := len(c.indexes) == 0 || slices.ContainsFunc(c.indexes, func(i string) bool { return strings.Contains(e.plan, i) })
		// The outcomes are a small dictionary here (350 rows): a hash of them is as good as index lookups.
		scans := !c.scanOK && (strings.Contains(e.plan, "Seq Scan on analytics_reports") ||
			strings.Contains(e.plan, "Seq Scan on analytics_results"))
		if scans || !usesIndex {
			t.Errorf("namespace %q selector %q: want an index scan (%v):\n%s", c.namespace, c.selector, c.indexes, e.plan)
		}
	}
}
