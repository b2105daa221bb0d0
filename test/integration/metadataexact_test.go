package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestMetadataOnlyListsExact: metadata-only lists (which decode the stored metadata column with
// their own decoder, storedjson.DecodeObjectMeta) carry exactly the metadata of the whole
// objects: every ObjectMeta field a report can have (managedFields, owner references, finalizers,
// annotations, labels, timestamps, generation, resourceVersion), for all six kinds, as protobuf
// (the metadata client asks it first) and as JSON, paged with continue tokens and with label and
// field selectors, at the current and at an exact resourceVersion.
func TestMetadataOnlyListsExact(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	client, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	metaClient, err := metadata.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw := newRawClient(t, srv.Config)
	for _, kind := range reports.All() {
		t.Run(kind.Kind, func(t *testing.T) {
			t.Parallel()
			testMetadataExact(t, kind, client, metaClient, raw)
		})
	}
}

func testMetadataExact(t *testing.T, kind reports.Kind, client dynamic.Interface, metaClient metadata.Interface, raw *rawClient) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lower := strings.ToLower(kind.Kind)
	ns := "exact-" + lower
	res := resourceFor(client, kind, ns)
	var metaRes metadata.ResourceInterface = metaClient.Resource(kind.GroupVersionResource())
	if kind.Namespaced {
		metaRes = metaClient.Resource(kind.GroupVersionResource()).Namespace(ns)
	}
	for i := range 5 {
		name := fmt.Sprintf("%s-%d", lower, i)
		u := sample(kind, ns, name, map[string]string{"app": name, "parity": fmt.Sprint(i % 2), "kind": lower}, "Pod", "pass")
		u.SetAnnotations(map[string]string{"note": "répört \"quoted\" " + name, "empty": ""})
		u.SetFinalizers([]string{"example.com/keep"})
		controller, block := true, i%2 == 0
		u.SetOwnerReferences([]metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "Deployment", Name: "web-" + name,
			UID: types.UID(fmt.Sprintf("0b5f5a0e-2c1d-4a47-9d55-%012d", i)), Controller: &controller, BlockOwnerDeletion: &block,
		}})
		if _, err := res.Create(ctx, u, metav1.CreateOptions{FieldManager: "exact-test"}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	// One object with a second managedFields entry (an apply on top of the create).
	patch := fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"metadata":{"name":"%s-0","labels":{"applied":"yes"}}}`, kind.GroupVersion.String(), kind.Kind, lower)
	if _, err := res.Patch(ctx, lower+"-0", types.ApplyPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "applier"}); err != nil {
		t.Fatalf("apply: %v", err)
	}

	full, err := res.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]metav1.ObjectMeta{}
	for _, u := range full.Items {
		var m metav1.ObjectMeta
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object["metadata"].(map[string]any), &m); err != nil {
			t.Fatal(err)
		}
		if len(m.ManagedFields) == 0 || len(m.OwnerReferences) != 1 || len(m.Finalizers) != 1 || len(m.Annotations) != 2 {
			t.Fatalf("%s: the whole object lacks the metadata under test: %+v", m.Name, m)
		}
		want[m.Name] = canonicalFields(t, m)
	}
	if len(want) != 5 {
		t.Fatalf("full list has %d objects, want 5", len(want))
	}
	check := func(who string, items []metav1.PartialObjectMetadata, names ...string) {
		t.Helper()
		if len(items) != len(names) {
			t.Errorf("%s: %d items, want %v", who, len(items), names)
		}
		for i := range items {
			got := canonicalFields(t, items[i].ObjectMeta)
			if i < len(names) && got.Name != names[i] {
				t.Errorf("%s: item %d is %s, want %s", who, i, got.Name, names[i])
			}
			if !apiequality.Semantic.DeepEqual(got, want[got.Name]) {
				t.Errorf("%s: %s:\n got %+v\nwant %+v", who, got.Name, got, want[got.Name])
			}
		}
	}
	all := []string{lower + "-0", lower + "-1", lower + "-2", lower + "-3", lower + "-4"}
	fieldSelector := "metadata.name!=" + lower + "-3"
	for _, tc := range []struct {
		name  string
		opts  metav1.ListOptions
		names []string
	}{
		{"all", metav1.ListOptions{}, all},
		{"label selector", metav1.ListOptions{LabelSelector: "parity=1"}, []string{lower + "-1", lower + "-3"}},
		{"field selector", metav1.ListOptions{FieldSelector: fieldSelector}, []string{lower + "-0", lower + "-1", lower + "-2", lower + "-4"}},
		{"exact revision", metav1.ListOptions{ResourceVersion: full.GetResourceVersion(), ResourceVersionMatch: metav1.ResourceVersionMatchExact}, all},
	} {
		// Protobuf (the metadata client's first choice), in pages of 2 with continue tokens.
		var items []metav1.PartialObjectMetadata
		opts := tc.opts
		opts.Limit = 2
		for {
			page, err := metaRes.List(ctx, opts)
			if err != nil {
				t.Fatalf("%s: metadata list: %v", tc.name, err)
			}
			items = append(items, page.Items...)
			if page.Continue == "" {
				break
			}
			// The token carries the revision.
			opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
		}
		check(tc.name+", protobuf pages", items, tc.names...)

		// JSON, one request.
		q := url.Values{}
		if tc.opts.LabelSelector != "" {
			q.Set("labelSelector", tc.opts.LabelSelector)
		}
		if tc.opts.FieldSelector != "" {
			q.Set("fieldSelector", tc.opts.FieldSelector)
		}
		if tc.opts.ResourceVersion != "" {
			q.Set("resourceVersion", tc.opts.ResourceVersion)
			q.Set("resourceVersionMatch", string(tc.opts.ResourceVersionMatch))
		}
		body := rawGet(t, raw, apiPath(kind, ns), q, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
		var list metav1.PartialObjectMetadataList
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("%s: metadata list JSON: %v", tc.name, err)
		}
		check(tc.name+", JSON", list.Items, tc.names...)
	}
}

// canonicalFields returns m with each managedFields entry's fieldsV1 in one spelling (compact,
// keys sorted): FieldsV1 is JSON kept as bytes, and its spelling differs between responses
// (metadata-only ones carry it as PostgreSQL prints the stored jsonb, as before the metadata
// decoder) while its meaning does not.
func canonicalFields(t *testing.T, m metav1.ObjectMeta) metav1.ObjectMeta {
	t.Helper()
	m.ManagedFields = append([]metav1.ManagedFieldsEntry(nil), m.ManagedFields...)
	for i, e := range m.ManagedFields {
		if e.FieldsV1 == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &v); err != nil {
			t.Fatalf("%s: fieldsV1 is not JSON: %v", m.Name, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		f := &metav1.FieldsV1{}
		f.SetRawBytes(b)
		m.ManagedFields[i].FieldsV1 = f
	}
	return m
}
