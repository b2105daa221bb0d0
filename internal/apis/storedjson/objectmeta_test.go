package storedjson

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// reportMetadata is a report's metadata as PostgreSQL prints the stored jsonb (keys sorted by
// length, a space after ':' and ','): what metadata-only reads decode.
const reportMetadata = `{"uid": "6f1c2a44-2b0e-4d1b-9a63-3b7f2f6d8e01", "name": "6f1c2a44-2b0e-4d1b-9a63-3b7f2f6d8e01", ` +
	`"labels": {"app.kubernetes.io/managed-by": "kyverno", "audit.kyverno.io/resource.uid": "0b5f5a0e-2c1d-4a47-9d55-000000000036"}, ` +
	`"namespace": "bench", "generation": 1, "managedFields": [{"time": "2026-12-04T10:11:12Z", "manager": "reports-controller", ` +
	`"fieldsV1": {"f:scope": {".": {}, "f:kind": {}, "f:name": {}, "f:namespace": {}, "f:apiVersion": {}}, "f:results": {}, ` +
	`"f:summary": {".": {}, "f:warn": {}, "f:error": {}, "f:fail": {}, "f:pass": {}, "f:skip": {}}, "f:metadata": {"f:labels": ` +
	`{".": {}, "f:app.kubernetes.io/managed-by": {}, "f:audit.kyverno.io/resource.uid": {}}, "f:ownerReferences": {".": {}, ` +
	`"k:{\"uid\":\"0b5f5a0e-2c1d-4a47-9d55-000000000036\"}": {}}}}, "operation": "Update", "apiVersion": "wgpolicyk8s.io/v1alpha2", ` +
	`"fieldsType": "FieldsV1"}], "ownerReferences": [{"uid": "0b5f5a0e-2c1d-4a47-9d55-000000000036", "kind": "Deployment", ` +
	`"name": "web", "apiVersion": "apps/v1", "controller": true, "blockOwnerDeletion": false}], "creationTimestamp": "2026-12-04T10:11:12Z"}`

// fastShapes are metadata the fast decoder must take (not hand to the generic one).
var fastShapes = []string{
	reportMetadata,
	`{}`,
	` { } `,
	`{"name":"a","namespace":"b","labels":{},"annotations":{},"finalizers":[],"ownerReferences":[],"managedFields":[]}`,
	`{"generateName":"r-","selfLink":"/x","resourceVersion":"12","generation":-3,"finalizers":["a","b"],"annotations":{"k":"v","":""}}`,
	`{"deletionTimestamp":"2026-12-04T10:11:12+02:00","deletionGracePeriodSeconds":0,"creationTimestamp":"2026-01-02T03:04:05.123Z"}`,
	`{"name":"répört-ü","labels":{"ключ":"значение"}}`,
	"{\n\t\"name\" : \"a\" ,\r\n \"generation\":9223372036854775807}",
	`{"managedFields":[{"manager":"m","operation":"Apply","apiVersion":"v1","time":"2026-12-04T10:11:12Z","fieldsType":"FieldsV1","fieldsV1":{"f:a":{"f:b":[1,-2,true,false,"s"]}},"subresource":"status"},{}]}`,
	`{"managedFields":[{"fieldsV1":{}}]}`,
	`{"managedFields":[{"fieldsV1":{"a":"\n"}}]}`,
	`{"managedFields":[{"fieldsV1":{"k:{\"a\":\"\\\/\b\f\n\r\t\u00e9\uD83D\"}":{},"\u0000":{}}}]}`,
	"{\"managedFields\":[{\"fieldsV1\":{\"\xff\xfe\":{}}}]}",
}

// otherShapes are JSON the fast decoder hands to the generic one (or invalid input): the result,
// value or error, must be the generic decoder's.
var otherShapes = []string{
	`{"name":"a\"b"}`, `{"name":"a\u00e9"}`, `{"labels":null}`, `{"name":null}`, `{"creationTimestamp":null}`,
	`{"name":"a","name":"b"}`, `{"labels":{"a":"1","a":"2"}}`, `{"Name":"a"}`, `{"other":1}`, `{"generation":1.0}`,
	`{"generation":1e3}`, `{"generation":01}`, `{"generation":-}`, `{"generation":"1"}`, `{"generation":99999999999999999999}`,
	`{"creationTimestamp":"yesterday"}`, `{"creationTimestamp":"2026-12-04"}`, `{"name":"a"`, `{"name":"a"}x`, `{"name":"a"},`,
	`{"name":"a",}`, `[]`, ``, `null`, `{"ownerReferences":[{"controller":1}]}`, `{"ownerReferences":[{"controller":tru}]}`,
	`{"managedFields":[{"fieldsV1":null}]}`, `{"managedFields":[{"fieldsV1":[]}]}`, `{"managedFields":[{"fieldsV1":{"a":1.5}}]}`,
	`{"managedFields":[{"fieldsV1":{"a":{"b":}}}]}`, `{"managedFields":[{"fieldsV1":{"\x":{}}}]}`,
	`{"managedFields":[{"fieldsV1":{"\u00g0":{}}}]}`, `{"managedFields":[{"fieldsV1":{"\u00":{}}}]}`, "{\"managedFields\":[{\"fieldsV1\":{\"\t\":{}}}]}", "{\"name\":\"a\x01\"}",
	"{\"name\":\"\xff\"}", `{"finalizers":["a",]}`, `{"labels":{"a":1}}`, `{"managedFields":[{"time":"2026-12-04T10:11:12Z","time":"2026-12-04T10:11:12Z"}]}`,
	`{"managedFields":[{"fieldsV1":{"a":` + strings.Repeat(`[`, 2000) + strings.Repeat(`]`, 2000) + `}}]}`,
}

// decodeBoth decodes data with DecodeObjectMeta and the generic decoder; when the fast one
// takes it, the two must agree exactly.
func decodeBoth(t *testing.T, data []byte) (fast bool) {
	t.Helper()
	var got, want metav1.ObjectMeta
	fast = DecodeObjectMeta(data, &got)
	wantErr := kjson.UnmarshalCaseSensitivePreserveInts(data, &want)
	if !fast {
		return false
	}
	if wantErr != nil {
		t.Fatalf("%q: decoded fast, the generic decoder fails: %v", data, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded fast as\n%#v\nthe generic decoder gives\n%#v", data, got, want)
	}
	return true
}

// TestDecodeObjectMeta: the shapes storage writes decode fast and exactly as the generic decoder
// decodes them; anything else is left to the generic decoder.
func TestDecodeObjectMeta(t *testing.T) {
	for _, s := range fastShapes {
		if !decodeBoth(t, []byte(s)) {
			t.Errorf("%q: not decoded fast", s)
		}
	}
	for _, s := range otherShapes {
		if decodeBoth(t, []byte(s)) {
			t.Errorf("%q: decoded fast, want it left to the generic decoder", s)
		}
	}
}

// FuzzDecodeObjectMeta: whatever the input, a fast decoding is the generic decoder's.
func FuzzDecodeObjectMeta(f *testing.F) {
	for _, s := range append(append([]string{}, fastShapes...), otherShapes...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { decodeBoth(t, data) })
}

func BenchmarkDecodeObjectMeta(b *testing.B) {
	data := []byte(reportMetadata)
	b.Run("generic", func(b *testing.B) {
		for b.Loop() {
			var m metav1.ObjectMeta
			if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var m metav1.ObjectMeta
			if !DecodeObjectMeta(data, &m) {
				b.Fatal("not decoded fast")
			}
		}
	})
}
