package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/crdmigrate"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// The differential suite sends one sequence of requests, for every kind, to reports-server and to
// kube-apiserver serving the same kind from a CRD in etcd, and compares the answers: status codes
// and bodies, after removing what is different by nature (resourceVersions, uids, times, the
// names generateName made, continue tokens). The CRDs live in groups of their own (crdGroupPrefix
// before the served group), so both paths run in one cluster at once; their answers name the
// served group before they are compared.
const (
	crdGroupPrefix = "crd."
	diffNamespace  = "differential"
	// designDoc is where the known differences are explained; knownDifferences names its rows.
	designDoc        = "docs/design.md"
	designDocSection = "## Where we answer differently from the report CRDs"
)

// knownDifferences are the requests of the sequence, by step name, whose answers differ by
// design, each with the row of the table in designDoc that explains why (its first column), the
// status code reports-server must answer and, when the answers are both objects, the only places
// where they may differ. Any other difference fails the suite, and so does a known one that no
// longer occurs or whose row is gone from designDoc: the list and the document stay in sync.
var knownDifferences = map[string]knownDifference{
	"patch strategic merge":          {row: "strategic merge patch", ours: http.StatusOK},
	"watch from an unparsable rv":    {row: "`watch&resourceVersion=abc`, a resourceVersion beyond 2^63−1", ours: http.StatusBadRequest},
	"update with an unparsable rv":   {row: "create with `metadata.resourceVersion` set; update with an unparsable one", ours: http.StatusBadRequest},
	"create with a resourceVersion":  {row: "create with `metadata.resourceVersion` set; update with an unparsable one", ours: http.StatusBadRequest},
	"patch into the other kind":      {row: "a merge or JSON patch that changes `kind` to the other report kind", ours: http.StatusUnprocessableEntity, where: []string{".message", ".details."}},
	"create with an empty string":    {row: emptyStringsRow, ours: http.StatusCreated, where: emptyStringPaths},
	"get with an empty string":       {row: emptyStringsRow, ours: http.StatusOK, where: emptyStringPaths},
	"table with an empty string":     {row: emptyStringsRow, ours: http.StatusOK, where: []string{".rows[0].cells[2]"}},
	"discovery of the group version": {row: "discovery: the resources of a group version", ours: http.StatusOK, where: []string{".resources[0].group", ".resources[0].version", ".resources[1].group", ".resources[1].version"}},
}

const emptyStringsRow = "empty strings the client sent (`scope.name: \"\"`)"

// emptyStringPaths are the fields the sequence sends as "".
var emptyStringPaths = []string{".results[0].category", ".spec.results[0].category", ".scope.name"}

type knownDifference struct {
	row  string
	ours int
	// where are the paths (or, ending in ".", the prefixes of paths) that may differ; any when empty.
	where []string
}

// allows tells whether the difference at path is one d explains.
func (d knownDifference) allows(path string) bool {
	if len(d.where) == 0 {
		return true
	}
	for _, w := range d.where {
		if path == w || (strings.HasSuffix(w, ".") && strings.HasPrefix(path, w)) {
			return true
		}
	}
	return false
}

