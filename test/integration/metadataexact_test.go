package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
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
	"github.com/reports-server/reports-server/internal/httpread"
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
	client := srv.dynamicClient(t)
	metaClient := srv.metadataClient(t)
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
	metaRes := metadataResourceFor(metaClient, kind, ns)
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

		// The same in pages, and pretty: whole documents, as the generic handler writes them.
		compareMetadataJSONPages(t, raw, apiPath(kind, ns), q, tc.name)
	}

	// Watch-lists of metadata in JSON: the v1 events are written around the stored metadata
	// (storedjson's metadata events), the v1beta1 ones by the generic watch encoder from the
	// typed objects. Both carry exactly the whole objects' metadata, and the same documents
	// apart from the apiVersion.
	var events [2][]map[string]any
	for i, v := range []string{"v1", "v1beta1"} {
		objects, err := httpread.WatchList(ctx, raw.http, raw.host+apiPath(kind, ns), "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v="+v)
		if err != nil {
			t.Fatalf("metadata watch-list %s: %v", v, err)
		}
		var items []metav1.PartialObjectMetadata
		for _, o := range objects {
			var item metav1.PartialObjectMetadata
			var doc map[string]any
			if err := json.Unmarshal(o, &item); err != nil {
				t.Fatalf("metadata watch-list %s: %v", v, err)
			}
			if err := json.Unmarshal(o, &doc); err != nil {
				t.Fatalf("metadata watch-list %s: %v", v, err)
			}
			items = append(items, item)
			events[i] = append(events[i], asMetaV1(doc))
		}
		check("watch-list, JSON "+v, items, all...)
	}
	if !reflect.DeepEqual(events[0], events[1]) {
		t.Errorf("metadata watch-list events differ, v1 then v1beta1:\n%v\n%v", events[0], events[1])
	}
	if len(events[0]) == 0 || events[0][0]["kind"] != "PartialObjectMetadata" {
		t.Errorf("metadata watch-list: not PartialObjectMetadata: %v", events[0])
	}
}

// The Accept headers of metadata-only lists in JSON: v1 is answered by the server's own handler
// (internal/apiserver, metadatalist.go), from the stored metadata; v1beta1 by the generic list
// handler, which converts the typed list. The two differ in apiVersion alone.
const (
	metadataListV1JSON      = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	metadataListV1beta1JSON = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1"
)

// compareMetadataJSONPages reads the collection at path (with query q) in pages of 2 as a
// metadata-only JSON list three ways — v1 (the server's metadata list handler, from stored
// metadata), v1 pretty (the same handler, encoding the typed list) and v1beta1 (the generic
// handler) — and checks that every page is the same document once decoded: list kind and
// metadata (resourceVersion, continue token, remainingItemCount), item kinds, every metadata
// field.
func compareMetadataJSONPages(t *testing.T, raw *rawClient, path string, q url.Values, what string) {
	t.Helper()
	type reading struct {
		name, accept string
		pretty       bool
	}
	// The kinds' subtests write in parallel, so the cluster's revision moves between readings:
	// all three read the revision the first page of a first list has.
	if q.Get("resourceVersion") == "" {
		var first struct {
			Metadata metav1.ListMeta `json:"metadata"`
		}
		if err := json.Unmarshal(rawGet(t, raw, path, url.Values{"limit": {"2"}}, metadataListV1JSON), &first); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		pinned := url.Values{}
		for k, v := range q {
			pinned[k] = v
		}
		pinned.Set("resourceVersion", first.Metadata.ResourceVersion)
		pinned.Set("resourceVersionMatch", string(metav1.ResourceVersionMatchExact))
		q = pinned
	}
	var pages [3][]map[string]any
	for i, r := range []reading{{"v1", metadataListV1JSON, false}, {"v1 pretty", metadataListV1JSON, true}, {"v1beta1", metadataListV1beta1JSON, false}} {
		query := url.Values{}
		for k, v := range q {
			query[k] = v
		}
		query.Set("limit", "2")
		if r.pretty {
			query.Set("pretty", "true")
		}
		for {
			body := rawGet(t, raw, path, query, r.accept)
			// Pretty output is indented over many lines; plain output is one line.
			if pretty := bytes.Contains(bytes.TrimSpace(body), []byte("\n")); pretty != r.pretty {
				t.Errorf("%s, %s: pretty=%v, but the body is %.200s", what, r.name, r.pretty, body)
			}
			var page map[string]any
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatalf("%s, %s: %v", what, r.name, err)
			}
			pages[i] = append(pages[i], asMetaV1(page))
			cont, _ := page["metadata"].(map[string]any)["continue"].(string)
			if cont == "" {
				break
			}
			query.Set("continue", cont)
			query.Del("resourceVersion")
			query.Del("resourceVersionMatch")
		}
	}
	for i, name := range []string{"v1 pretty", "v1beta1"} {
		if !reflect.DeepEqual(pages[0], pages[i+1]) {
			t.Errorf("%s: metadata-only JSON pages differ, v1 then %s:\n%v\n%v", what, name, pages[0], pages[i+1])
		}
	}
	if len(pages[0]) == 0 || pages[0][0]["kind"] != "PartialObjectMetadataList" {
		t.Errorf("%s: not a PartialObjectMetadataList: %v", what, pages[0])
	}
}

