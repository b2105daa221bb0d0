package storedjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// TestJSONSize: the size a list of whole objects or of metadata says it writes is what it writes
// (the list handler compresses by it, as kube-apiserver compresses what it writes over 128 KB),
// with no items, one and several, and with list metadata set or not; and what it writes is JSON.
func TestJSONSize(t *testing.T) {
	listKind := wgpolicyv1alpha2.SchemeGroupVersion.WithKind("PolicyReportList")
	for _, items := range []int{0, 1, 3} {
		for _, listMeta := range []metav1.ListMeta{{}, {ResourceVersion: "42", Continue: "next", RemainingItemCount: new(int64)}} {
			name := fmt.Sprintf("%d items, list metadata %+v", items, listMeta)
			objects := &wgpolicyv1alpha2.PolicyReportList{ListMeta: listMeta}
			// Never decoded here: the items are written as stored.
			objects.Stored.Keep(func([]byte, runtime.Object) error { return errors.New("decoded") }, nil)
			metadata := &wgpolicyv1alpha2.PolicyReportList{ListMeta: listMeta}
			metadata.StoredItems().KeepMetadata()
			for i := range items {
				objects.Items = append(objects.Items, wgpolicyv1alpha2.PolicyReport{})
				metadata.Items = append(metadata.Items, wgpolicyv1alpha2.PolicyReport{})
				objects.Stored.Append(fmt.Appendf(nil, `{"metadata":{"name":"r%d","resourceVersion":"%d"},"results":[]}`, i, 10+i))
				metadata.Stored.Append(fmt.Appendf(nil, `{"name":"r%d","resourceVersion":"%d"}`, i, 10+i))
			}
			list, err := storedjson.NewList(objects, listKind)
			if err != nil {
				t.Fatal(err)
			}
			metadataList, err := storedjson.NewMetadataList(metadata, storedjson.NewEncodings(metav1.SchemeGroupVersion))
			if err != nil {
				t.Fatal(err)
			}
			for kind, body := range map[string]interface {
				JSONSize() int
				WriteJSON(w io.Writer) error
			}{"objects": list.(*storedjson.List), "metadata": metadataList} {
				var out bytes.Buffer
				if err := body.WriteJSON(&out); err != nil {
					t.Fatal(err)
				}
				if got := body.JSONSize(); got != out.Len() {
					t.Errorf("%s, %s: JSONSize %d, writes %d bytes", name, kind, got, out.Len())
				}
				if !json.Valid(out.Bytes()) {
					t.Errorf("%s, %s: writes no JSON: %s", name, kind, out.Bytes())
				}
			}
		}
	}
}
