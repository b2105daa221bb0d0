package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kube-openapi/pkg/validation/spec"

	openreportsv1alpha1 "github.com/reports-server/reports-server/internal/apis/openreports/v1alpha1"
	reportskyvernov1 "github.com/reports-server/reports-server/internal/apis/reportskyverno/v1"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/generated/openapi"
)

// ephemeralSample is an ephemeral report as Kyverno writes one (shared/testdata has none).
const ephemeralSample = `
apiVersion: reports.kyverno.io/v1
kind: EphemeralReport
metadata:
  name: 3f1c2a8e-6b1d-4d52-9a47-0c5e9f3b7d21
  namespace: default
  labels:
    app.kubernetes.io/managed-by: kyverno
    audit.kyverno.io/resource.group: ""
    audit.kyverno.io/resource.kind: Pod
    audit.kyverno.io/resource.uid: 6c737f35-260c-4e4f-8516-61a125c9fb78
    audit.kyverno.io/source: admission
  annotations:
    audit.kyverno.io/resource.name: test-pod
spec:
  owner:
    apiVersion: v1
    kind: Pod
    name: test-pod
    uid: 6c737f35-260c-4e4f-8516-61a125c9fb78
  results:
  - message: validation rule 'require-labels' failed.
    policy: require-labels
    result: fail
    rule: check-team
    scored: true
    severity: medium
    source: kyverno
    timestamp:
      nanos: 0
      seconds: 1698822302
  summary:
    error: 0
    fail: 1
    pass: 0
    skip: 0
    warn: 0
---
apiVersion: reports.kyverno.io/v1
kind: ClusterEphemeralReport
metadata:
  name: 9b2e4f10-1c3a-4e7b-8d6f-2a5c7e9b1d43
spec:
  owner:
    apiVersion: v1
    kind: Namespace
    name: team-a
    uid: 1a2b3c4d-0000-4000-8000-000000000001
    controller: true
  results:
  - policy: ""
    result: pass
`

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func strictSerializer(s *runtime.Scheme) *jsonserializer.Serializer {
	return jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, s, s,
		jsonserializer.SerializerOptions{Strict: true})
}

// testdataDir is shared/testdata beside the repository (as in CI), or $REPORTS_SERVER_TESTDATA.
func testdataDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("REPORTS_SERVER_TESTDATA"); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
	td := filepath.Join(filepath.Dir(dir), "shared", "testdata")
	if _, err := os.Stat(td); err != nil {
		t.Fatalf("sample reports not found beside the repository (set REPORTS_SERVER_TESTDATA): %v", err)
	}
	return td
}

type doc struct {
	name string
	json []byte
}

// splitDocs returns the JSON form of each document of a YAML stream or JSON file.
func splitDocs(t *testing.T, name string, data []byte) []doc {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []doc
	for i := 0; ; i++ {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		j, err := utilyaml.ToJSON(b)
		if err != nil {
			t.Fatalf("%s doc %d: %v", name, i, err)
		}
		docs = append(docs, doc{name: name + "#" + string(rune('0'+i)), json: j})
	}
	return docs
}

func sampleDocs(t *testing.T) []doc {
	t.Helper()
	dir := testdataDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []doc
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); ext != ".yaml" && ext != ".json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, splitDocs(t, e.Name(), data)...)
	}
	docs = append(docs, splitDocs(t, "ephemeralSample", []byte(ephemeralSample))...)
	if len(docs) < 12 {
		t.Fatalf("only %d sample documents", len(docs))
	}
	return docs
}

func kindFor(t *testing.T, gvk schema.GroupVersionKind) Kind {
	t.Helper()
	for _, k := range All() {
		if k.GroupVersionKind() == gvk {
			return k
		}
	}
	t.Fatalf("no kind %v", gvk)
	return Kind{}
}

// normalize decodes JSON into generic values without nulls (null and absent mean the same to the API).
func normalize(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return dropNulls(v)
}

func dropNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if val == nil {
				delete(x, k)
			} else {
				x[k] = dropNulls(val)
			}
		}
	case []any:
		for i := range x {
			x[i] = dropNulls(x[i])
		}
	}
	return v
}

