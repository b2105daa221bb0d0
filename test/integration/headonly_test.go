package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/httpread"
)

// TestHeadOnlyResponses: metadata-only and Table lists and watch-list initial events read the
// reports without their results; what clients get must be exactly what the whole objects give,
// for every kind: the same metadata (managedFields and resourceVersions included), the same
// Table cells. A request whose negotiation falls back to the whole object still gets results.
func TestHeadOnlyResponses(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
	metaClient := srv.metadataClient(t)
	g := newGetter(t, ctx, srv.Config)
	hc := g.hc
	get := g.get
	const (
		metaList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
		table    = "application/json;as=Table;v=v1;g=meta.k8s.io"
	)

	for _, kind := range reports.All() {
		t.Run(kind.Kind, func(t *testing.T) {
			ns := "head-" + strings.ToLower(kind.Kind)
			res := resourceFor(client, kind, ns)
			for i, result := range []string{"pass", "fail", "warn"} {
				// Server-side apply, so managedFields are part of what must match.
				applySample(t, ctx, res, sample(kind, ns, fmt.Sprintf("%s-%d", strings.ToLower(kind.Kind), i), map[string]string{"n": fmt.Sprint(i)}, "Pod", result), "head-test")
			}
			full, err := res.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(full.Items) != 3 {
				t.Fatalf("full list has %d items", len(full.Items))
			}
			for _, item := range full.Items {
				if r, _, _ := unstructured.NestedSlice(item.Object, contentPath(kind, "results")...); len(r) != 1 {
					t.Fatalf("full list item %s has %d results, want 1", item.GetName(), len(r))
				}
			}
			wantMeta := map[string]map[string]any{}
			for _, item := range full.Items {
				wantMeta[item.GetName()] = item.Object["metadata"].(map[string]any)
			}
			path := collectionPath(kind, ns)

			// Metadata-only, through client-go's metadata client (protobuf first, as informers ask).
			metaNS := metadataResourceFor(metaClient, kind, ns)
			partial, err := metaNS.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if partial.ResourceVersion != full.GetResourceVersion() {
				t.Errorf("metadata list resourceVersion %s, full %s", partial.ResourceVersion, full.GetResourceVersion())
			}
			for _, item := range partial.Items {
				m, err := json.Marshal(item.ObjectMeta)
				if err != nil {
					t.Fatal(err)
				}
				checkMeta(t, "metadata client list", item.Name, m, wantMeta)
			}
			// The same as JSON.
			var metaJSON struct {
				Items []struct {
					Metadata json.RawMessage `json:"metadata"`
				} `json:"items"`
			}
			if err := json.Unmarshal(get(t, path, metaList), &metaJSON); err != nil {
				t.Fatal(err)
			}
			if len(metaJSON.Items) != 3 {
				t.Errorf("metadata JSON list has %d items", len(metaJSON.Items))
			}
			for _, item := range metaJSON.Items {
				var m struct{ Name string }
				_ = json.Unmarshal(item.Metadata, &m)
				checkMeta(t, "metadata JSON list", m.Name, item.Metadata, wantMeta)
			}

			// Table: cells equal those computed from the whole objects (includeObject=Object).
			var head, whole metav1.Table
			if err := json.Unmarshal(get(t, path, table), &head); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(get(t, path+"?includeObject=Object", table), &whole); err != nil {
				t.Fatal(err)
			}
			if len(head.Rows) != 3 || len(head.Rows) != len(whole.Rows) {
				t.Fatalf("table rows %d, with objects %d", len(head.Rows), len(whole.Rows))
			}
			for i := range head.Rows {
				// Ages ("5s") move between the two requests: compare the other cells.
				h, w := slices.Clone(head.Rows[i].Cells), slices.Clone(whole.Rows[i].Cells)
				for c, col := range head.ColumnDefinitions {
					if col.Type == "date" && c < len(h) && c < len(w) {
						h[c], w[c] = nil, nil
					}
				}
				if !reflect.DeepEqual(h, w) {
					t.Errorf("table row %d: cells %v, from whole objects %v", i, head.Rows[i].Cells, whole.Rows[i].Cells)
				}
			}
			if !strings.Contains(string(whole.Rows[0].Object.Raw), `"results"`) {
				t.Errorf("includeObject=Object rows lost their results: %s", whole.Rows[0].Object.Raw)
			}

			// A negotiation that falls back to the whole object (an unknown version first).
			body := get(t, path, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v9, application/json")
			if strings.Count(string(body), `"results"`) != 3 {
				t.Errorf("fallback to whole objects lost results: %s", body)
			}

			// Watch-list initial events, metadata-only.
			events, err := httpread.WatchList(ctx, hc, srv.Config.Host+path, "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 3 {
				t.Errorf("watch-list sent %d initial objects, want 3", len(events))
			}
			for _, raw := range events {
				var obj struct {
					Metadata json.RawMessage `json:"metadata"`
					Results  any             `json:"results"`
				}
				_ = json.Unmarshal(raw, &obj)
				var m struct{ Name string }
				_ = json.Unmarshal(obj.Metadata, &m)
				checkMeta(t, "metadata watch-list", m.Name, obj.Metadata, wantMeta)
			}
		})
	}
}

// checkMeta compares one returned metadata with the whole object's.
func checkMeta(t *testing.T, what, name string, got []byte, want map[string]map[string]any) {
	t.Helper()
	w, ok := want[name]
	if !ok {
		t.Errorf("%s: unexpected item %q", what, name)
		return
	}
	var g map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, g, w) {
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		t.Errorf("%s %s: metadata\n%s\nwant\n%s", what, name, gj, wj)
	}
}