// testDifferential runs the sequence for every kind, then compares discovery.
func testDifferential(t *testing.T, c *cluster.Cluster) {
	ctx := testContext(t, 5*time.Minute)
	checkDesignRows(t)
	dyn := dynamicClient(t, c)
	ensureNamespace(t, c, diffNamespace, nil)
	for _, k := range reports.All() {
		createDifferentialCRD(ctx, t, dyn, k)
	}
	t.Cleanup(func() {
		for _, k := range reports.All() {
			_ = dyn.Resource(crdmigrate.CRDResource).Delete(context.Background(), k.Resource+"."+crdGroup(k.GroupVersion.Group), metav1.DeleteOptions{})
		}
	})
	hc, err := rest.HTTPClientFor(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range reports.All() {
		t.Run(k.Kind, func(t *testing.T) {
			ours := &side{name: "reports-server", host: c.AdminConfig.Host, http: hc, group: k.GroupVersion.Group, vars: map[string]string{}}
			crd := &side{name: "CRD", host: c.AdminConfig.Host, http: hc, group: crdGroup(k.GroupVersion.Group), vars: map[string]string{}}
			for _, s := range differentialSteps(k) {
				compareStep(t, k, s, ours, crd, seen)
			}
		})
	}
	t.Run("Discovery", func(t *testing.T) {
		for _, gv := range servedGroupVersions() {
			for name, path := range map[string]string{"discovery of the group": "/apis/%s", "discovery of the group version": "/apis/%s/" + gv.Version} {
				s := step{name: name, absolute: path}
				ours := &side{name: "reports-server", host: c.AdminConfig.Host, http: hc, group: gv.Group}
				crd := &side{name: "CRD", host: c.AdminConfig.Host, http: hc, group: crdGroup(gv.Group)}
				compareStep(t, reports.Kind{GroupVersion: gv}, s, ours, crd, seen)
			}
		}
	})
	for name := range knownDifferences {
		if !seen[name] {
			t.Errorf("known difference %q did not occur: the answers agree now, remove it from knownDifferences and %s", name, designDoc)
		}
	}
}

// crdGroup is the group of the CRD that mirrors the served group.
func crdGroup(served string) string { return crdGroupPrefix + served }

// checkDesignRows fails unless every row knownDifferences names is in the table of designDoc.
func checkDesignRows(t *testing.T) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(wd, "..", "..", designDoc))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), designDocSection+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", designDoc, designDocSection)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "|") {
			rows[strings.TrimSpace(cells[1])] = true
		}
	}
	for name, d := range knownDifferences {
		if !rows[d.row] {
			t.Errorf("known difference %q names the row %q, which is not in the table of %s, %q", name, d.row, designDoc, designDocSection)
		}
	}
}

