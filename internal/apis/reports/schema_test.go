package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/reports-server/reports-server/internal/apis/validation"
	"github.com/reports-server/reports-server/internal/generated/openapi"
)

// Full objects of each group: every property of every schema they reach is present, so that every required key and
// every enum of the schemas occurs in them.
const (
	fullObjectReference = `{"kind":"Deployment","namespace":"ns","name":"web","uid":"u1","apiVersion":"apps/v1",` +
		`"resourceVersion":"7","fieldPath":"spec"}`
	fullSelector = `{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a"]}]}`
	fullSummary  = `{"pass":1,"fail":2,"warn":0,"error":0,"skip":0}`
	fullResult   = `{"source":"s","policy":"p","rule":"r","category":"c","severity":"high",` +
		`"timestamp":{"seconds":1698822302,"nanos":5},"result":"fail","scored":true,` +
		`"resources":[` + fullObjectReference + `],"resourceSelector":` + fullSelector + `,` +
		`"message":"m","properties":{"k":"v"}}`

	fullPolicyReport = `{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport",` +
		`"metadata":{"name":"r","namespace":"ns"},"scope":` + fullObjectReference + `,` +
		`"scopeSelector":` + fullSelector + `,"summary":` + fullSummary + `,"results":[` + fullResult + `]}`
	fullReport = `{"apiVersion":"openreports.io/v1alpha1","kind":"Report",` +
		`"metadata":{"name":"r","namespace":"ns"},"source":"kyverno","scope":` + fullObjectReference + `,` +
		`"scopeSelector":` + fullSelector + `,"configuration":{"limits":{"maxResults":10,"statusFilter":["fail"]}},` +
		`"summary":` + fullSummary + `,"results":[` + fullResult + `]}`
	fullEphemeralReport = `{"apiVersion":"reports.kyverno.io/v1","kind":"EphemeralReport",` +
		`"metadata":{"name":"r","namespace":"ns"},"spec":{"owner":{"apiVersion":"v1","kind":"Pod","name":"p",` +
		`"uid":"u2","controller":true,"blockOwnerDeletion":false},"summary":` + fullSummary + `,` +
		`"results":[` + fullResult + `]}}`
)

// change is an edit of a full object and the one error Validate must return for it.
type change struct {
	path  []any // keys (string) and indexes (int) from the object root
	del   bool  // delete the last key; otherwise set it to value
	value string
	want  *field.Error
}

// schemaWalker derives, from the generated OpenAPI definitions, the changes that make a full object invalid: the
// removal of each required key, and an empty and an unknown value for each enum.
type schemaWalker struct {
	t       *testing.T
	defs    map[string]common.OpenAPIDefinition
	changes []change
}

func (w *schemaWalker) resolve(sch spec.Schema) spec.Schema {
	for range 32 {
		ref := sch.Ref.String()
		if ref == "" && len(sch.AllOf) == 1 {
			ref = sch.AllOf[0].Ref.String()
		}
		if ref == "" {
			return sch
		}
		def, ok := w.defs[strings.TrimPrefix(ref, "#/definitions/")]
		if !ok {
			w.t.Fatalf("unresolved reference %s", ref)
		}
		sch = def.Schema
	}
	w.t.Fatal("reference cycle")
	return sch
}

func fieldPath(path []any) *field.Path {
	var p *field.Path
	for _, seg := range path {
		switch s := seg.(type) {
		case string:
			if p == nil {
				p = field.NewPath(s)
			} else {
				p = p.Child(s)
			}
		case int:
			p = p.Index(s)
		}
	}
	return p
}

func (w *schemaWalker) walk(sch spec.Schema, path []any, v any) {
	sch = w.resolve(sch)
	p := fieldPath(path)
	switch x := v.(type) {
	case string:
		if len(sch.Enum) == 0 {
			return
		}
		var allowed []string
		for _, e := range sch.Enum {
			allowed = append(allowed, fmt.Sprint(e))
		}
		for _, bad := range []string{"", "bogus"} {
			w.changes = append(w.changes, change{
				path: slices.Clone(path), value: bad, want: field.NotSupported(p, bad, allowed),
			})
		}
	case map[string]any:
		if sch.AdditionalProperties != nil && sch.AdditionalProperties.Schema != nil {
			for k, val := range x {
				w.walk(*sch.AdditionalProperties.Schema, append(slices.Clone(path), k), val)
			}
			return
		}
		for name, prop := range sch.Properties {
			if len(path) == 0 && name == "metadata" {
				continue // the registry's business
			}
			val, ok := x[name]
			if !ok {
				w.t.Errorf("full object lacks %s", fieldPath(append(slices.Clone(path), name)))
				continue
			}
			child := append(slices.Clone(path), name)
			if slices.Contains(sch.Required, name) {
				w.changes = append(w.changes, change{path: child, del: true, want: field.Required(fieldPath(child), "")})
			}
			w.walk(prop, child, val)
		}
	case []any:
		if sch.Items == nil || sch.Items.Schema == nil {
			w.t.Fatalf("%s: list without item schema", p)
		}
		for i, item := range x {
			w.walk(*sch.Items.Schema, append(slices.Clone(path), i), item)
		}
	}
}

