package storedjson

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestWithResourceVersion: the resourceVersion lands in the top-level metadata only, whatever
// else carries a "metadata" key, and the result is the same object once decoded.
func TestWithResourceVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"kind": "PolicyReport", "metadata": {"name": "a"}}`, `{"kind":"PolicyReport","metadata":{"resourceVersion":"7","name":"a"}}`},
		{`{"metadata": {}}`, `{"metadata":{"resourceVersion":"7"}}`},
		{`{"results": [{"properties": {"metadata": "x"}}], "metadata": {"name": "a"}}`,
			`{"results":[{"properties":{"metadata":"x"}}],"metadata":{"resourceVersion":"7","name":"a"}}`},
		{`{"a\"metadata": {"metadata": {}}, "n": -1.5e3, "t": true, "z": null, "metadata" : { "name": "a"}}`,
			`{"a\"metadata":{"metadata":{}},"n":-1.5e3,"t":true,"z":null,"metadata":{"resourceVersion":"7","name":"a"}}`},
		{`{"s": "}]{[\\", "metadata": {"name": "b"}}`, `{"s":"}]{[\\","metadata":{"resourceVersion":"7","name":"b"}}`},
	} {
		got, err := WithResourceVersion([]byte(tc.in), 7)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Errorf("%s: invalid result %s: %v", tc.in, got, err)
			continue
		}
		if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
		checkMetadataWithResourceVersion(t, []byte(tc.in), 7)
	}
	for _, bad := range []string{``, `[]`, `{"name": "a"}`, `{"metadata": "a"}`, `{"metadata": {"a": 1}`[:10]} {
		if got, err := WithResourceVersion([]byte(bad), 7); err == nil {
			t.Errorf("%q: got %s, want an error", bad, got)
		}
		if got, err := MetadataWithResourceVersion([]byte(bad), 7); err == nil {
			t.Errorf("%q: got metadata %s, want an error", bad, got)
		}
	}
}

// TestEncodingOf: only the API server's plain JSON encoder of the served version gets the stored
// JSON as it is.
func TestEncodingOf(t *testing.T) {
	gv := schema.GroupVersion{Group: "wgpolicyk8s.io", Version: "v1alpha2"}
	codec := func(encodeGV string, enc map[string]string) runtime.Identifier {
		inner, _ := json.Marshal(enc)
		id, _ := json.Marshal(map[string]string{"name": "versioning", "encodeGV": encodeGV, "encoder": string(inner)})
		return runtime.Identifier(id)
	}
	plain := map[string]string{"name": "json", "pretty": "false", "strict": "false", "yaml": "false"}
	plainID := codec("wgpolicyk8s.io/v1alpha2", plain)
	metadataID := func(encodeGV string, enc map[string]string, target string) runtime.Identifier {
		id, _ := json.Marshal(map[string]any{"name": "watch-embedded", "encoder": string(codec(encodeGV, enc)), "target": target, "options": map[string]any{}})
		return runtime.Identifier(id)
	}
	watchID := func(embedded, outer runtime.Identifier, eventType string) runtime.Identifier {
		id, _ := json.Marshal(map[string]string{"name": "watch", "embeddedEncoder": string(embedded), "encoder": string(outer), "eventType": eventType})
		return runtime.Identifier(id)
	}
	for _, tc := range []struct {
		id         runtime.Identifier
		want       encodingKind
		eventStart string
	}{
		{plainID, plainJSON, ""},
		{codec("wgpolicyk8s.io/v1", plain), typedEncoding, ""},
		{codec("wgpolicyk8s.io/v1alpha2", map[string]string{"name": "json", "pretty": "true", "yaml": "false"}), typedEncoding, ""},
		{codec("wgpolicyk8s.io/v1alpha2", map[string]string{"name": "json", "pretty": "false", "yaml": "true"}), typedEncoding, ""},
		{codec("wgpolicyk8s.io/v1alpha2", map[string]string{"name": "protobuf"}), typedEncoding, ""},
		{runtime.Identifier(`{"name":"watch","embeddedEncoder":"x","encoder":"y","eventType":"ADDED"}`), watchFrame, ""},
		{watchID(plainID, plainID, "ADDED"), plainJSONEvent, `{"type":"ADDED","object":`},
		{watchID(plainID, plainID, "MODIFIED"), plainJSONEvent, `{"type":"MODIFIED","object":`},
		{watchID(plainID, plainID, "DELETED"), plainJSONEvent, `{"type":"DELETED","object":`},
		{watchID(plainID, plainID, "BOOKMARK"), watchFrame, ""},
		{watchID(plainID, codec("wgpolicyk8s.io/v1alpha2", map[string]string{"name": "protobuf"}), "ADDED"), watchFrame, ""},
		{watchID(runtime.Identifier(`{"name":"watch-embedded","encoder":"x","target":"meta.k8s.io/v1, Kind=Table"}`), plainID, "ADDED"), watchFrame, ""},
		{runtime.Identifier(`{"name":"watch-embedded","encoder":"x","target":"meta.k8s.io/v1, Kind=Table"}`), typedEncoding, ""},
		// Metadata-only watches: the embedded encoder's identifier as the handler makes it.
		{watchID(metadataID("meta.k8s.io/v1", plain, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), plainID, "ADDED"), metadataJSONEvent,
			`{"type":"ADDED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":`},
		{watchID(metadataID("meta.k8s.io/v1", plain, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), plainID, "DELETED"), metadataJSONEvent,
			`{"type":"DELETED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":`},
		{watchID(metadataID("meta.k8s.io/v1", plain, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), plainID, "BOOKMARK"), watchFrame, ""},
		{watchID(metadataID("meta.k8s.io/v1beta1", plain, "meta.k8s.io/v1beta1, Kind=PartialObjectMetadata"), plainID, "ADDED"), watchFrame, ""},
		{watchID(metadataID("meta.k8s.io/v1", map[string]string{"name": "protobuf"}, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), plainID, "ADDED"), watchFrame, ""},
		{watchID(metadataID("meta.k8s.io/v1", map[string]string{"name": "json", "pretty": "true", "yaml": "false"}, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), plainID, "ADDED"), watchFrame, ""},
		{watchID(metadataID("meta.k8s.io/v1", plain, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), codec("wgpolicyk8s.io/v1alpha2", map[string]string{"name": "protobuf"}), "ADDED"), watchFrame, ""},
		{metadataID("meta.k8s.io/v1", plain, "meta.k8s.io/v1, Kind=PartialObjectMetadata"), typedEncoding, ""},
		{runtime.Identifier(`not json`), typedEncoding, ""},
	} {
		if got := encodingOf(tc.id, gv); got.kind != tc.want || string(got.eventStart) != tc.eventStart {
			t.Errorf("%s: %d %q, want %d %q", tc.id, got.kind, got.eventStart, tc.want, tc.eventStart)
		}
	}
}

// FuzzWithResourceVersion: for any JSON object, WithResourceVersion either refuses it or returns
// valid JSON that decodes to the same object with metadata.resourceVersion added; it never
// panics, and never touches anything but the top-level metadata.
func FuzzWithResourceVersion(f *testing.F) {
	for _, seed := range []string{
		`{"kind": "PolicyReport", "metadata": {"name": "a"}}`,
		`{"metadata": {}}`,
		`{"results": [{"properties": {"metadata": "x"}}], "metadata": {"name": "a"}}`,
		`{"a\"metadata": {"metadata": {}}, "n": -1.5e3, "t": true, "z": null, "metadata" : { "name": "a"}}`,
		`{"s": "}]{[\\", "metadata": {"name": "b\u0000"}}`,
		`{"metadata": []}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed), int64(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, rv int64) {
		var in map[string]any
		inErr := json.Unmarshal(data, &in)
		checkMetadataWithResourceVersion(t, data, rv)
		out, err := WithResourceVersion(data, rv)
		if err != nil {
			return
		}
		if inErr != nil {
			// Invalid JSON may pass the top-level scan; what comes out must then be invalid too
			// (storage only ever hands it JSON that jsonb accepted).
			var v any
			if json.Unmarshal(out, &v) == nil {
				t.Fatalf("invalid input %q became valid JSON %q", data, out)
			}
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q gave invalid JSON %q: %v", data, out, err)
		}
		meta, ok := in["metadata"].(map[string]any)
		if !ok {
			t.Fatalf("%q has no metadata object, yet got %q", data, out)
		}
		if _, had := meta["resourceVersion"]; had || !uniqueTopKeys(data) {
			// Storage never stores a resourceVersion, and jsonb has no duplicate keys; with
			// either, decoding keeps the last of two.
			return
		}
		meta["resourceVersion"] = strconv.FormatInt(rv, 10)
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("%q became %q", data, out)
		}
	})
}

// checkMetadataWithResourceVersion checks that MetadataWithResourceVersion is, byte for byte, the
// metadata of WithResourceVersion's result (a metadata-only list writes the one, a full list the
// other), for data that WithResourceVersion accepts; or fails when that has no whole metadata.
func checkMetadataWithResourceVersion(t *testing.T, data []byte, rv int64) {
	t.Helper()
	full, err := WithResourceVersion(data, rv)
	if err != nil {
		return
	}
	// A truncated object may pass WithResourceVersion's scan (it stops at the metadata) but not
	// the scan of the metadata: then both must fail.
	want, wantErr := Metadata(full)
	got, err := MetadataWithResourceVersion(data, rv)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("%q: MetadataWithResourceVersion = %q, %v; want %q, %v", data, got, err, want, wantErr)
	}
}

// uniqueTopKeys reports whether the top-level keys of the JSON object data are distinct.
func uniqueTopKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		key, _ := k.(string)
		if seen[key] {
			return false
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return true
}

// TestMetadata: the top-level metadata object, as it is, whatever else is called metadata.
func TestMetadata(t *testing.T) {
	in := `{"results": [{"metadata": {"x": 1}}], "metadata" : {"name": "a", "labels": {"k": "}"}}, "z": 1}`
	got, err := Metadata([]byte(in))
	if err != nil || string(got) != `{"name": "a", "labels": {"k": "}"}}` {
		t.Errorf("Metadata(%s) = %s, %v", in, got, err)
	}
	if _, err := Metadata([]byte(`{"metadata": [1]}`)); err == nil {
		t.Error("a metadata that is not an object: no error")
	}
}

// TestMetadataEvents: an object read as its metadata alone (NewMetadata), and a whole stored
// object, write a plain JSON metadata watch event around their metadata as it is; any other
// encoding gets the typed object, decoded from what was read.
func TestMetadataEvents(t *testing.T) {
	gv := schema.GroupVersion{Group: "wgpolicyk8s.io", Version: "v1alpha2"}
	encodings := NewEncodings(gv)
	plain := `{\"name\":\"json\",\"pretty\":\"false\",\"strict\":\"false\",\"yaml\":\"false\"}`
	versioning := func(encodeGV string) string {
		return `{"encodeGV":"` + encodeGV + `","encoder":"` + plain + `","name":"versioning"}`
	}
	embedded, _ := json.Marshal(map[string]any{"name": "watch-embedded", "encoder": versioning("meta.k8s.io/v1"),
		"target": "meta.k8s.io/v1, Kind=PartialObjectMetadata", "options": map[string]any{}})
	event, _ := json.Marshal(map[string]string{"name": "watch", "embeddedEncoder": string(embedded),
		"encoder": versioning(gv.String()), "eventType": "ADDED"})
	metadata := []byte(`{"name":"a","namespace":"n","resourceVersion":"7"}`)
	want := `{"type":"ADDED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":` + string(metadata) + "}}\n"

	var decoded []string
	decode := func(data []byte, into runtime.Object) error {
		decoded = append(decoded, string(data))
		return nil
	}
	whole := []byte(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":` + string(metadata) + `,"results":[]}`)
	for _, o := range []*Object{
		NewMetadata(&metav1.PartialObjectMetadata{}, metadata, encodings, decode),
		NewHollow(&metav1.PartialObjectMetadata{}, whole, encodings, decode),
	} {
		var out bytes.Buffer
		if err := o.CacheEncode(runtime.Identifier(event), func(runtime.Object, io.Writer) error {
			t.Fatal("a metadata event was left to the handler's encoder")
			return nil
		}, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("event %s, want %s", out.String(), want)
		}
		typed := false
		if err := o.CacheEncode(runtime.Identifier(versioning("meta.k8s.io/v1")), func(obj runtime.Object, _ io.Writer) error {
			typed = obj != nil
			return nil
		}, &out); err != nil || !typed {
			t.Errorf("another encoding: typed=%v err=%v, want the typed object", typed, err)
		}
	}
	if len(decoded) != 2 || decoded[0] != string(metadata) || decoded[1] != string(whole) {
		t.Errorf("decoded %q, want the metadata, then the whole object", decoded)
	}
}