// createDifferentialCRD installs k in its CRD group, as the report CRDs declare it: the schema of
// this repository's type (which mirrors the upstream CRD's), the printer columns, short names,
// categories and selectable fields; then waits until kube-apiserver serves it.
func createDifferentialCRD(ctx context.Context, t *testing.T, dyn dynamic.Interface, k reports.Kind) {
	t.Helper()
	s, err := crdSchema(k.OpenAPIModelName())
	if err != nil {
		t.Fatal(err)
	}
	scope := "Cluster"
	if k.Namespaced {
		scope = "Namespaced"
	}
	var columns []any
	for _, col := range k.TableColumns {
		if col.Format == "name" {
			continue
		}
		path := strings.TrimPrefix(col.Description, "Custom resource definition column (in JSONPath format): ")
		c := map[string]any{"name": col.Name, "type": col.Type, "jsonPath": path}
		if col.Priority != 0 {
			c["priority"] = int64(col.Priority)
		}
		columns = append(columns, c)
	}
	var selectable []any
	for _, f := range k.SelectableFields {
		if !strings.HasPrefix(f, "metadata.") {
			selectable = append(selectable, map[string]any{"jsonPath": "." + f})
		}
	}
	names := map[string]any{"plural": k.Resource, "singular": k.Singular, "kind": k.Kind, "listKind": k.ListKind}
	if len(k.ShortNames) > 0 {
		names["shortNames"] = toAny(k.ShortNames)
	}
	if len(k.Categories) > 0 {
		names["categories"] = toAny(k.Categories)
	}
	version := map[string]any{
		"name": k.GroupVersion.Version, "served": true, "storage": true,
		"schema":                   map[string]any{"openAPIV3Schema": s},
		"additionalPrinterColumns": columns,
	}
	if len(selectable) > 0 {
		version["selectableFields"] = selectable
	}
	group := crdGroup(k.GroupVersion.Group)
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": k.Resource + "." + group},
		"spec": map[string]any{
			"group": group, "scope": scope, "names": names, "versions": []any{version},
		},
	}}
	if _, err := dyn.Resource(crdmigrate.CRDResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s: %v", crd.GetName(), err)
	}
	gvr := schema.GroupVersionResource{Group: group, Version: k.GroupVersion.Version, Resource: k.Resource}
	eventually(t, "CRD "+crd.GetName()+" served", time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// step is one request of the sequence. Path, query and body may hold placeholders that each side
// fills in with its own values: {{apiVersion}}, {{rv:NAME}} and {{uid:NAME}} (what save kept).
type step struct {
	name string
	// absolute is a path with %s for the group (discovery); otherwise the request goes to the
	// kind's collection, followed by path ("/a").
	absolute    string
	method      string
	path        string
	query       string
	accept      string
	contentType string
	body        any // marshalled to JSON, unless a string (sent as it is)
	// save keeps the answer's metadata.resourceVersion as {{rv:save}}, its uid as {{uid:save}}
	// and its continue token as {{continue:save}}.
	save string
	// watchEvents is how many events a watch reads before it stops.
	watchEvents int
}

// side is one of the two servers: requests go to the same kube-apiserver, for group.
type side struct {
	name  string
	host  string
	http  *http.Client
	group string
	vars  map[string]string
}

// answer is a response, normalized for comparison.
type answer struct {
	code int
	body any
}

func compareStep(t *testing.T, k reports.Kind, s step, ours, crd *side, seen map[string]bool) {
	t.Helper()
	a, b := ours.send(t, k, s), crd.send(t, k, s)
	same := a.code == b.code && reflect.DeepEqual(a.body, b.body)
	known, isKnown := knownDifferences[s.name]
	switch {
	case same:
		return
	case isKnown:
		seen[s.name] = true
		if a.code != known.ours {
			t.Errorf("%s (a known difference): reports-server answers %d, want %d:\n%s", s.name, a.code, known.ours, show(a.body))
		}
		var diffs, unexplained []string
		diffPaths("", a.body, b.body, &diffs)
		for _, d := range diffs {
			if path, _, _ := strings.Cut(strings.TrimSpace(d), ": "); !known.allows(path) {
				unexplained = append(unexplained, d)
			}
		}
		t.Logf("%s: known difference (%s): reports-server %d, CRD %d\n%s", s.name, known.row, a.code, b.code, strings.Join(diffs, "\n"))
		if len(unexplained) > 0 {
			t.Errorf("%s: differences beyond the known one (%s):\n%s", s.name, known.row, strings.Join(unexplained, "\n"))
		}
	default:
		var diffs []string
		diffPaths("", a.body, b.body, &diffs)
		t.Errorf("%s: the answers differ: reports-server %d, CRD %d\n%s\nreports-server:\n%s", s.name, a.code, b.code, strings.Join(diffs, "\n"), show(a.body))
	}
}

// diffPaths lists where a and b differ (at most 20 places), each with both values.
func diffPaths(path string, a, b any, out *[]string) {
	if len(*out) >= 20 || reflect.DeepEqual(a, b) {
		return
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			diffPaths(path+"."+k, am[k], bm[k], out)
		}
		return
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		for i := range al {
			diffPaths(fmt.Sprintf("%s[%d]", path, i), al[i], bl[i], out)
		}
		return
	}
	ar, _ := json.Marshal(a)
	br, _ := json.Marshal(b)
	*out = append(*out, fmt.Sprintf("  %s: reports-server %s, CRD %s", path, truncate(string(ar)), truncate(string(br))))
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func show(v any) string {
	raw, _ := json.MarshalIndent(v, "", "  ")
	if len(raw) > 1500 {
		return string(raw[:1500]) + "\n…"
	}
	return string(raw)
}

// fill replaces the placeholders of s with this side's values.
func (sd *side) fill(s string, k reports.Kind) string {
	s = strings.ReplaceAll(s, "{{apiVersion}}", sd.group+"/"+k.GroupVersion.Version)
	for name, v := range sd.vars {
		s = strings.ReplaceAll(s, "{{"+name+"}}", v)
	}
	return s
}

func (sd *side) url(k reports.Kind, s step) string {
	if s.absolute != "" {
		return sd.host + fmt.Sprintf(s.absolute, sd.group)
	}
	p := "/apis/" + sd.group + "/" + k.GroupVersion.Version
	if k.Namespaced {
		p += "/namespaces/" + diffNamespace
	}
	p += "/" + k.Resource + sd.fill(s.path, k)
	query := sd.fill(s.query, k)
	if s.path == "" {
		query = withSuiteSelector(query)
	}
	if query != "" {
		p += "?" + query
	}
	return sd.host + p
}

// suiteLabel marks every object the sequence creates; its collection requests select it, so
// that cluster-scoped reports the earlier checks left behind are not part of the comparison.
const suiteLabel = "differential.reports-server.io/suite"

// withSuiteSelector adds the selector of suiteLabel to a collection request's label selector.
func withSuiteSelector(query string) string {
	sel := url.QueryEscape(suiteLabel + "=yes")
	if strings.Contains(query, "labelSelector=") {
		return strings.Replace(query, "labelSelector=", "labelSelector="+sel+"%2C", 1)
	}
	if query == "" {
		return "labelSelector=" + sel
	}
	return query + "&labelSelector=" + sel
}

func (sd *side) send(t *testing.T, k reports.Kind, s step) answer {
	t.Helper()
	var body io.Reader
	if s.body != nil {
		raw, ok := s.body.(string)
		if !ok {
			b, err := json.Marshal(s.body)
			if err != nil {
				t.Fatal(err)
			}
			raw = string(b)
		}
		body = strings.NewReader(sd.fill(raw, k))
	}
	method := s.method
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, sd.url(k, s), body)
	if err != nil {
		t.Fatal(err)
	}
	accept := s.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if s.contentType != "" {
		req.Header.Set("Content-Type", s.contentType)
	} else if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := sd.http.Do(req)
	if err != nil {
		t.Fatalf("%s: %s: %v", s.name, sd.name, err)
	}
	defer resp.Body.Close()
	if s.watchEvents > 0 && resp.StatusCode == http.StatusOK {
		return answer{code: resp.StatusCode, body: sd.readEvents(t, s, resp.Body, cancel)}
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %s: read: %v", s.name, sd.name, err)
	}
	var v any
	if err := json.Unmarshal(sd.unqualify(raw), &v); err != nil {
		v = string(raw)
	}
	sd.keep(s.save, v)
	return answer{code: resp.StatusCode, body: normalize(v)}
}

