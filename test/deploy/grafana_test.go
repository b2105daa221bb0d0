package deploy

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"sigs.k8s.io/yaml"
)

var grafanaDir = filepath.Join(repoRoot, "deploy", "grafana")

// grafanaGridWidth is the width of Grafana's dashboard grid, in columns.
const grafanaGridWidth = 24

// postgresTargetFields are the fields a target of Grafana's PostgreSQL data source has in code
// mode. The Foundation SDK has no schema for that data source's queries (it decodes them as an
// untyped map), so this test is their schema: a misspelt field (rawSQL) would make Grafana show an
// empty panel without a word.
var postgresTargetFields = map[string]bool{
	"datasource": true, "editorMode": true, "format": true, "rawQuery": true, "rawSql": true, "refId": true,
}

// grafanaVariable matches a template variable or macro reference in SQL: $name, ${name},
// ${name:format}, $__macro.
var grafanaVariable = regexp.MustCompile(`\$\{?(\w+)`)

// TestGrafanaDashboardSchema decodes deploy/grafana/reports-dashboard.json strictly into the types
// of the Grafana Foundation SDK (generated from Grafana's own dashboard schema): a field Grafana
// does not know, a value of the wrong type or a missing required field fails, and so do the
// options of every panel, which the SDK checks against that panel plugin's schema. It then checks
// what the schema cannot: every panel and query uses the PostgreSQL data source that
// datasource.yaml provisions, every target is a raw SQL query of that data source, panel ids are
// unique and panels lie on the grid without overlapping, and every variable the SQL uses is
// defined.
func TestGrafanaDashboardSchema(t *testing.T) {
	// The SDK decodes panel options through a registry of panel plugins, empty until registered.
	plugins.RegisterDefaultPlugins()

	raw, err := os.ReadFile(filepath.Join(grafanaDir, "reports-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard.Dashboard
	if err := schemaErrors(d.UnmarshalJSONStrict(raw)); err != nil {
		t.Fatalf("reports-dashboard.json does not match Grafana's dashboard schema:\n%v", err)
	}
	if d.Uid == nil || *d.Uid == "" || d.Title == nil || *d.Title == "" {
		t.Error("the dashboard needs a uid (dashboards.yaml provisions by it) and a title")
	}
	ds := provisionedDatasource(t)

	variables := map[string]bool{}
	for _, v := range d.Templating.List {
		variables[v.Name] = true
		checkDatasource(t, "variable "+v.Name, v.Datasource, ds)
		if v.Query == nil || v.Query.String == nil || !strings.Contains(*v.Query.String, "reporting.") {
			t.Errorf("variable %s: want a SQL query on the reporting views, got %+v", v.Name, v.Query)
		}
	}

	panels := dashboardPanels(t, raw)
	if len(panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	ids := map[uint32]string{}
	for _, p := range panels {
		name := panelName(p)
		if p.Id == nil {
			t.Errorf("%s has no id", name)
		} else if other, dup := ids[*p.Id]; dup {
			t.Errorf("%s has the id of %s", name, other)
		} else {
			ids[*p.Id] = name
		}
		if _, ok := cog.ConfigForPanelcfgVariant(p.Type); !ok {
			t.Errorf("%s: panel type %q is not a Grafana panel the SDK knows, so its options went unchecked", name, p.Type)
		}
		checkDatasource(t, name, p.Datasource, ds)
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", name)
		}
		for i, target := range p.Targets {
			checkPostgresTarget(t, fmt.Sprintf("%s target %d", name, i), target, ds, variables)
		}
	}
	checkGrid(t, panels)
}

// schemaErrors is the error of the SDK's strict decoding, or nil. The SDK returns its error list
// (cog.BuildErrors) as an error even when the list is empty, which a plain err != nil would take
// for a failure.
func schemaErrors(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

// dashboardPanels decodes the panels of the dashboard one by one. The strict decoding of the whole
// dashboard reports the panels' schema errors but keeps none of them: the SDK (v0.0.22) stores a
// panel only when its decoding returned a nil error, and it returns its empty error list instead
// (see schemaErrors). Rows fail the test: the dashboard has none, and panels inside collapsed rows
// would need their own walk.
func dashboardPanels(t *testing.T, raw []byte) []*dashboard.Panel {
	t.Helper()
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var out []*dashboard.Panel
	for i, rawPanel := range d.Panels {
		var kind struct{ Type string }
		if err := json.Unmarshal(rawPanel, &kind); err != nil {
			t.Fatal(err)
		}
		if kind.Type == "row" {
			t.Errorf("panel %d is a row; this test does not look into rows", i)
			continue
		}
		p := &dashboard.Panel{}
		if err := schemaErrors(p.UnmarshalJSONStrict(rawPanel)); err != nil {
			t.Fatalf("panel %d: %v", i, err)
		}
		out = append(out, p)
	}
	return out
}

func panelName(p *dashboard.Panel) string {
	title := ""
	if p.Title != nil {
		title = *p.Title
	}
	return fmt.Sprintf("panel %q", title)
}

// datasourceRef is what a dashboard refers to a data source by.
type datasourceRef struct{ Type, UID string }

// provisionedDatasource reads the one data source datasource.yaml provisions.
func provisionedDatasource(t *testing.T) datasourceRef {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(grafanaDir, "datasource.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Datasources []struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasources"`
	}
	// Only type and uid matter here; the other fields (jsonData, secureJsonData, ...) are Grafana's.
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("datasource.yaml: %v", err)
	}
	if len(file.Datasources) != 1 {
		t.Fatalf("datasource.yaml provisions %d data sources, want 1", len(file.Datasources))
	}
	s := file.Datasources[0]
	if s.Type != "grafana-postgresql-datasource" || s.UID == "" {
		t.Fatalf("datasource.yaml: want a PostgreSQL data source with a uid, got type %q uid %q", s.Type, s.UID)
	}
	return datasourceRef{Type: s.Type, UID: s.UID}
}

func checkDatasource(t *testing.T, what string, ref *common.DataSourceRef, want datasourceRef) {
	t.Helper()
	if ref == nil || ref.Type == nil || ref.Uid == nil {
		t.Errorf("%s: no data source (type and uid), want %+v", what, want)
		return
	}
	if got := (datasourceRef{Type: *ref.Type, UID: *ref.Uid}); got != want {
		t.Errorf("%s: data source %+v, want the provisioned %+v", what, got, want)
	}
}

// checkPostgresTarget checks one query of a panel: a raw SQL query of the provisioned data source,
// in a format the data source has, whose variables are defined or Grafana macros.
func checkPostgresTarget(t *testing.T, what string, target variants.Dataquery, ds datasourceRef, variables map[string]bool) {
	t.Helper()
	q, ok := target.(variants.UnknownDataquery)
	if !ok {
		t.Errorf("%s: decoded as %T, not as a query of the PostgreSQL data source", what, target)
		return
	}
	for field := range q {
		if !postgresTargetFields[field] {
			t.Errorf("%s: field %q is not one of the PostgreSQL data source's", what, field)
		}
	}
	ref, _ := q["datasource"].(map[string]any)
	if ref["type"] != ds.Type || ref["uid"] != ds.UID {
		t.Errorf("%s: data source %v, want the provisioned %+v", what, ref, ds)
	}
	if q["editorMode"] != "code" || q["rawQuery"] != true {
		t.Errorf("%s: want a raw SQL query (editorMode code, rawQuery true), got editorMode %v rawQuery %v", what, q["editorMode"], q["rawQuery"])
	}
	if f := q["format"]; f != "table" && f != "time_series" {
		t.Errorf("%s: format %v, want table or time_series", what, f)
	}
	if id, _ := q["refId"].(string); id == "" {
		t.Errorf("%s: no refId", what)
	}
	sql, _ := q["rawSql"].(string)
	if !strings.Contains(sql, "reporting.") {
		t.Errorf("%s: want SQL on the reporting views, got %q", what, sql)
	}
	for _, m := range grafanaVariable.FindAllStringSubmatch(sql, -1) {
		if name := m[1]; !strings.HasPrefix(name, "__") && !variables[name] {
			t.Errorf("%s: the SQL uses $%s, which the dashboard does not define", what, name)
		}
	}
}

// checkGrid checks that every panel lies within the grid's width and that no two overlap.
func checkGrid(t *testing.T, panels []*dashboard.Panel) {
	t.Helper()
	type placed struct {
		name string
		pos  dashboard.GridPos
	}
	var all []placed
	for _, p := range panels {
		if p.GridPos == nil {
			t.Errorf("%s has no gridPos", panelName(p))
			continue
		}
		g := *p.GridPos
		if g.W == 0 || g.H == 0 || g.X+g.W > grafanaGridWidth {
			t.Errorf("%s: gridPos %+v does not fit the %d-column grid", panelName(p), g, grafanaGridWidth)
		}
		all = append(all, placed{panelName(p), g})
	}
	slices.SortFunc(all, func(a, b placed) int { return cmp.Or(cmp.Compare(a.pos.Y, b.pos.Y), cmp.Compare(a.pos.X, b.pos.X)) })
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.pos.X < b.pos.X+b.pos.W && b.pos.X < a.pos.X+a.pos.W && a.pos.Y < b.pos.Y+b.pos.H && b.pos.Y < a.pos.Y+a.pos.H {
				t.Errorf("%s (%+v) overlaps %s (%+v)", a.name, a.pos, b.name, b.pos)
			}
		}
	}
}