// TestSamples decodes every sample strictly, validates it and checks that it re-encodes unchanged.
func TestSamples(t *testing.T) {
	s := newScheme(t)
	ser := strictSerializer(s)
	seen := map[string]bool{}
	for _, d := range sampleDocs(t) {
		t.Run(d.name, func(t *testing.T) {
			obj, gvk, err := ser.Decode(d.json, nil, nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			seen[gvk.Kind] = true
			k := kindFor(t, *gvk)
			if reflect.TypeOf(obj) != reflect.TypeOf(k.New()) {
				t.Fatalf("decoded %T, kind %s makes %T", obj, k.Kind, k.New())
			}
			if errs := k.Validate(obj); len(errs) != 0 {
				t.Errorf("Validate: %v", errs)
			}
			var buf bytes.Buffer
			if err := ser.Encode(obj, &buf); err != nil {
				t.Fatal(err)
			}
			if got, want := normalize(t, buf.Bytes()), normalize(t, d.json); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the object:\n got %s\nwant %s", buf.Bytes(), d.json)
			}

			cp := obj.DeepCopyObject()
			if !reflect.DeepEqual(cp, obj) {
				t.Fatal("deep copy differs")
			}
			mutate(cp)
			var again bytes.Buffer
			if err := ser.Encode(obj, &again); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Error("changing the deep copy changed the original")
			}

			if cells := k.TableRow(obj); len(cells) != len(k.TableColumns) {
				t.Errorf("%d cells for %d columns", len(cells), len(k.TableColumns))
			}
		})
	}
	for _, kind := range []string{"PolicyReport", "ClusterPolicyReport", "Report", "EphemeralReport", "ClusterEphemeralReport"} {
		if !seen[kind] {
			t.Errorf("no sample of %s", kind)
		}
	}
}

// mutate changes every nested pointer, slice and map it can reach in a report.
func mutate(obj runtime.Object) {
	bump := func(n *int) {
		if n != nil {
			*n += 100
		}
	}
	switch r := obj.(type) {
	case *wgpolicyv1alpha2.PolicyReport:
		for k := range r.Labels {
			r.Labels[k] = "mutated"
		}
		for i := range r.Results {
			*r.Results[i].Policy += "-mutated"
			for k := range r.Results[i].Properties {
				r.Results[i].Properties[k] = "mutated"
			}
			if r.Results[i].Timestamp != nil {
				*r.Results[i].Timestamp.Seconds++
			}
		}
		if r.Summary != nil {
			bump(r.Summary.Pass)
			bump(r.Summary.Fail)
		}
		if r.Scope != nil {
			r.Scope.Name += "-mutated"
		}
	case *openreportsv1alpha1.Report:
		r.Configuration.Limits.StatusFilter[0] = "error"
		*r.Configuration.Limits.MaxResults = 1
		r.Results[0].Resources[0].Name = "mutated"
	case *reportskyvernov1.EphemeralReport:
		*r.Spec.Owner.Name = "mutated"
		bump(r.Spec.Summary.Fail)
		*r.Spec.Results[0].Scored = false
	}
}