// readEvents reads s.watchEvents events of a watch (or what arrives in 10 seconds), then stops it.
func (sd *side) readEvents(t *testing.T, s step, body io.Reader, stop func()) any {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, stop)
	defer timer.Stop()
	var events []any
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for len(events) < s.watchEvents && sc.Scan() {
		var v any
		if err := json.Unmarshal(sd.unqualify(sc.Bytes()), &v); err != nil {
			t.Fatalf("%s: %s: watch event: %v: %s", s.name, sd.name, err, sc.Bytes())
		}
		events = append(events, normalize(v))
	}
	stop()
	if len(events) < s.watchEvents {
		t.Errorf("%s: %s: %d watch events in 10 s, want %d", s.name, sd.name, len(events), s.watchEvents)
	}
	return events
}

// unqualify names the served group in a CRD's answer.
func (sd *side) unqualify(raw []byte) []byte {
	if !strings.HasPrefix(sd.group, crdGroupPrefix) {
		return raw
	}
	return bytes.ReplaceAll(raw, []byte(sd.group), []byte(strings.TrimPrefix(sd.group, crdGroupPrefix)))
}

// keep saves what a later step of this side refers to.
func (sd *side) keep(name string, v any) {
	if name == "" {
		return
	}
	m, _ := v.(map[string]any)
	md, _ := m["metadata"].(map[string]any)
	if rv, ok := md["resourceVersion"].(string); ok {
		sd.vars["rv:"+name] = rv
	}
	if uid, ok := md["uid"].(string); ok {
		sd.vars["uid:"+name] = uid
	}
	if c, ok := md["continue"].(string); ok {
		sd.vars["continue:"+name] = c
	}
	if c, ok := m["continue"].(string); ok { // a Table
		sd.vars["continue:"+name] = c
	}
	if rv, ok := m["resourceVersion"].(string); ok && m["kind"] == "Table" {
		sd.vars["rv:"+name] = rv
	}
}

