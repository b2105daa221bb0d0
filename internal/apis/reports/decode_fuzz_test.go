package reports_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// FuzzDecodeReport feeds any request body, as JSON or YAML, to the decoders a create or update
// uses (strict and lenient), and every object that decodes to the URL's kind through what the
// server does with each object it stores or serves: validation, selectable fields, Table cells
// and an encode/decode round trip. None may panic (a panic in a handler is a 500), and the round
// trip gives the same object (what is stored is what is served).
func FuzzDecodeReport(f *testing.F) {
	kinds := reports.All()
	scheme := runtime.NewScheme()
	if err := reports.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)
	strict := serializer.NewCodecFactory(scheme, serializer.EnableStrict)
	yamlSerializer := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})

	// Seeds: the real producers' reports (the CRDs accept them all, so must we), and a few shapes
	// that once were trouble elsewhere.
	for _, dir := range []string{filepath.Join("..", "..", "..", "..", "shared", "testdata")} {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".yaml")) {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil && len(b) < 64<<10 {
				for i := range kinds {
					f.Add(uint8(i), strings.HasSuffix(path, ".yaml"), b)
				}
			}
			return nil
		})
	}
	for i, k := range kinds {
		head := `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":{"name":"a"}`
		for _, tail := range []string{
			`}`,
			`,"summary":{"pass":2147483648}}`,
			`,"results":[{"policy":"p","result":"pass","properties":{"a":"\u0000"}}]}`,
			`,"spec":{"owner":{"apiVersion":"","kind":"","name":"","uid":""},"results":[{}]}}`,
			`,"scope":{"name":""},"results":[{"resources":[{}],"timestamp":{"seconds":-1,"nanos":-1}}]}`,
		} {
			f.Add(uint8(i), false, []byte(head+tail))
		}
		f.Add(uint8(i), true, []byte("apiVersion: "+k.GroupVersion.String()+"\nkind: "+k.Kind+"\nmetadata: {name: a}\nresults: [{policy: p, result: fail, severity: high}]\n"))
	}

	f.Fuzz(func(t *testing.T, which uint8, yaml bool, body []byte) {
		k := kinds[int(which)%len(kinds)]
		gvk := k.GroupVersionKind()
		decoders := []runtime.Decoder{codecs.UniversalDeserializer(), strict.UniversalDeserializer()}
		if yaml {
			decoders = []runtime.Decoder{yamlSerializer}
		}
		for _, d := range decoders {
			obj, got, err := d.Decode(body, &gvk, k.New())
			if err != nil || got == nil || *got != gvk {
				continue // refused, or another kind: the handler answers 4xx
			}
			_ = k.Validate(obj)
			_ = k.Fields(obj)
			_ = k.TableRow(obj)

			encoded, err := runtime.Encode(codecs.LegacyCodec(k.GroupVersion), obj)
			if err != nil {
				t.Fatalf("%s: a decoded object does not encode: %v", k.Kind, err)
			}
			again, _, err := codecs.UniversalDeserializer().Decode(encoded, &gvk, k.New())
			if err != nil {
				t.Fatalf("%s: the encoded object does not decode: %v\n%s", k.Kind, err, encoded)
			}
			// Decoding fills in or clears the type fields depending on the body; the content is what
			// must survive.
			for _, o := range []runtime.Object{obj, again} {
				o.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
			}
			if !equality.Semantic.DeepEqual(obj, again) {
				t.Fatalf("%s: the round trip changed the object:\nbefore %#v\nafter  %#v", k.Kind, obj, again)
			}
		}
	})
}