func TestInvalidObjects(t *testing.T) {
	s := newScheme(t)
	ser := strictSerializer(s)
	const header = `"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"r","namespace":"default"}`
	const orHeader = `"apiVersion":"openreports.io/v1alpha1","kind":"Report","metadata":{"name":"r","namespace":"default"}`
	const ephHeader = `"apiVersion":"reports.kyverno.io/v1","kind":"EphemeralReport","metadata":{"name":"r","namespace":"default"}`
	const owner = `"owner":{"apiVersion":"v1","kind":"Pod","name":"p","uid":"u"}`
	const resultValues = `supported values: "pass", "fail", "warn", "error", "skip"`
	tests := []struct {
		name string
		json string
		// errs lists the errors of Kind.Validate; none for a valid object.
		errs      []string
		decodeErr string
		// skipRoundTrip is for metadata that metav1 re-encodes differently (and the registry rejects).
		skipRoundTrip bool
	}{
		{
			name: "bad result",
			json: `{` + header + `,"results":[{"policy":"p","result":"pass"},{"policy":"p","result":"bad"}]}`,
			errs: []string{`results[1].result: Unsupported value: "bad": ` + resultValues},
		},
		{
			name: "bad severity",
			json: `{` + header + `,"results":[{"policy":"p","severity":"urgent"}]}`,
			errs: []string{`results[0].severity: Unsupported value: "urgent": supported values: "critical", "high", "low", "medium", "info"`},
		},
		{
			// The CRDs reject an explicit empty enum value.
			name: "empty result",
			json: `{` + header + `,"results":[{"policy":"p","result":""}]}`,
			errs: []string{`results[0].result: Unsupported value: "": ` + resultValues},
		},
		{
			name: "empty severity",
			json: `{` + orHeader + `,"results":[{"policy":"p","severity":""}]}`,
			errs: []string{`results[0].severity: Unsupported value: "": supported values: "critical", "high", "low", "medium", "info"`},
		},
		{
			name: "missing policy",
			json: `{` + header + `,"results":[{"policy":"p"},{"policy":""},{"result":"fail"}]}`,
			errs: []string{`results[2].policy: Required value`},
		},
		{
			// Real producers (Trivy) send an empty policy; the CRDs accept it.
			name: "empty policy",
			json: `{` + header + `,"results":[{"policy":"","result":"pass"}]}`,
		},
		{
			// The CRDs prune nulls before validating: null is missing.
			name: "null policy",
			json: `{` + header + `,"results":[{"policy":null}]}`,
			errs: []string{`results[0].policy: Required value`},
		},
		{
			name: "openreports missing policy",
			json: `{` + orHeader + `,"results":[{"policy":"p"},{"rule":"r"}]}`,
			errs: []string{`results[1].policy: Required value`},
		},
		{
			name: "timestamp without seconds",
			json: `{` + header + `,"results":[{"policy":"p","timestamp":{"nanos":0}}]}`,
			errs: []string{`results[0].timestamp.seconds: Required value`},
		},
		{
			name: "timestamp without nanos",
			json: `{` + header + `,"results":[{"policy":"p","timestamp":{"seconds":1}}]}`,
			errs: []string{`results[0].timestamp.nanos: Required value`},
		},
		{
			name: "empty timestamp",
			json: `{` + orHeader + `,"results":[{"policy":"p","timestamp":{}}]}`,
			errs: []string{`results[0].timestamp.seconds: Required value`, `results[0].timestamp.nanos: Required value`},
		},
		{
			// The CRDs set no bounds on either number.
			name: "negative nanos and zero seconds",
			json: `{` + header + `,"results":[{"policy":"p","timestamp":{"seconds":0,"nanos":-1}}]}`,
		},
		{
			name:      "nanos beyond int32",
			json:      `{` + header + `,"results":[{"policy":"p","timestamp":{"seconds":0,"nanos":2147483648}}]}`,
			decodeErr: "nanos",
		},
		{
			name:      "timestamp of the wrong type",
			json:      `{` + header + `,"results":[{"policy":"p","timestamp":"2023-11-01T07:05:02Z"}]}`,
			decodeErr: "timestamp",
		},
		{
			name:      "summary of the wrong type",
			json:      `{` + header + `,"summary":{"pass":"1"}}`,
			decodeErr: "pass",
		},
		{
			name:      "unknown field",
			json:      `{` + header + `,"results":[{"policy":"p","colour":"red"}]}`,
			decodeErr: `unknown field "results[0].colour"`,
		},
		{
			name: "selector requirement without operator",
			json: `{` + header + `,"scopeSelector":{"matchExpressions":[{"key":"app"}]}}`,
			errs: []string{`scopeSelector.matchExpressions[0].operator: Required value`},
		},
		{
			name: "result selector requirement without key",
			json: `{` + orHeader + `,"results":[{"policy":"p","resourceSelector":{"matchExpressions":[{"key":"a","operator":"Exists"},{"operator":"In","values":["x"]}]}}]}`,
			errs: []string{`results[0].resourceSelector.matchExpressions[1].key: Required value`},
		},
		{
			name: "bad status filter",
			json: `{` + orHeader + `,"configuration":{"limits":{"statusFilter":["pass","passed",""]}}}`,
			errs: []string{
				`configuration.limits.statusFilter[1]: Unsupported value: "passed": ` + resultValues,
				`configuration.limits.statusFilter[2]: Unsupported value: "": ` + resultValues,
			},
		},
		{
			name: "configuration without limits",
			json: `{` + orHeader + `,"configuration":{}}`,
			errs: []string{`configuration.limits: Required value`},
		},
		{
			name: "empty limits",
			json: `{` + orHeader + `,"configuration":{"limits":{}}}`,
		},
		{
			name: "openreports bad result",
			json: `{` + orHeader + `,"results":[{"policy":"p","result":"ok"}]}`,
			errs: []string{`results[0].result: Unsupported value: "ok": ` + resultValues},
		},
		{
			name: "ephemeral without spec",
			json: `{` + ephHeader + `}`,
			errs: []string{`spec: Required value`},
		},
		{
			name: "ephemeral without owner",
			json: `{` + ephHeader + `,"spec":{"results":[{"policy":"p"}]}}`,
			errs: []string{`spec.owner: Required value`},
		},
		{
			name: "ephemeral owner without uid",
			json: `{` + ephHeader + `,"spec":{"owner":{"apiVersion":"v1","kind":"Pod","name":"p"}}}`,
			errs: []string{`spec.owner.uid: Required value`},
		},
		{
			name: "ephemeral empty owner",
			json: `{"apiVersion":"reports.kyverno.io/v1","kind":"ClusterEphemeralReport","metadata":{"name":"r"},"spec":{"owner":{}}}`,
			errs: []string{
				`spec.owner.apiVersion: Required value`, `spec.owner.kind: Required value`,
				`spec.owner.name: Required value`, `spec.owner.uid: Required value`,
			},
		},
		{
			name: "ephemeral owner with empty values",
			json: `{` + ephHeader + `,"spec":{"owner":{"apiVersion":"","kind":"","name":"","uid":""}}}`,
		},
		{
			name: "ephemeral bad result",
			json: `{` + ephHeader + `,"spec":{` + owner + `,"results":[{"policy":"p","result":"nope"},{}]}}`,
			errs: []string{
				`spec.results[0].result: Unsupported value: "nope": ` + resultValues,
				`spec.results[1].policy: Required value`,
			},
		},
		{
			// Metadata is the registry's business: a bad owner reference there is not reported here.
			name:          "metadata is not checked",
			json:          `{` + strings.TrimSuffix(header, `}`) + `,"ownerReferences":[{"kind":"Pod"}]}}`,
			skipRoundTrip: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, gvk, err := ser.Decode([]byte(tc.json), nil, nil)
			if tc.decodeErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.decodeErr) {
					t.Fatalf("decode error %v, want one mentioning %q", err, tc.decodeErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			var got []string
			for _, e := range kindFor(t, *gvk).Validate(obj) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tc.errs) {
				t.Errorf("Validate:\n got %q\nwant %q", got, tc.errs)
			}
			if len(tc.errs) != 0 || tc.skipRoundTrip {
				return
			}
			// A valid object re-encodes as it came, empty strings included.
			var buf bytes.Buffer
			if err := ser.Encode(obj, &buf); err != nil {
				t.Fatal(err)
			}
			if got, want := normalize(t, buf.Bytes()), normalize(t, []byte(tc.json)); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the object:\n got %s\nwant %s", buf.Bytes(), tc.json)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestKinds(t *testing.T) {
	s := newScheme(t)
	want := map[string]struct {
		gv                    string
		short                 string
		namespaced            bool
		columns               []string
		priority1             []string
		categories            []string
		scopeFieldsSelectable bool
	}{
		"PolicyReport":           {"wgpolicyk8s.io/v1alpha2", "polr", true, []string{"Name", "Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"}, nil, nil, true},
		"ClusterPolicyReport":    {"wgpolicyk8s.io/v1alpha2", "cpolr", false, []string{"Name", "Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"}, nil, nil, true},
		"Report":                 {"openreports.io/v1alpha1", "reps", true, []string{"Name", "Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"}, []string{"Kind", "Name"}, nil, true},
		"ClusterReport":          {"openreports.io/v1alpha1", "creps", false, []string{"Name", "Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"}, []string{"Kind", "Name"}, nil, true},
		"EphemeralReport":        {"reports.kyverno.io/v1", "ephr", true, []string{"Name", "Source", "Group", "Kind", "Owner", "Pass", "Fail", "Warn", "Error", "Skip", "Age", "Uid", "Hash"}, []string{"Uid", "Hash"}, []string{"kyverno"}, false},
		"ClusterEphemeralReport": {"reports.kyverno.io/v1", "cephr", false, []string{"Name", "Source", "Group", "Kind", "Owner", "Pass", "Fail", "Warn", "Error", "Skip", "Age", "Uid", "Hash"}, []string{"Hash"}, []string{"kyverno"}, false},
	}
	all := All()
	if len(all) != len(want) {
		t.Fatalf("%d kinds, want %d", len(all), len(want))
	}
	resources := map[string]bool{}
	for _, k := range all {
		w, ok := want[k.Kind]
		if !ok {
			t.Fatalf("unexpected kind %s", k.Kind)
		}
		if k.GroupVersion.String() != w.gv || k.ListKind != k.Kind+"List" || k.Namespaced != w.namespaced ||
			!slices.Equal(k.ShortNames, []string{w.short}) || !slices.Equal(k.Categories, w.categories) ||
			k.Resource != strings.ToLower(k.Kind)+"s" || k.Singular != strings.ToLower(k.Kind) {
			t.Errorf("%s: %+v", k.Kind, k)
		}
		resources[k.GroupVersion.Group+"/"+k.Resource] = true

		// The scheme knows both objects under the served and the internal version.
		for _, obj := range []runtime.Object{k.New(), k.NewList()} {
			gvks, _, err := s.ObjectKinds(obj)
			if err != nil {
				t.Fatal(err)
			}
			versions := map[string]bool{}
			for _, gvk := range gvks {
				versions[gvk.Version] = true
			}
			if !versions[k.GroupVersion.Version] || !versions[runtime.APIVersionInternal] {
				t.Errorf("%T registered as %v", obj, gvks)
			}
		}
		// Conversion to the internal version and back needs no conversion functions.
		obj := k.New()
		obj.(metav1.Object).SetName("x")
		internal, err := s.ConvertToVersion(obj, schema.GroupVersion{Group: k.GroupVersion.Group, Version: runtime.APIVersionInternal})
		if err != nil {
			t.Fatalf("%s to internal: %v", k.Kind, err)
		}
		external, err := s.ConvertToVersion(internal, k.GroupVersion)
		if err != nil {
			t.Fatalf("%s to external: %v", k.Kind, err)
		}
		if external.GetObjectKind().GroupVersionKind() != k.GroupVersionKind() || external.(metav1.Object).GetName() != "x" {
			t.Errorf("%s: converted back to %v", k.Kind, external.GetObjectKind().GroupVersionKind())
		}

		// Columns.
		var names, prio1 []string
		for _, c := range k.TableColumns {
			names = append(names, c.Name)
			if c.Priority == 1 {
				prio1 = append(prio1, c.Name)
			}
		}
		if !slices.Equal(names, w.columns) || !slices.Equal(prio1, w.priority1) {
			t.Errorf("%s columns %v (priority 1: %v)", k.Kind, names, prio1)
		}
		if c := k.TableColumns[0]; c.Format != "name" || c.Type != "string" {
			t.Errorf("%s: first column %+v", k.Kind, c)
		}

		// Fields and field selectors.
		set := k.Fields(k.New())
		var keys []string
		for key := range set {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		selectable := slices.Clone(k.SelectableFields)
		sort.Strings(selectable)
		if !slices.Equal(keys, selectable) {
			t.Errorf("%s: Fields keys %v, SelectableFields %v", k.Kind, keys, k.SelectableFields)
		}
		if slices.Contains(k.SelectableFields, "scope.kind") != w.scopeFieldsSelectable {
			t.Errorf("%s: SelectableFields %v", k.Kind, k.SelectableFields)
		}
		for _, label := range k.SelectableFields {
			if _, _, err := s.ConvertFieldLabel(k.GroupVersionKind(), label, "v"); err != nil {
				t.Errorf("%s: field label %s: %v", k.Kind, label, err)
			}
		}
		if _, _, err := s.ConvertFieldLabel(k.GroupVersionKind(), "spec.foo", "v"); err == nil {
			t.Errorf("%s: unsupported field label accepted", k.Kind)
		}
		// An empty object (an ephemeral report without spec, say) has a row, and is invalid only where a key is
		// required at the top.
		if cells := k.TableRow(k.New()); len(cells) != len(k.TableColumns) {
			t.Errorf("%s: %d cells for an empty object", k.Kind, len(cells))
		}
		if errs := k.Validate(k.New()); len(errs) != len(k.Categories) { // only the ephemeral kinds require spec
			t.Errorf("%s: empty object: %v", k.Kind, errs)
		}
		if errs := k.Validate(&metav1.Status{}); len(errs) == 0 {
			t.Errorf("%s: Validate accepted a foreign object", k.Kind)
		}
	}
	if len(resources) != len(want) {
		t.Errorf("resources not unique: %v", resources)
	}
}

func TestFieldsAndRows(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-15*time.Minute - time.Second))
	pass, fail := 3, 1
	scored := true
	polr := &wgpolicyv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", CreationTimestamp: created},
		Scope:      &wgpolicyv1alpha2.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Namespace: "ns"},
		Summary:    &wgpolicyv1alpha2.PolicyReportSummary{Pass: &pass, Fail: &fail},
		Results:    []wgpolicyv1alpha2.PolicyReportResult{{Policy: ptr("p"), Result: ptr(wgpolicyv1alpha2.StatusPass), Scored: &scored}},
	}
	k := kindFor(t, wgpolicyv1alpha2.SchemeGroupVersion.WithKind("PolicyReport"))
	if got := k.Fields(polr); got["scope.kind"] != "Deployment" || got["scope.name"] != "web" ||
		got["scope.namespace"] != "ns" || got["metadata.name"] != "r" || got["metadata.namespace"] != "ns" {
		t.Errorf("fields %v", got)
	}
	wantRow := []any{"r", "Deployment", "web", int64(3), int64(1), nil, nil, nil, "15m"}
	if got := k.TableRow(polr); !reflect.DeepEqual(got, wantRow) {
		t.Errorf("row %#v, want %#v", got, wantRow)
	}

	creps := &openreportsv1alpha1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
	k = kindFor(t, openreportsv1alpha1.SchemeGroupVersion.WithKind("ClusterReport"))
	if got := k.Fields(creps); got["scope.kind"] != "" || got["metadata.namespace"] != "" || len(got) != 5 {
		t.Errorf("fields %v", got)
	}
	wantRow = []any{"c", nil, nil, nil, nil, nil, nil, nil, "<unknown>"}
	if got := k.TableRow(creps); !reflect.DeepEqual(got, wantRow) {
		t.Errorf("row %#v, want %#v", got, wantRow)
	}

	zero := 0
	ephr := &reportskyvernov1.EphemeralReport{
		ObjectMeta: metav1.ObjectMeta{
			Name: "e", Namespace: "ns", CreationTimestamp: created,
			Labels: map[string]string{
				"audit.kyverno.io/source": "admission", "audit.kyverno.io/resource.group": "",
				"audit.kyverno.io/resource.kind": "Pod", "audit.kyverno.io/resource.uid": "u1",
			},
			Annotations: map[string]string{"audit.kyverno.io/resource.name": "pod-1"},
		},
		Spec: &reportskyvernov1.EphemeralReportSpec{
			Summary: &openreportsv1alpha1.ReportSummary{Pass: &zero, Fail: &fail, Warn: &zero, Error: &zero, Skip: &zero},
		},
	}
	k = kindFor(t, reportskyvernov1.SchemeGroupVersion.WithKind("EphemeralReport"))
	wantRow = []any{"e", "admission", "", "Pod", "pod-1", int64(0), int64(1), int64(0), int64(0), int64(0), "15m", "u1", nil}
	if got := k.TableRow(ephr); !reflect.DeepEqual(got, wantRow) {
		t.Errorf("row %#v, want %#v", got, wantRow)
	}
	if got := k.Fields(ephr); len(got) != 2 || got["metadata.name"] != "e" || got["metadata.namespace"] != "ns" {
		t.Errorf("fields %v", got)
	}
}