// normalize removes from an answer what differs between any two servers by nature: revisions,
// uids, times, generated names and continue tokens (their presence stays), and storage version
// hashes in discovery.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for key, val := range x {
			switch key {
			case "storageVersionHash":
				continue // a hash of the storage version's identity: differs by nature
			case "resourceVersion", "uid", "creationTimestamp", "time", "selfLink":
				if s, ok := val.(string); ok && s != "" {
					out[key] = "<" + key + ">"
					continue
				}
			case "continue":
				// An empty token is no token: CRD lists print it, ours omit it.
				if s, ok := val.(string); ok {
					if s != "" {
						out[key] = "<continue>"
					}
					continue
				}
			case "message":
				if s, ok := val.(string); ok {
					out[key] = normalizeMessage(s)
					continue
				}
			}
			out[key] = normalize(val)
		}
		sortDiscovery(out)
		if cols, ok := x["columnDefinitions"].([]any); ok {
			normalizeAge(out, cols)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = normalize(val)
		}
		return out
	case string:
		return generatedName.ReplaceAllString(x, "${1}<generated>")
	}
	return v
}

// generatedName is a name generateName made of the prefix "gen-" the sequence uses.
var generatedName = regexp.MustCompile(`^(gen-)[bcdfghjklmnpqrstvwxz2456789]{5}$`)

