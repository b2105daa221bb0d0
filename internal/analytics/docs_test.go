package analytics_test

import (
	"cmp"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// docQuery is one example query of docs/sql.md: the "### " heading above it and its SQL.
type docQuery struct{ title, sql string }

// docQueries extracts the ```sql blocks of the "## Example queries" section of docs/sql.md, so the
// documentation and the tests cannot drift apart.
func docQueries(t testing.TB) []docQuery {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "sql.md"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []docQuery
		in      bool
		title   string
		code    []string
		inBlock bool
	)
	for line := range strings.SplitSeq(string(data), "\n") {
		switch {
		case inBlock && strings.HasPrefix(line, "```"):
			inBlock = false
			if in {
				out = append(out, docQuery{title, strings.Join(code, "\n")})
			}
		case inBlock:
			code = append(code, line)
		case strings.HasPrefix(line, "```sql"):
			inBlock, code = true, nil
		case strings.HasPrefix(line, "## "):
			in = strings.TrimSpace(line) == "## Example queries"
		case strings.HasPrefix(line, "### "):
			title = strings.TrimSpace(strings.TrimPrefix(line, "### "))
		}
	}
	return out
}

// anyValue in an expected row matches any non-NULL value (times that depend on the clock).
type anyValue struct{}

// expectations compute, from the Go flattening of the stored reports, what each documented
// query must return.
var expectations = map[string]func(x *oracle) [][]any{
	"Top failing policies": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any { return []any{r["cluster"], orEmpty(r["source"]), orEmpty(r["policy"])} },
			func(rs []row) []any {
				return []any{count(rs, func(r row) bool { return r["result"] == "fail" || r["result"] == "error" }), int64(len(rs))}
			})
		out = where(out, func(v []any) bool { return v[3].(int64) > 0 })
		return limit(x.sort(out, desc(3), asc(0), asc(1), asc(2)), 10)
	},
	"Namespaces by critical findings": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any { return []any{r["cluster"], r["namespace"]} }, func(rs []row) []any {
			return []any{findings(rs, "critical"), findings(rs, "high"), findings(rs, "")}
		})
		out = where(out, func(v []any) bool { return v[2].(int64) > 0 })
		return x.sort(out, desc(2), desc(3), asc(0), asc(1))
	},
	"Critical findings per namespace, live": func(x *oracle) [][]any {
		rs := filter(x.results, func(r row) bool { return r["severity"] == "critical" && r["finding"] == "true" })
		out := x.group(rs, func(r row) []any { return []any{r["cluster"], r["namespace"]} }, func(rs []row) []any { return []any{int64(len(rs))} })
		return x.sort(out, desc(2), asc(0), asc(1))
	},
	"Vulnerabilities with CVSS 8.0 or more that have a fix": func(x *oracle) [][]any {
		var out [][]any
		for _, r := range x.results {
			score, ok := num(r["score"])
			fixed := prop(r, "FixedVersion")
			if !ok || score < 8 || fixed == nil || *fixed == "" {
				continue
			}
			out = append(out, []any{r["cluster"], r["namespace"], null(r["resource_kind"]), null(r["resource_name"]),
				vulnerability(r), score, ptr(prop(r, "InstalledVersion")), *fixed})
		}
		return x.sort(out, desc(5), asc(0), asc(1), asc(3), asc(4))
	},
	"Vulnerabilities affecting the most resources": func(x *oracle) [][]any {
		rs := filter(x.results, func(r row) bool { _, ok := num(r["score"]); return ok })
		out := x.group(rs, func(r row) []any { return []any{vulnerability(r)} }, func(rs []row) []any {
			best := math.Inf(-1)
			subjects := map[string]bool{}
			for _, r := range rs {
				s, _ := num(r["score"])
				best = max(best, s)
				subjects[r["cluster"]+"\x00"+r["namespace"]+"\x00"+r["resource_kind"]+"\x00"+r["resource_name"]] = true
			}
			return []any{best, int64(len(subjects))}
		})
		return limit(x.sort(out, desc(2), desc(1), asc(0)), 10)
	},
	"Resources failing a given policy": func(x *oracle) [][]any {
		var out [][]any
		for _, r := range x.results {
			if r["policy"] == "disallow-privileged" && r["result"] == "fail" {
				out = append(out, []any{r["cluster"], r["namespace"], null(r["resource_kind"]), null(r["resource_name"]), null(r["rule"]), null(r["message"])})
			}
		}
		return x.sort(out, asc(0), asc(1), asc(3), asc(4))
	},
	"Everything reported about one resource": func(x *oracle) [][]any {
		var out [][]any
		for _, r := range x.results {
			if r["cluster"] == "prod" && r["resource_kind"] == "Pod" && r["resource_namespace"] == "team-a" && r["resource_name"] == "web-0" {
				out = append(out, []any{null(r["source"]), null(r["policy"]), null(r["rule"]), null(r["result"]), null(r["severity"]), null(r["message"])})
			}
		}
		return x.sort(out, asc(0), asc(1), asc(2))
	},
	"Most affected resources": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any {
			return []any{r["cluster"], r["namespace"], orEmpty(r["resource_kind"]), orEmpty(r["resource_name"])}
		}, func(rs []row) []any { return []any{findings(rs, "critical"), findings(rs, "high"), findings(rs, "")} })
		out = where(out, func(v []any) bool { return v[6].(int64) > 0 })
		return limit(x.sort(out, desc(4), desc(5), desc(6), asc(0), asc(1), asc(2), asc(3)), 10)
	},
	"Pass rate per cluster": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any { return []any{r["cluster"]} }, func(rs []row) []any {
			c := resultCounts(rs)
			return []any{int64(len(rs)), c["pass"], c["fail"], c["warn"], c["error"], c["skip"], passRate(c)}
		})
		return x.sort(out, asc(0))
	},
	"Compliance over time per cluster": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any { return []any{r["cluster"]} }, func(rs []row) []any {
			return []any{anyValue{}, passRate(resultCounts(rs)), findings(rs, "")}
		})
		return x.sort(out, asc(0))
	},
	"Findings by source": func(x *oracle) [][]any {
		out := x.group(x.results, func(r row) []any { return []any{null(r["source"])} }, func(rs []row) []any {
			return []any{findings(rs, ""), int64(len(rs))}
		})
		return x.sort(out, desc(1), asc(0))
	},
	"Reports whose producer counted errors": func(x *oracle) [][]any {
		var out [][]any
		for _, rep := range x.reports {
			sum, ok := rep.obj["summary"].(map[string]any)
			if !ok {
				sum = asMap(asMap(rep.obj["spec"])["summary"])
			}
			errs, _ := strconv.ParseInt(normPtr(text(sum["error"])), 10, 64)
			if errs <= 0 {
				continue
			}
			results, ok := rep.obj["results"].([]any)
			if !ok {
				results, _ = asMap(rep.obj["spec"])["results"].([]any)
			}
			md := asMap(rep.obj["metadata"])
			out = append(out, []any{rep.cluster, rep.obj["kind"], orEmpty(normPtr(text(md["namespace"]))), md["name"], errs, int64(len(results))})
		}
		return x.sort(out, desc(4), asc(0), asc(1), asc(2), asc(3))
	},
	"Is the data fresh?": func(x *oracle) [][]any {
		var out [][]any
		for _, s := range []string{"cluster_summary", "namespace_summary", "policy_summary", "resource_summary"} {
			out = append(out, []any{s, nil, int64(0), float64(0), anyValue{}})
		}
		for _, c := range []string{"prod", "staging"} {
			out = append(out, []any{"results", c, int64(0), float64(0), anyValue{}})
		}
		return x.sort(out, asc(0), asc(1))
	},
}

