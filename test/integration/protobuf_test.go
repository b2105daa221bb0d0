package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestMetadataClientWrites runs what kube-controller-manager's namespace controller and garbage
// collector send, with their client (client-go's metadata client, which accepts
// "application/vnd.kubernetes.protobuf,application/json"): a delete of one report and a
// deletecollection of every kind in a namespace. The report types have no protobuf encoding, so
// their answers must come as JSON, as custom resources' do; they used to fail to encode as
// protobuf (500, namespaces stuck terminating; found by Kyverno's chainsaw report tests).
// A request that accepts nothing but protobuf for the objects gets 406, and metadata-only lists
// still come as protobuf.
func TestMetadataClientWrites(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, dbtest.URL(t), nil)
	ctx := context.Background()
	meta := srv.metadataClient(t)
	dyn := srv.dynamicClient(t)
	const ns = "doomed"
	for _, k := range reports.All() {
		res := dyn.Resource(k.GroupVersionResource())
		for i := range 3 {
			u := sample(k, ns, fmt.Sprintf("r%d", i), nil, "Pod", "fail")
			var err error
			if k.Namespaced {
				_, err = res.Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
			} else {
				_, err = res.Create(ctx, u, metav1.CreateOptions{})
			}
			if err != nil {
				t.Fatalf("create %s: %v", k.Kind, err)
			}
		}
	}
	for _, k := range reports.All() {
		client := meta.Resource(k.GroupVersionResource())
		var scoped metadata.ResourceInterface = client
		if k.Namespaced {
			scoped = client.Namespace(ns)
		}
		if err := scoped.Delete(ctx, "r0", metav1.DeleteOptions{}); err != nil {
			t.Errorf("%s: delete with the metadata client: %v", k.Kind, err)
		}
		if err := scoped.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Errorf("%s: deletecollection with the metadata client: %v", k.Kind, err)
		}
		left, err := scoped.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("%s: list with the metadata client: %v", k.Kind, err)
		}
		if len(left.Items) != 0 {
			t.Errorf("%s: %d left after deletecollection", k.Kind, len(left.Items))
		}
	}

	c := newRawClient(t, srv.Config)
	polr := kindNamed(t, "PolicyReport")
	collection := collectionPath(polr, ns)
	accept := func(method, path, accept string) (int, string) {
		t.Helper()
		r := c.send(method, path, accept, "", nil)
		return r.code, r.contentType
	}
	if code, ct := accept(http.MethodGet, collection, "application/vnd.kubernetes.protobuf"); code != http.StatusNotAcceptable {
		t.Errorf("list accepting only protobuf: %d %s, want 406", code, ct)
	}
	if code, ct := accept(http.MethodGet, collection, "application/vnd.kubernetes.protobuf, application/json"); code != http.StatusOK || ct != "application/json" {
		t.Errorf("list accepting protobuf, then JSON: %d %s, want 200 application/json", code, ct)
	}
	const metaProto = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	if code, ct := accept(http.MethodGet, collection, metaProto+",application/json"); code != http.StatusOK || ct != "application/vnd.kubernetes.protobuf" {
		t.Errorf("metadata-only list as protobuf: %d %s, want 200 application/vnd.kubernetes.protobuf", code, ct)
	}
}