func TestOpenAPIDefinitions(t *testing.T) {
	defs := openapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) })
	for _, k := range All() {
		for _, obj := range []runtime.Object{k.New(), k.NewList()} {
			name := obj.(interface{ OpenAPIModelName() string }).OpenAPIModelName()
			wantName := reverse(k.GroupVersion.Group) + "." + k.GroupVersion.Version + "." +
				reflect.TypeOf(obj).Elem().Name()
			if name != wantName {
				t.Errorf("model name %s, want %s", name, wantName)
			}
			def, ok := defs[name]
			if !ok {
				t.Errorf("no OpenAPI definition %s", name)
				continue
			}
			for _, prop := range []string{"apiVersion", "kind", "metadata"} {
				if _, ok := def.Schema.Properties[prop]; !ok {
					t.Errorf("%s has no %s", name, prop)
				}
			}
		}
	}
	// Every dependency resolves, so the served spec has no dangling reference.
	for name, def := range defs {
		for _, dep := range def.Dependencies {
			if _, ok := defs[dep]; !ok {
				t.Errorf("%s depends on missing %s", name, dep)
			}
		}
	}
	// Spot checks of schemas that must match the CRDs.
	checkRequired := func(model string, want ...string) {
		t.Helper()
		if got := defs[model].Schema.Required; !slices.Equal(got, want) {
			t.Errorf("%s required %v, want %v", model, got, want)
		}
	}
	checkRequired("io.wgpolicyk8s.v1alpha2.PolicyReportResult", "policy")
	checkRequired("io.openreports.v1alpha1.ReportResult", "policy")
	checkRequired("io.openreports.v1alpha1.ReportConfiguration", "limits")
	checkRequired("io.kyverno.reports.v1.EphemeralReport", "spec")
	checkRequired("io.kyverno.reports.v1.EphemeralReportSpec", "owner")
	checkRequired("io.kyverno.reports.v1.OwnerReference", "apiVersion", "kind", "name", "uid")
	for _, group := range []string{"io.wgpolicyk8s.v1alpha2", "io.openreports.v1alpha1"} {
		checkRequired(group+".Timestamp", "seconds", "nanos")
		checkRequired(group + ".LabelSelector")
		checkRequired(group+".LabelSelectorRequirement", "key", "operator")
		checkRequired(group + ".ObjectReference")
	}
	checkRequired("io.openreports.v1alpha1.Limits")
	checkRequired("io.openreports.v1alpha1.ReportSummary")
	checkRequired("io.wgpolicyk8s.v1alpha2.PolicyReport")
	checkRequired("io.wgpolicyk8s.v1alpha2.PolicyReportSummary")
	result := defs["io.wgpolicyk8s.v1alpha2.PolicyReportResult"].Schema.Properties["result"]
	if len(result.Enum) != 5 {
		t.Errorf("result enum %v", result.Enum)
	}
}

func reverse(group string) string {
	parts := strings.Split(group, ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

func TestResultAccessors(t *testing.T) {
	var wg wgpolicyv1alpha2.PolicyReportResult
	var or openreportsv1alpha1.ReportResult
	if wg.GetPolicy() != "" || wg.GetResult() != "" || wg.GetSeverity() != "" ||
		or.GetPolicy() != "" || or.GetResult() != "" || or.GetSeverity() != "" {
		t.Error("missing fields do not read as empty")
	}
	wg = wgpolicyv1alpha2.PolicyReportResult{Policy: ptr("p"), Result: ptr(wgpolicyv1alpha2.StatusFail),
		Severity: ptr(wgpolicyv1alpha2.SeverityHigh)}
	or = openreportsv1alpha1.ReportResult{Policy: ptr(""), Result: ptr(openreportsv1alpha1.StatusSkip),
		Severity: ptr(openreportsv1alpha1.SeverityLow)}
	if wg.GetPolicy() != "p" || wg.GetResult() != "fail" || wg.GetSeverity() != "high" ||
		or.GetPolicy() != "" || or.GetResult() != "skip" || or.GetSeverity() != "low" {
		t.Error("accessors")
	}
}