// TestDocQueries runs every example query of docs/sql.md as reports_reader on the producer
// samples and generated reports (after one projection and refresh), and checks each result
// against what the Go flattening of the stored reports says it must be.
func TestDocQueries(t *testing.T) {
	t.Parallel()
	queries := docQueries(t)
	if len(queries) < 10 {
		t.Fatalf("docs/sql.md has %d example queries, want at least 10", len(queries))
	}
	e := newEnv(t)
	loadAll(t, e)
	e.projectAndRefresh()
	x := &oracle{reports: storedReports(e.ctx, t, e.pool)}
	// The documented queries count each finding once: final reports only (not ephemeral).
	x.results = filter(oracleResults(x.reports), func(r row) bool { return r["report_api_group"] != "reports.kyverno.io" })

	seen := map[string]bool{}
	asReader(e.ctx, t, e.pool, func(tx pgx.Tx) {
		x.ctx, x.t, x.tx = e.ctx, t, tx
		for _, q := range queries {
			seen[q.title] = true
			expect, ok := expectations[q.title]
			if !ok {
				t.Errorf("docs/sql.md query %q has no expectation in docs_test.go", q.title)
				continue
			}
			_, got := queryRows(e.ctx, t, tx, q.sql)
			t.Logf("%s: %d rows, first: %v", q.title, len(got), got[:min(1, len(got))])
			want := expect(x)
			if len(want) == 0 {
				t.Errorf("%q: the test data give no rows to check", q.title)
			}
			if !rowsMatch(want, got) {
				t.Errorf("%q returned\n%swant\n%s", q.title, joinRows(got), joinRows(render(want)))
			}
		}
	})
	for title := range expectations {
		if !seen[title] {
			t.Errorf("expectation %q has no query in docs/sql.md", title)
		}
	}
}

