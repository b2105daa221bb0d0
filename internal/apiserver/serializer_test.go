package apiserver

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestReportSerializerMediaTypes checks that the report serializer offers the media types of an
// API group's default codecs (genericapiserver.NewDefaultAPIGroupInfo) with the same encoders:
// the same identifiers (which storedjson reads), the same output written the same way (lists as
// a stream of items), and JSON decoders that decode. That they decode as the codec factory's do
// is jsonmeta's tests.
func TestReportSerializerMediaTypes(t *testing.T) {
	cfg, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	kinds := reports.All()
	group := genericapiserver.NewDefaultAPIGroupInfo(kinds[0].GroupVersion.Group, cfg.Scheme, metav1.ParameterCodec, cfg.Codecs)
	s := newReportSerializer(group.NegotiatedSerializer, cfg.Scheme, kinds)
	want, got := group.NegotiatedSerializer.SupportedMediaTypes(), s.SupportedMediaTypes()
	if len(got) != len(want) {
		t.Fatalf("%d media types, the group's codecs have %d", len(got), len(want))
	}
	identifier := func(e runtime.Encoder) runtime.Identifier {
		if e == nil {
			return ""
		}
		return e.Identifier()
	}
	list := &metav1.PartialObjectMetadataList{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "7", Continue: "c"},
		Items: []metav1.PartialObjectMetadata{
			{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n", Labels: map[string]string{"x": "y"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "n", ResourceVersion: "5"}},
		},
	}
	for i, info := range got {
		w := want[i]
		if info.MediaType != w.MediaType || info.EncodesAsText != w.EncodesAsText || (info.StreamSerializer == nil) != (w.StreamSerializer == nil) {
			t.Fatalf("media type %d is %+v, the group's %+v", i, info, w)
		}
		for name, pair := range map[string][2]runtime.Encoder{
			"Serializer":       {info.Serializer, w.Serializer},
			"StrictSerializer": {info.StrictSerializer, w.StrictSerializer},
			"PrettySerializer": {info.PrettySerializer, w.PrettySerializer},
		} {
			if identifier(pair[0]) != identifier(pair[1]) {
				t.Errorf("%s %s: identifier %s, the group's %s", info.MediaType, name, identifier(pair[0]), identifier(pair[1]))
			}
			if pair[0] == nil || pair[1] == nil {
				continue
			}
			var ours, theirs writes
			if err := pair[0].Encode(list, &ours); err != nil {
				t.Fatalf("%s %s: %v", info.MediaType, name, err)
			}
			if err := pair[1].Encode(list, &theirs); err != nil {
				t.Fatalf("%s %s (the group's): %v", info.MediaType, name, err)
			}
			if !ours.equal(theirs) {
				t.Errorf("%s %s writes a list as %q, the group's as %q", info.MediaType, name, ours, theirs)
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

// writes records each Write: a streaming encoder writes a list in many, the others in one.
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, bytes.Clone(p))
	return len(p), nil
}

func (w writes) equal(o writes) bool {
	if len(w) != len(o) {
		return false
	}
	for i := range w {
		if !bytes.Equal(w[i], o[i]) {
			return false
		}
	}
	return true
}
