package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

// grafanaDashboard is the part of a Grafana dashboard this test runs: its time range, its template
// variables and its panels' queries. (test/deploy checks the whole file against Grafana's schema.)
type grafanaDashboard struct {
	Time struct{ From, To string }
	// Templating holds the template variables, whose values the panels' SQL refers to.
	Templating struct {
		List []struct {
			Name       string
			Query      string
			Multi      bool
			IncludeAll bool
			AllValue   string
		}
	}
	Panels []struct {
		ID      int
		Title   string
		Targets []struct {
			RefID  string
			Format string
			RawSQL string
		}
	}
}

// TestGrafanaDashboard runs every query of deploy/grafana/reports-dashboard.json the way Grafana
// runs it, as the reports_reader role, against reports loaded through the API of two servers
// (clusters prod and staging) sharing one database: the producers' samples and generated reports
// of every kind. The variables' queries run first and their values are substituted as Grafana's
// SQL data sources do; then every panel query must run and return rows, time series must have
// their time column first, and the stat panels must show what was loaded.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	databaseURL := dbtest.URL(t)
	withClusterName := func(name string) func(*server.Options, *server.Hooks) {
		return func(o *server.Options, _ *server.Hooks) {
			o.ClusterName = name
			// Summaries follow within a fraction of a second, not after the default 30 s debounce.
			o.Analytics.SummaryRefreshInterval = 200 * time.Millisecond
		}
	}
	prod := startServerWith(t, databaseURL, withClusterName("prod"))
	staging := startServerWith(t, databaseURL, withClusterName("staging"))

	dir := t.TempDir()
	applySamples(t, &kubectl{bin: buildKubectl(t, dir), kubeconfig: prod.Kubeconfig, home: filepath.Join(dir, "home")})
	createReports(t, staging, generatedReports())

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	waitAnalyticsOf(t, pool, "prod", "staging")

	dash := loadDashboard(t)
	now := time.Now()
	from, to := grafanaTime(t, dash.Time.From, now), grafanaTime(t, dash.Time.To, now)
	stats := map[string]string{}
	asReportsReader(ctx, t, pool, func(tx pgx.Tx) {
		vars := map[string]string{}
		for _, v := range dash.Templating.List {
			_, values := readerQuery(ctx, t, tx, interpolate(t, v.Query, vars, from, to))
			if len(values) == 0 {
				t.Fatalf("variable %s: its query returns no values", v.Name)
			}
			var all []string
			for _, row := range values {
				all = append(all, row[0])
			}
			// The dashboard's default is "All", which Grafana expands to every value the query gave
			// (unless the variable has a custom all value).
			vars[v.Name] = sqlValues(all)
			if v.IncludeAll && v.AllValue != "" {
				vars[v.Name] = v.AllValue
			}
			t.Logf("$%s = %s", v.Name, vars[v.Name])
		}
		for _, p := range dash.Panels {
			for _, target := range p.Targets {
				what := fmt.Sprintf("panel %d %q, query %s", p.ID, p.Title, target.RefID)
				columns, rows := readerQuery(ctx, t, tx, interpolate(t, target.RawSQL, vars, from, to))
				if len(rows) == 0 {
					t.Errorf("%s returns no rows on the loaded reports:\n%s", what, target.RawSQL)
					continue
				}
				if target.Format == "time_series" && columns[0] != "time" {
					t.Errorf("%s: a time series needs its time column first, called time; got %v", what, columns)
				}
				t.Logf("%s: %d rows, first %v", what, len(rows), rows[0])
				stats[p.Title] = rows[0][0]
			}
		}
	})

	// The totals the dashboard shows are the reports' own: every result of the final reports
	// (ephemeral ones repeat results of final reports while a scan is in flight, see docs/sql.md).
	var results, findings int
	for _, srv := range []*testServer{prod, staging} {
		r, f := countResults(t, srv)
		results, findings = results+r, findings+f
	}
	if got := stats["Results"]; got != strconv.Itoa(results) {
		t.Errorf("the Results panel shows %s, the servers hold %d results in final reports", got, results)
	}
	if got := stats["Findings"]; got != strconv.Itoa(findings) {
		t.Errorf("the Findings panel shows %s, the servers hold %d findings in final reports", got, findings)
	}
}

func loadDashboard(t *testing.T) *grafanaDashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "reports-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := &grafanaDashboard{}
	if err := json.Unmarshal(raw, d); err != nil {
		t.Fatalf("reports-dashboard.json: %v", err)
	}
	if len(d.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	return d
}

