package analytics_test

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db/dbtest"
)

var update = flag.Bool("update", false, "rewrite sql/views/contract.txt from the migrated schema")

// contractFile is the checked-in list of published columns: "<view> <column> <type>" per line.
var contractFile = filepath.Join(repoRoot, "sql", "views", "contract.txt")

const contractHeader = `# The published contract of the schema "reporting" (docs/sql.md): one line per column,
# "<view> <column> <type>" as information_schema reports them, in column order.
# TestReportingContract fails when a column listed here disappears or changes type, and when a
# new column is not listed yet. Columns may be added (list them here and in docs/sql.md), never
# removed, renamed or retyped: publish a new view instead.
# Regenerate after adding columns: go test ./internal/analytics -run TestReportingContract -update
`

type column struct{ view, name, typ string }

func (c column) String() string { return c.view + " " + c.name + " " + c.typ }

// publishedColumns reads the columns of the schema reporting from information_schema.
func publishedColumns(t *testing.T) []column {
	t.Helper()
	pool, _ := dbtest.Pool(t)
	rows, err := pool.Query(t.Context(), `SELECT table_name::text, column_name::text, data_type::text
		FROM information_schema.columns WHERE table_schema = 'reporting' ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.view, &c.name, &c.typ)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) == 0 {
		t.Fatal("the schema reporting has no columns")
	}
	return cols
}

// TestReportingContract: no published column disappears or changes type, and every published
// column is in the checked-in contract.
func TestReportingContract(t *testing.T) {
	t.Parallel()
	cols := publishedColumns(t)
	if *update {
		var b strings.Builder
		b.WriteString(contractHeader)
		for _, c := range cols {
			b.WriteString(c.String() + "\n")
		}
		if err := os.WriteFile(contractFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.Open(contractFile)
	if err != nil {
		t.Fatalf("read the contract: %v", err)
	}
	defer f.Close()
	have := map[string]column{}
	for _, c := range cols {
		have[c.view+"."+c.name] = c
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, " ", 3)
		if len(parts) != 3 {
			t.Fatalf("%s: bad line %q", contractFile, line)
		}
		want := column{parts[0], parts[1], parts[2]}
		listed[want.view+"."+want.name] = true
		got, ok := have[want.view+"."+want.name]
		switch {
		case !ok:
			t.Errorf("published column reporting.%s.%s (%s) disappeared: columns are never removed or renamed; publish a new view instead",
				want.view, want.name, want.typ)
		case got.typ != want.typ:
			t.Errorf("published column reporting.%s.%s changed type from %s to %s: publish a new view instead",
				want.view, want.name, want.typ, got.typ)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		if !listed[c.view+"."+c.name] {
			t.Errorf("new published column reporting.%s.%s (%s) is not in %s: describe it in docs/sql.md and run "+
				"go test ./internal/analytics -run TestReportingContract -update", c.view, c.name, c.typ, contractFile)
		}
	}
}

// docTypes maps the types docs/sql.md writes to information_schema's names.
var docTypes = map[string]string{"timestamptz": "timestamp with time zone"}

// summaryCounts are the columns a "*counts*" row of docs/sql.md stands for.
var summaryCounts = []string{"results", "pass", "fail", "warn", "error", "skip", "findings", "critical", "high", "medium", "low", "info"}

// TestDocsDescribeEveryColumn: docs/sql.md has a table for every published view listing exactly
// its columns, in order, with their types.
func TestDocsDescribeEveryColumn(t *testing.T) {
	t.Parallel()
	documented := docColumns(t)
	byView := map[string][]column{}
	for _, c := range publishedColumns(t) {
		byView[c.view] = append(byView[c.view], c)
	}
	for view, cols := range byView {
		doc, ok := documented[view]
		if !ok {
			t.Errorf("docs/sql.md has no section \"### reporting.%s\"", view)
			continue
		}
		if !slices.Equal(doc, cols) {
			t.Errorf("docs/sql.md describes reporting.%s as\n  %v\nbut it is\n  %v", view, doc, cols)
		}
	}
	for view := range documented {
		if _, ok := byView[view]; !ok {
			t.Errorf("docs/sql.md describes reporting.%s, which does not exist", view)
		}
	}
}

var tableRow = regexp.MustCompile(`^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|`)

// docColumns parses the column tables under the "### reporting.<view>" headings of docs/sql.md.
func docColumns(t *testing.T) map[string][]column {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "sql.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]column{}
	view := ""
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			view = ""
			if name, ok := strings.CutPrefix(line, "### reporting."); ok {
				view = strings.TrimSpace(name)
				out[view] = nil
			}
			continue
		}
		m := tableRow.FindStringSubmatch(line)
		if view == "" || m == nil || m[1] == "column" || strings.HasPrefix(m[1], "---") {
			continue
		}
		name, typ := m[1], m[2]
		if d, ok := docTypes[typ]; ok {
			typ = d
		}
		if name == "*counts*" {
			for _, c := range summaryCounts {
				out[view] = append(out[view], column{view, c, typ})
			}
			continue
		}
		out[view] = append(out[view], column{view, name, typ})
	}
	return out
}