// apply returns the JSON of the full object with the change made.
func (c change) apply(t *testing.T, full string) []byte {
	t.Helper()
	var root any
	if err := json.Unmarshal([]byte(full), &root); err != nil {
		t.Fatal(err)
	}
	parent := root
	for _, seg := range c.path[:len(c.path)-1] {
		switch s := seg.(type) {
		case string:
			parent = parent.(map[string]any)[s]
		case int:
			parent = parent.([]any)[s]
		}
	}
	switch last := c.path[len(c.path)-1].(type) {
	case string:
		if c.del {
			delete(parent.(map[string]any), last)
		} else {
			parent.(map[string]any)[last] = c.value
		}
	case int:
		parent.([]any)[last] = c.value
	}
	data, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestValidateMatchesSchema checks each kind's Validate against its generated OpenAPI schema, the single statement
// of what the CRDs require: a full object validates clean and round-trips; without any one required key it gives
// exactly that Required error; with an empty or unknown value for any enum it gives exactly that NotSupported error.
func TestValidateMatchesSchema(t *testing.T) {
	s := newScheme(t)
	ser := strictSerializer(s)
	defs := openapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) })

	var objects []string
	for _, full := range []string{fullPolicyReport, fullReport, fullEphemeralReport} {
		var head struct{ Kind string }
		if err := json.Unmarshal([]byte(full), &head); err != nil {
			t.Fatal(err)
		}
		cluster := strings.Replace(full, `"kind":"`+head.Kind+`"`, `"kind":"Cluster`+head.Kind+`"`, 1)
		cluster = strings.Replace(cluster, `,"namespace":"ns"}`, `}`, 1)
		objects = append(objects, full, cluster)
	}
	for _, full := range objects {
		obj, gvk, err := ser.Decode([]byte(full), nil, nil)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		k := kindFor(t, *gvk)
		t.Run(k.Kind, func(t *testing.T) {
			if errs := k.Validate(obj); len(errs) != 0 {
				t.Fatalf("full object: %v", errs)
			}
			var buf bytes.Buffer
			if err := ser.Encode(obj, &buf); err != nil {
				t.Fatal(err)
			}
			if got, want := normalize(t, buf.Bytes()), normalize(t, []byte(full)); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the object:\n got %s\nwant %s", buf.Bytes(), full)
			}
			w := &schemaWalker{t: t, defs: defs}
			var root any
			if err := json.Unmarshal([]byte(full), &root); err != nil {
				t.Fatal(err)
			}
			w.walk(defs[k.OpenAPIModelName()].Schema, nil, root)
			var required, enums int
			for _, c := range w.changes {
				if c.del {
					required++
				} else {
					enums++
				}
				data := c.apply(t, full)
				obj, _, err := ser.Decode(data, nil, nil)
				if err != nil {
					t.Errorf("%s: decode: %v", c.want, err)
					continue
				}
				errs := k.Validate(obj)
				if len(errs) != 1 || errs[0].Type != c.want.Type || errs[0].Field != c.want.Field ||
					errs[0].BadValue != c.want.BadValue {
					t.Errorf("%s: got %v", c.want, errs)
				}
			}
			// All: policy, timestamp seconds and nanos, resourceSelector key and operator. PolicyReport and Report:
			// scopeSelector key and operator; Report: configuration.limits. EphemeralReport: spec, spec.owner and
			// its apiVersion, kind, name and uid. Enums: result and severity; Report: statusFilter.
			wantRequired := map[string]int{"PolicyReport": 7, "Report": 8, "EphemeralReport": 11}
			wantEnums := map[string]int{"PolicyReport": 4, "Report": 6, "EphemeralReport": 4}
			base := strings.TrimPrefix(k.Kind, "Cluster")
			if required != wantRequired[base] || enums != wantEnums[base] {
				t.Errorf("%d required keys and %d enum changes, want %d and %d", required, enums,
					wantRequired[base], wantEnums[base])
			}
		})
	}
}

// TestEnumValues checks that the enums of the generated schemas are those validation enforces.
func TestEnumValues(t *testing.T) {
	defs := openapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) })
	for model, props := range map[string]map[string][]string{
		"io.wgpolicyk8s.v1alpha2.PolicyReportResult": {"result": validation.ResultValues, "severity": validation.SeverityValues},
		"io.openreports.v1alpha1.ReportResult":       {"result": validation.ResultValues, "severity": validation.SeverityValues},
	} {
		for prop, want := range props {
			var got []string
			for _, e := range defs[model].Schema.Properties[prop].Enum {
				got = append(got, fmt.Sprint(e))
			}
			if !sameSet(got, want) {
				t.Errorf("%s.%s enum %v, validation allows %v", model, prop, got, want)
			}
		}
	}
	var got []string
	for _, e := range defs["io.openreports.v1alpha1.Limits"].Schema.Properties["statusFilter"].Items.Schema.Enum {
		got = append(got, fmt.Sprint(e))
	}
	if !sameSet(got, validation.ResultValues) {
		t.Errorf("statusFilter enum %v", got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