// createReports creates the reports through srv's API.
func createReports(t *testing.T, srv *testServer, objs []*unstructured.Unstructured) {
	t.Helper()
	client := srv.dynamicClient(t)
	for _, u := range objs {
		k := kindNamed(t, u.GetKind())
		if _, err := resourceFor(client, k, u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// countResults counts, through srv's API, the results of its final reports and how many of them
// are findings (fail, warn, error, or no result at all: docs/sql.md, "Terms").
func countResults(t *testing.T, srv *testServer) (results, findings int) {
	t.Helper()
	client := srv.dynamicClient(t)
	for _, k := range reports.All() {
		if isEphemeral(k) {
			continue
		}
		list, err := client.Resource(k.GroupVersionResource()).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list %s: %v", k.Resource, err)
		}
		for _, item := range list.Items {
			rs, _, _ := unstructured.NestedSlice(item.Object, "results")
			for _, r := range rs {
				results++
				switch m, _ := r.(map[string]any); m["result"] {
				case "fail", "warn", "error", nil:
					findings++
				}
			}
		}
	}
	return results, findings
}

// waitAnalyticsOf waits until the results of every cluster named reflect every write, and the
// summaries the results.
func waitAnalyticsOf(t *testing.T, pool *pgxpool.Pool, clusters ...string) {
	t.Helper()
	ok := waitFor(time.Minute, func() bool {
		var behind int64
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FILTER (WHERE pending_revisions > 0 OR refreshed_at IS NULL)
			     + $1::int - count(*) FILTER (WHERE object = 'results' AND cluster = ANY($2))
			FROM reporting.refresh_status`, len(clusters), clusters).Scan(&behind)
		if err != nil {
			t.Fatalf("read refresh status: %v", err)
		}
		return behind == 0
	})
	if !ok {
		t.Fatal("analytics not up to date after a minute")
	}
}

// asReportsReader runs f in a read-only transaction as the role reports_reader, which Grafana's
// login is granted (docs/sql.md, "Access").
func asReportsReader(ctx context.Context, t *testing.T, pool *pgxpool.Pool, f func(pgx.Tx)) {
	t.Helper()
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE reports_reader"); err != nil {
		t.Fatalf("become reports_reader: %v", err)
	}
	f(tx)
}

// readerQuery runs sql and returns its column names and rows, every value as text ("NULL" for
// NULL). A failing statement fails the test; the transaction is then aborted, so it stops.
func readerQuery(ctx context.Context, t *testing.T, tx pgx.Tx, sql string) (columns []string, rows [][]string) {
	t.Helper()
	r, err := tx.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%v in\n%s", err, sql)
	}
	defer r.Close()
	for _, f := range r.FieldDescriptions() {
		columns = append(columns, f.Name)
	}
	for r.Next() {
		// The simple protocol returns every value as PostgreSQL's text, as psql shows it.
		values := r.RawValues()
		row := make([]string, len(values))
		for i, v := range values {
			row[i] = "NULL"
			if v != nil {
				row[i] = string(v)
			}
		}
		rows = append(rows, row)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("%v in\n%s", err, sql)
	}
	return columns, rows
}

var (
	// grafanaMacro is a macro of Grafana's SQL data sources with its argument: $__timeFilter(at).
	grafanaMacro = regexp.MustCompile(`\$__(\w+)\(([^)]*)\)`)
	// grafanaVar is a template variable: $name, ${name} or ${name:format}.
	grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)
	// relativeTime is Grafana's now-<n><unit>.
	relativeTime = regexp.MustCompile(`^now(?:-(\d+)([smhdwMy]))?$`)
)

// interpolate fills in what Grafana fills in before it sends SQL to PostgreSQL: the time macros
// (as its PostgreSQL data source writes them) and the template variables. Anything else that
// looks like a macro or a variable fails the test, so a new one gets taught here before the
// dashboard uses it.
func interpolate(t *testing.T, sql string, vars map[string]string, from, to time.Time) string {
	t.Helper()
	timestamp := func(at time.Time) string { return "'" + at.UTC().Format(time.RFC3339Nano) + "'" }
	sql = grafanaMacro.ReplaceAllStringFunc(sql, func(m string) string {
		parts := grafanaMacro.FindStringSubmatch(m)
		switch name, arg := parts[1], strings.TrimSpace(parts[2]); name {
		case "timeFilter":
			return arg + " BETWEEN " + timestamp(from) + " AND " + timestamp(to)
		case "timeFrom":
			return timestamp(from)
		case "timeTo":
			return timestamp(to)
		default:
			t.Errorf("Grafana macro $__%s is not interpolated by this test: %s", name, sql)
			return m
		}
	})
	return grafanaVar.ReplaceAllStringFunc(sql, func(m string) string {
		parts := grafanaVar.FindStringSubmatch(m)
		name := parts[1] + parts[2]
		v, ok := vars[name]
		if !ok {
			t.Errorf("the SQL uses $%s, which is no template variable of the dashboard: %s", name, sql)
			return m
		}
		return v
	})
}

// sqlValues is how Grafana's SQL data sources write a multi-value variable into SQL: every value
// quoted as a string literal, separated by commas.
func sqlValues(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return strings.Join(quoted, ",")
}

// grafanaTime resolves a time of the dashboard's time range ("now", "now-7d") at now.
func grafanaTime(t *testing.T, spec string, now time.Time) time.Time {
	t.Helper()
	m := relativeTime.FindStringSubmatch(spec)
	if m == nil {
		t.Fatalf("time %q: only now and now-<n><unit> are understood by this test", spec)
	}
	if m[1] == "" {
		return now
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "M":
		return now.AddDate(0, -n, 0)
	case "y":
		return now.AddDate(-n, 0, 0)
	}
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	return now.Add(-time.Duration(n) * unit)
}