// asMetaV1 rewrites a decoded v1beta1 PartialObjectMetadataList's apiVersions as v1.
func asMetaV1(page map[string]any) map[string]any {
	const v1beta1, v1 = "meta.k8s.io/v1beta1", "meta.k8s.io/v1"
	if page["apiVersion"] == v1beta1 {
		page["apiVersion"] = v1
	}
	items, _ := page["items"].([]any)
	for _, item := range items {
		if m, ok := item.(map[string]any); ok && m["apiVersion"] == v1beta1 {
			m["apiVersion"] = v1
		}
	}
	return page
}

// TestMetadataListErrors: requests that the server's metadata-only list handler answers (JSON of
// meta.k8s.io/v1) fail exactly as the generic list handler fails them (v1beta1): the same HTTP
// code and Status (reason, message, details) for bad selectors, bad list options and a
// resourceVersion too new; a cluster-scoped resource under a namespace is 404 for
// both; and the lists it answers are counted in apiserver_request_total as LISTs.
func TestMetadataListErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	raw := newRawClient(t, srv.Config)
	polr, cpolr := kindNamed(t, "PolicyReport"), kindNamed(t, "ClusterPolicyReport")
	for _, tc := range []struct {
		name, path, query string
		code              int
	}{
		{"bad label selector", apiPath(polr, "errs"), "labelSelector=a+in+%28", http.StatusBadRequest},
		{"unknown field selector", apiPath(polr, "errs"), "fieldSelector=spec.nope%3D1", http.StatusBadRequest},
		{"bad field selector", apiPath(cpolr, ""), "fieldSelector=metadata.name%3D%3D%3D", http.StatusBadRequest},
		{"initial events without a watch", apiPath(polr, "errs"), "sendInitialEvents=true", http.StatusUnprocessableEntity},
		{"bad limit", apiPath(polr, "errs"), "limit=x", http.StatusBadRequest},
		{"bad continue", apiPath(cpolr, ""), "limit=1&continue=garbage", http.StatusBadRequest},
		{"exact revision too new", apiPath(polr, "errs"), "resourceVersion=99999999999&resourceVersionMatch=Exact", http.StatusGatewayTimeout},
		{"match without a revision", apiPath(cpolr, ""), "resourceVersionMatch=NotOlderThan", http.StatusUnprocessableEntity},
		{"cluster-scoped under a namespace", "/apis/wgpolicyk8s.io/v1alpha2/namespaces/errs/clusterpolicyreports", "", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path + "?" + tc.query
			own := raw.send(http.MethodGet, path, metadataListV1JSON, "", nil)
			generic := raw.send(http.MethodGet, path, metadataListV1beta1JSON, "", nil)
			if own.code != tc.code || generic.code != tc.code {
				t.Fatalf("got HTTP %d (v1) and %d (v1beta1), want %d: %s / %s", own.code, generic.code, tc.code, own.body, generic.body)
			}
			var a, b metav1.Status
			if err := json.Unmarshal(own.body, &a); err != nil || a.Kind != "Status" {
				t.Fatalf("v1 answer is not a Status: %s", own.body)
			}
			if err := json.Unmarshal(generic.body, &b); err != nil || b.Kind != "Status" {
				t.Fatalf("v1beta1 answer is not a Status: %s", generic.body)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("Status differs:\n v1      %+v\n v1beta1 %+v", a, b)
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rawGet(t, raw, apiPath(polr, "counted"), nil, metadataListV1JSON)
	families := scrape(t, ctx, srv)
	for _, m := range find(families, "apiserver_request_total", "resource", "policyreports") {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["verb"] == "LIST" && labels["code"] == "200" && labels["scope"] == "namespace" && labels["group"] == "wgpolicyk8s.io" && labels["version"] == "v1alpha2" {
			return
		}
	}
	t.Errorf("no apiserver_request_total LIST of policyreports with code 200: %v", find(families, "apiserver_request_total", "resource", "policyreports"))
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
