package apiserver

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestReportSerializerMediaTypes checks that the report serializer offers the codec factory's
// media types with the same encoders (their identifiers, which storedjson reads, included), and
// JSON decoders that decode. That they answer as the codec factory's do is jsonmeta's tests.
func TestReportSerializerMediaTypes(t *testing.T) {
	cfg, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	s := newReportSerializer(cfg.Codecs, cfg.Scheme, reports.All())
	want, got := cfg.Codecs.SupportedMediaTypes(), s.SupportedMediaTypes()
	if len(got) != len(want) {
		t.Fatalf("%d media types, the codec factory has %d", len(got), len(want))
	}
	identifier := func(e runtime.Encoder) runtime.Identifier {
		if e == nil {
			return ""
		}
		return e.Identifier()
	}
	for i, info := range got {
		w := want[i]
		if info.MediaType != w.MediaType || info.EncodesAsText != w.EncodesAsText || (info.StreamSerializer == nil) != (w.StreamSerializer == nil) {
			t.Fatalf("media type %d is %+v, the codec factory's %+v", i, info, w)
		}
		for name, pair := range map[string][2]runtime.Encoder{
			"Serializer":       {info.Serializer, w.Serializer},
			"StrictSerializer": {info.StrictSerializer, w.StrictSerializer},
			"PrettySerializer": {info.PrettySerializer, w.PrettySerializer},
		} {
			if identifier(pair[0]) != identifier(pair[1]) {
				t.Errorf("%s %s: identifier %s, the codec factory's %s", info.MediaType, name, identifier(pair[0]), identifier(pair[1]))
			}
		}
		if info.MediaType != runtime.ContentTypeJSON {
			continue
		}
		body := []byte(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"a"}}`)
		for _, d := range []runtime.Decoder{info.Serializer, info.StrictSerializer} {
			_, gvk, err := d.Decode(body, nil, nil)
			if err != nil || gvk.Kind != "PolicyReport" {
				t.Fatalf("decode: %v, %v", gvk, err)
			}
		}
	}
}
