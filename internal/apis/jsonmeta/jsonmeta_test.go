package jsonmeta

import (
	stdjson "encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// sameAsDefault fails t unless Factory and the default factory give the same result for data:
// the same kind, or errors with the same message.
func sameAsDefault(t *testing.T, data []byte) {
	t.Helper()
	got, gotErr := Factory{}.Interpret(data)
	want, wantErr := json.DefaultMetaFactory.Interpret(data)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("Interpret(%q): error %v, the default factory's %v", data, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Interpret(%q) = %v, the default factory's %v", data, got, want)
	}
}

// cases are bodies at the edges of what scan answers itself.
var cases = []string{
	`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"a"}}`,
	`{"kind":"PolicyReport","apiVersion":"v1"}`,
	` {"apiVersion" : "v1" , "kind" : "List" } ` + "\n",
	`{}`, `{ }`, `[]`, `null`, `"x"`, `1`, ``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`,
	`{"kind":"A","kind":"B"}`, `{"kind":"A","KIND":"B"}`, `{"Kind":"A"}`, `{"APIVERSION":"v1"}`,
	`{"kind":null}`, `{"kind":1}`, `{"kind":{"a":1}}`, `{"apiVersion":["v1"]}`, `{"kind":"\u0041"}`,
	`{"kind":"A\"B"}`, `{"kind":"é"}`, "{\"kind\":\"\xff\"}", "{\"kind\":\"a\tb\"}", `{"k\u0069nd":"A"}`,
	"{\"\xe2\x84\xaaind\":\"A\"}", // KELVIN SIGN, which encoding/json folds to k
	`{"apiVersion":"a/b/c","kind":"A"}`, `{"apiVersion":"/v1"}`, `{"apiVersion":"g/"}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":1e+5}`, `{"a":-0.5E-3}`, `{"a":.5}`, `{"a":+1}`,
	`{"a":tru}`, `{"a":true}`, `{"a":nul}`, `{"a":falsey}`, `{"a":[1,2,]}`, `{"a":[,]}`, `{"a":[]}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"\/"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}",
	`{"kind":"A"} {}`, `{"kind":"A"}x`, `{"kind":"A"`, `{"kind":"A",`, `{"kind" "A"}`,
	`{"a":{"b":{"c":[{"d":null}]}},"kind":"Deep"}`,
	`{"a":` + strings.Repeat("[", maxDepth+5) + strings.Repeat("]", maxDepth+5) + `,"kind":"Deeper"}`,
	`{"a":` + strings.Repeat("[", 10_001) + strings.Repeat("]", 10_001) + `}`,
}

func TestSameAsDefaultFactory(t *testing.T) {
	for _, c := range cases {
		sameAsDefault(t, []byte(c))
	}
}

// TestReportScanned checks that a report as clients send it takes the fast path, with the
// default factory's result.
func TestReportScanned(t *testing.T) {
	body := report(t)
	if _, _, ok := scan(body); !ok {
		t.Fatalf("scan left a well-formed report to the default factory: %.200s", body)
	}
	sameAsDefault(t, body)
}

// report is a Kyverno-like PolicyReport of 20 results, as client-go sends it.
func report(t testing.TB) []byte {
	var results []map[string]any
	for i := range 20 {
		results = append(results, map[string]any{
			"policy": fmt.Sprintf("disallow-privileged-%d", i), "rule": "autogen-check", "result": "fail",
			"message": "validation error: privileged mode is disallowed. rule autogen-check failed at path /spec/containers/0/securityContext/privileged/",
			"scored":  true, "source": "kyverno", "severity": "high", "category": "Pod Security Standards (Baseline)",
			"timestamp":  map[string]any{"seconds": 1698822302, "nanos": 0},
			"properties": map[string]string{"process": "admission review", "detail": "é \"quoted\" \u2028"},
			"resources":  []map[string]any{{"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "default", "uid": "6c737f35-260c-4e4f-8516-61a125c9fb78"}},
		})
	}
	body, err := stdjson.Marshal(map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": "pod-p", "namespace": "default", "labels": map[string]string{"app.kubernetes.io/managed-by": "kyverno"}},
		"scope":    map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "default"},
		"summary":  map[string]int{"fail": 20, "pass": 0, "warn": 0, "error": 0, "skip": 0},
		"results":  results,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func FuzzSameAsDefaultFactory(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsDefault(t, data) })
}

func BenchmarkInterpret(b *testing.B) {
	body := report(b)
	for _, f := range []struct {
		name string
		mf   json.MetaFactory
	}{{"default", json.DefaultMetaFactory}, {"jsonmeta", Factory{}}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := f.mf.Interpret(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