// sortDiscovery puts the resources of a discovery document in name order and their verbs in
// alphabetical order: both are sets to clients, listed in whatever order a server keeps them.
func sortDiscovery(m map[string]any) {
	if verbs, ok := m["verbs"].([]any); ok && m["name"] != nil {
		slices.SortFunc(verbs, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	}
	if m["kind"] == "APIResourceList" {
		if res, ok := m["resources"].([]any); ok {
			slices.SortFunc(res, func(a, b any) int {
				am, _ := a.(map[string]any)
				bm, _ := b.(map[string]any)
				return strings.Compare(fmt.Sprint(am["name"]), fmt.Sprint(bm["name"]))
			})
		}
	}
}

var (
	uidPattern      = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	revisionPattern = regexp.MustCompile(`\(\d+\)`)
)

// normalizeMessage blanks the uids and the revisions (in parentheses: "does not match the
// ResourceVersion in record (10)") that error messages quote.
func normalizeMessage(s string) string {
	return revisionPattern.ReplaceAllString(uidPattern.ReplaceAllString(s, "<uid>"), "(<rv>)")
}

// normalizeAge blanks a Table's Age cells: the age of an object is a time.
func normalizeAge(table map[string]any, cols []any) {
	age := -1
	for i, c := range cols {
		if m, ok := c.(map[string]any); ok && m["name"] == "Age" {
			age = i
		}
	}
	rows, _ := table["rows"].([]any)
	for _, r := range rows {
		row, _ := r.(map[string]any)
		cells, _ := row["cells"].([]any)
		if age >= 0 && age < len(cells) {
			cells[age] = "<age>"
		}
	}
}

const (
	tableAccept    = "application/json;as=Table;v=v1;g=meta.k8s.io"
	metadataAccept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
	metaListAccept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
	mergePatch     = "application/merge-patch+json"
	jsonPatch      = "application/json-patch+json"
	strategicPatch = "application/strategic-merge-patch+json"
	applyPatch     = "application/apply-patch+yaml"
)

// diffReport is a report of k as a client sends it, with the side's apiVersion.
func diffReport(k reports.Kind, name string, labels map[string]string, result, scopeName string) map[string]any {
	u := report(k, diffNamespace, name, result, scopeName)
	u.SetAPIVersion("{{apiVersion}}")
	all := map[string]string{suiteLabel: "yes"}
	maps.Copy(all, labels)
	u.SetLabels(all)
	return u.Object
}

// differentialSteps is the sequence of requests for k.
func differentialSteps(k reports.Kind) []step {
	scoped := !isEphemeral(k)
	var other string
	for _, o := range reports.All() {
		if o.GroupVersion == k.GroupVersion && o.Kind != k.Kind {
			other = o.Kind
		}
	}
	withRV := func(obj map[string]any, rv string) map[string]any {
		u := &unstructured.Unstructured{Object: obj}
		u.SetResourceVersion(rv)
		return u.Object
	}
	otherKind := diffReport(k, "b", nil, "fail", "b")
	otherKind["kind"] = other
	generated := diffReport(k, "", nil, "pass", "gen")
	if err := unstructured.SetNestedField(generated, "gen-", "metadata", "generateName"); err != nil {
		panic(err)
	}
	// An empty string in a result (all kinds) and in the scope's name (the kinds with a scope,
	// where it is a Table cell too); an empty annotation, which both keep.
	emptyString := diffReport(k, "empty", nil, "pass", "")
	if !scoped {
		emptyString = diffReport(k, "empty", nil, "pass", "owner")
	}
	emptyString["metadata"].(map[string]any)["annotations"] = map[string]any{"audit.kyverno.io/resource.name": ""}
	results, _, _ := unstructured.NestedSlice(emptyString, contentPath(k, "results")...)
	results[0].(map[string]any)["category"] = ""
	if err := unstructured.SetNestedSlice(emptyString, results, contentPath(k, "results")...); err != nil {
		panic(err)
	}

	steps := []step{
		// Create, read, dry run, generateName.
		{name: "list of nothing", save: "empty"},
		{name: "create a", method: http.MethodPost, body: diffReport(k, "a", map[string]string{"tier": "web", "env": "prod"}, "pass", "a"), save: "a0"},
		{name: "create a again", method: http.MethodPost, body: diffReport(k, "a", nil, "pass", "a")},
		{name: "create with a resourceVersion", method: http.MethodPost, body: withRV(diffReport(k, "rv", nil, "pass", "rv"), "1")},
		{name: "create with an invalid name", method: http.MethodPost, body: diffReport(k, "Not_A_Name", nil, "pass", "x")},
		{name: "create of the other kind", method: http.MethodPost, body: otherKind},
		// The group comes late: the message quotes the body's first 30 bytes.
		{name: "create with malformed JSON", method: http.MethodPost, body: `{"metadata":{"name":"broken"},"apiVersion":"{{apiVersion}}","kind":`},
		{name: "create with an unknown field, strict", method: http.MethodPost, query: "fieldValidation=Strict",
			body: `{"apiVersion":"{{apiVersion}}","kind":"` + k.Kind + `","metadata":{"name":"strict"},"foo":1}`},
		{name: "create dry run", method: http.MethodPost, query: "dryRun=All", body: diffReport(k, "dry", nil, "pass", "dry")},
		{name: "get after dry run", path: "/dry"},
		{name: "create with generateName", method: http.MethodPost, body: generated},
		{name: "create b", method: http.MethodPost, body: diffReport(k, "b", map[string]string{"tier": "db"}, "fail", "b")},
		{name: "create c", method: http.MethodPost, body: diffReport(k, "c", map[string]string{"tier": "web"}, "warn", "c")},
		{name: "get a", path: "/a"},
		{name: "get missing", path: "/missing"},
		{name: "get a as Table", path: "/a", accept: tableAccept},
		{name: "get a as metadata", path: "/a", accept: metadataAccept},

		// Lists: selectors and paging, good and bad values.
		{name: "list", save: "list"},
		{name: "list tier=web", query: "labelSelector=tier%3Dweb"},
		{name: "list tier!=web", query: "labelSelector=tier%21%3Dweb"},
		{name: "list tier in (web,db)", query: "labelSelector=tier+in+%28web%2Cdb%29"},
		{name: "list env exists", query: "labelSelector=env"},
		{name: "list env does not exist", query: "labelSelector=%21env"},
		{name: "list bad label selector", query: "labelSelector=tier%3D%28"},
		{name: "list metadata.name=a", query: "fieldSelector=metadata.name%3Da"},
		{name: "list metadata.name!=a", query: "fieldSelector=metadata.name%21%3Da"},
		{name: "list unknown field selector", query: "fieldSelector=foo%3Dbar"},
		{name: "list bad field selector", query: "fieldSelector=%3D%3D"},
		{name: "list limit=2", query: "limit=2", save: "page1"},
		{name: "list next page", query: "limit=2&continue={{continue:page1}}"},
		{name: "list bad continue", query: "limit=2&continue=abc"},
		{name: "list limit=abc", query: "limit=abc"},
		{name: "list limit=-1", query: "limit=-1"},
		{name: "list resourceVersion=0", query: "resourceVersion=0"},
		{name: "list NotOlderThan", query: "resourceVersion={{rv:list}}&resourceVersionMatch=NotOlderThan"},
		{name: "list Exact without resourceVersion", query: "resourceVersionMatch=Exact"},
		{name: "list bad resourceVersionMatch", query: "resourceVersion=0&resourceVersionMatch=Newest"},
		{name: "list as Table", accept: tableAccept},
		{name: "list as Table without objects", accept: tableAccept, query: "includeObject=None"},
		{name: "list as Table with whole objects", accept: tableAccept, query: "includeObject=Object"},
		{name: "list as Table, paged", accept: tableAccept, query: "limit=1", save: "tpage"},
		{name: "list as metadata", accept: metaListAccept},
		{name: "list as metadata tier=web", accept: metaListAccept, query: "labelSelector=tier%3Dweb"},
	}
	if scoped {
		steps = append(steps,
			step{name: "list scope.name=b", query: "fieldSelector=scope.name%3Db"},
			step{name: "list scope.kind=Pod,metadata.name!=a", query: "fieldSelector=scope.kind%3DPod%2Cmetadata.name%21%3Da"},
		)
	}
	if k.Namespaced {
		steps = append(steps, step{name: "list metadata.namespace", query: "fieldSelector=metadata.namespace%3D" + diffNamespace})
	}

	// Changes: every patch type, apply, update.
	steps = append(steps,
		step{name: "patch merge", method: http.MethodPatch, path: "/a", contentType: mergePatch, body: map[string]any{"metadata": map[string]any{"labels": map[string]any{"patched": "merge"}}}},
		step{name: "patch json", method: http.MethodPatch, path: "/a", contentType: jsonPatch,
			body: []any{map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]any{"note": "json"}}}},
		step{name: "patch json, failing test", method: http.MethodPatch, path: "/a", contentType: jsonPatch,
			body: []any{map[string]any{"op": "test", "path": "/metadata/name", "value": "z"}}},
		step{name: "patch json, bad document", method: http.MethodPatch, path: "/a", contentType: jsonPatch, body: `{"op":"add"}`},
		// The value the merge patch set: a patch that changes nothing, so the objects and the
		// watches below stay comparable whatever this answer is.
		step{name: "patch strategic merge", method: http.MethodPatch, path: "/a", contentType: strategicPatch, body: map[string]any{"metadata": map[string]any{"labels": map[string]any{"patched": "merge"}}}},
		step{name: "get after strategic merge", path: "/a"},
		step{name: "patch into the other kind", method: http.MethodPatch, path: "/a", contentType: mergePatch, body: map[string]any{"kind": other}},
		step{name: "patch missing", method: http.MethodPatch, path: "/missing", contentType: mergePatch, body: map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "y"}}}},
		step{name: "patch dry run", method: http.MethodPatch, path: "/a", query: "dryRun=All", contentType: mergePatch, body: map[string]any{"metadata": map[string]any{"labels": map[string]any{"dry": "run"}}}},
		step{name: "apply without fieldManager", method: http.MethodPatch, path: "/a", contentType: applyPatch, body: applied(k, "a", "fail")},
		step{name: "apply with a conflict", method: http.MethodPatch, path: "/a", query: "fieldManager=applier", contentType: applyPatch, body: applied(k, "a", "fail")},
		step{name: "apply with force", method: http.MethodPatch, path: "/a", query: "fieldManager=applier&force=true", contentType: applyPatch, body: applied(k, "a", "fail")},
		step{name: "apply creates", method: http.MethodPatch, path: "/applied", query: "fieldManager=applier", contentType: applyPatch, body: applied(k, "applied", "pass")},
		step{name: "apply force without apply", method: http.MethodPatch, path: "/a", query: "force=true", contentType: mergePatch, body: map[string]any{}},
		step{name: "get a after patches", path: "/a", save: "a1"},
		step{name: "update", method: http.MethodPut, path: "/a", body: withRV(diffReport(k, "a", map[string]string{"tier": "web"}, "warn", "a"), "{{rv:a1}}"), save: "a2"},
		step{name: "update with a stale rv", method: http.MethodPut, path: "/a", body: withRV(diffReport(k, "a", nil, "fail", "a"), "{{rv:a1}}")},
		step{name: "update without rv", method: http.MethodPut, path: "/a", body: diffReport(k, "a", nil, "fail", "a")},
		step{name: "update with an unparsable rv", method: http.MethodPut, path: "/a", body: withRV(diffReport(k, "a", nil, "fail", "a"), "abc")},
		step{name: "update with another name", method: http.MethodPut, path: "/a", body: withRV(diffReport(k, "other", nil, "fail", "a"), "{{rv:a2}}")},
		step{name: "update of the other kind", method: http.MethodPut, path: "/a", body: withRV(otherKind, "{{rv:a2}}")},
		step{name: "update missing", method: http.MethodPut, path: "/missing", body: withRV(diffReport(k, "missing", nil, "fail", "a"), "{{rv:a2}}")},
		step{name: "update dry run", method: http.MethodPut, path: "/a", query: "dryRun=All", body: withRV(diffReport(k, "a", nil, "skip", "a"), "{{rv:a2}}")},
		step{name: "get a after updates", path: "/a"},

		// Watches from a resourceVersion: the history since the first list (merge, JSON and
		// forced apply patches, the object apply created, the update).
		step{name: "watch from the first list", query: "watch=1&resourceVersion={{rv:list}}", watchEvents: 5},
		step{name: "watch tier=web from the first list", query: "watch=1&labelSelector=tier%3Dweb&resourceVersion={{rv:list}}", watchEvents: 4},
		step{name: "watch from an unparsable rv", query: "watch=1&resourceVersion=abc"},

		// Empty strings the client sent.
		step{name: "create with an empty string", method: http.MethodPost, body: emptyString},
		step{name: "get with an empty string", path: "/empty"},
		step{name: "table with an empty string", path: "/empty", accept: tableAccept},
		step{name: "delete with an empty string", method: http.MethodDelete, path: "/empty"},

		// Deletes: preconditions, dry run, deletecollection.
		step{name: "delete with a wrong uid", method: http.MethodDelete, path: "/b", body: map[string]any{"preconditions": map[string]any{"uid": "00000000-0000-0000-0000-000000000000"}}},
		step{name: "delete with a stale rv", method: http.MethodDelete, path: "/a", body: map[string]any{"preconditions": map[string]any{"resourceVersion": "{{rv:a1}}"}}},
		step{name: "delete dry run", method: http.MethodDelete, path: "/a", query: "dryRun=All"},
		step{name: "get a after dry-run delete", path: "/a"},
		step{name: "delete with the current rv", method: http.MethodDelete, path: "/a", body: map[string]any{"preconditions": map[string]any{"resourceVersion": "{{rv:a2}}"}}},
		step{name: "delete missing", method: http.MethodDelete, path: "/a"},
		step{name: "get c for its uid", path: "/c", save: "c"},
		step{name: "delete with the right uid", method: http.MethodDelete, path: "/c", body: map[string]any{"preconditions": map[string]any{"uid": "{{uid:c}}"}}},
		step{name: "deletecollection bad selector", method: http.MethodDelete, query: "labelSelector=tier%3D%28"},
		step{name: "deletecollection tier=db dry run", method: http.MethodDelete, query: "labelSelector=tier%3Ddb&dryRun=All"},
		step{name: "list after everything"},
		step{name: "table of the list after everything", accept: tableAccept},
		step{name: "deletecollection tier=db", method: http.MethodDelete, query: "labelSelector=tier%3Ddb"},
		step{name: "deletecollection", method: http.MethodDelete},
		step{name: "list after deletecollection"},
	)
	return steps
}

// applied is the server-side apply body of report name: a summary and results its creator's
// manager already owns, so applying it conflicts unless forced.
func applied(k reports.Kind, name, result string) string {
	obj := diffReport(k, name, nil, result, name)
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(err) // maps of JSON values only
	}
	return string(raw)
}