// oracle holds the expected data and sorts rows the way PostgreSQL does.
type oracle struct {
	ctx     context.Context
	t       *testing.T
	tx      pgx.Tx
	reports []storedReport
	results []row
}

type sortKey struct {
	col  int
	desc bool
}

func asc(col int) sortKey  { return sortKey{col, false} }
func desc(col int) sortKey { return sortKey{col, true} }

// sort orders rows by keys like ORDER BY: strings in the database's collation (asked from the
// database), NULLs last ascending and first descending.
func (x *oracle) sort(rows [][]any, keys ...sortKey) [][]any {
	var strs []string
	for _, r := range rows {
		for _, v := range r {
			if s, ok := v.(string); ok {
				strs = append(strs, s)
			}
		}
	}
	rank := map[string]int{}
	if len(strs) > 0 {
		_, ordered := queryRows(x.ctx, x.t, x.tx, "SELECT DISTINCT s FROM unnest($1::text[]) AS s ORDER BY s", strs)
		for i, r := range ordered {
			rank[r[0]] = i
		}
	}
	compare := func(a, b any) int {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return 1
		case b == nil:
			return -1
		}
		switch av := a.(type) {
		case string:
			return cmp.Compare(rank[av], rank[b.(string)])
		case int64:
			return cmp.Compare(av, b.(int64))
		case float64:
			return cmp.Compare(av, b.(float64))
		}
		return 0
	}
	slices.SortStableFunc(rows, func(a, b []any) int {
		for _, k := range keys {
			c := compare(a[k.col], b[k.col])
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return rows
}

// group groups rows by key and appends agg's values to the key's, in first-seen order.
func (x *oracle) group(rows []row, key func(row) []any, agg func([]row) []any) [][]any {
	var order []string
	keys := map[string][]any{}
	members := map[string][]row{}
	for _, r := range rows {
		k := key(r)
		id := strings.Join(render([][]any{k})[0], "\x00")
		if _, ok := keys[id]; !ok {
			order = append(order, id)
			keys[id] = k
		}
		members[id] = append(members[id], r)
	}
	var out [][]any
	for _, id := range order {
		out = append(out, append(slices.Clone(keys[id]), agg(members[id])...))
	}
	return out
}

func where(rows [][]any, keep func([]any) bool) [][]any {
	var out [][]any
	for _, r := range rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func filter(rows []row, keep func(row) bool) []row {
	var out []row
	for _, r := range rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func limit(rows [][]any, n int) [][]any { return rows[:min(n, len(rows))] }

func count(rows []row, pred func(row) bool) int64 { return int64(len(filter(rows, pred))) }

// findings counts the findings of a severity ("" for all findings).
func findings(rows []row, severity string) int64 {
	return count(rows, func(r row) bool { return r["finding"] == "true" && (severity == "" || r["severity"] == severity) })
}

func resultCounts(rows []row) map[string]int64 {
	c := map[string]int64{}
	for _, r := range rows {
		c[r["result"]]++
	}
	return c
}

// passRate is round(100.0 * pass / nullif(pass + fail + warn + error, 0), 1).
func passRate(c map[string]int64) any {
	den := c["pass"] + c["fail"] + c["warn"] + c["error"]
	if den == 0 {
		return nil
	}
	return math.Round(1000*float64(c["pass"])/float64(den)) / 10
}

// null is a normalized value back as a Go value: nil for NULL, else the string.
func null(v string) any {
	if v == "NULL" {
		return nil
	}
	return v
}

func orEmpty(v string) any {
	if v == "NULL" {
		return ""
	}
	return v
}

func ptr(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func num(v string) (float64, bool) {
	if v == "NULL" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// prop is a property of a result row (properties->>name).
func prop(r row, name string) *string {
	var props map[string]any
	if err := json.Unmarshal([]byte(r["properties"]), &props); err != nil {
		return nil
	}
	return text(props[name])
}

// vulnerability is coalesce(properties->>'VulnerabilityID', policy).
func vulnerability(r row) any {
	if id := prop(r, "VulnerabilityID"); id != nil {
		return *id
	}
	return null(r["policy"])
}

// render normalizes expected values as queryRows normalizes results.
func render(rows [][]any) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			if _, ok := v.(anyValue); ok {
				out[i][j] = "*"
				continue
			}
			out[i][j] = norm(v)
		}
	}
	return out
}

func rowsMatch(want [][]any, got [][]string) bool {
	w := render(want)
	if len(w) != len(got) {
		return false
	}
	for i := range w {
		if len(w[i]) != len(got[i]) {
			return false
		}
		for j := range w[i] {
			if w[i][j] == "*" && got[i][j] != "NULL" {
				continue
			}
			if w[i][j] != got[i][j] {
				return false
			}
		}
	}
	return true
}
