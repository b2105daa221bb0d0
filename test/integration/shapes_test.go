package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/httpread"
)

// The Accept headers of the three response shapes: metadata only, Table, the whole object.
const (
	acceptMeta  = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
	acceptTable = "application/json;as=Table;v=v1;g=meta.k8s.io"
	acceptWhole = "application/json"
)

// TestResponseShapesExact: what TestHeadOnlyResponses and TestStoredJSONResponses leave out. For
// every kind, gets, Table lists, Table watch-lists and watches from a resourceVersion (ADDED,
// MODIFIED and DELETED events; metadata as JSON and, through client-go's metadata client, as
// protobuf) answer in each shape exactly what the whole objects give: the same
// metadata (managedFields and resourceVersions included) and the same Table cells as a Table of
// the whole objects (includeObject=Object).
func TestResponseShapesExact(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
	metaClient := srv.metadataClient(t)
	g := newGetter(t, ctx, srv.Config)

	for _, kind := range reports.All() {
		t.Run(kind.Kind, func(t *testing.T) {
			ns := "shape-" + strings.ToLower(kind.Kind)
			res := resourceFor(client, kind, ns)
			name := func(i int) string { return fmt.Sprintf("%s-%d", strings.ToLower(kind.Kind), i) }
			key := func(n string) string { // as shapeKey finds an object
				if kind.Namespaced {
					return ns + "/" + n
				}
				return "/" + n
			}
			apply := func(i int, labels map[string]string, result string) {
				t.Helper()
				applySample(t, ctx, res, sample(kind, ns, name(i), labels, "Pod", result), "shape-test")
			}
			for i, result := range []string{"pass", "fail", "warn"} {
				apply(i, map[string]string{"n": fmt.Sprint(i)}, result)
			}
			path := collectionPath(kind, ns)

			full, err := res.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wholes := map[string]map[string]any{}
			wantMeta := map[string]map[string]any{}
			for _, item := range full.Items {
				wholes[item.GetName()] = item.Object
				wantMeta[key(item.GetName())] = item.Object["metadata"].(map[string]any)
			}
			if len(wholes) != 3 {
				t.Fatalf("full list has %d items", len(wholes))
			}
			wantTable := tableOf(t, g.get(t, path+"?includeObject=Object", acceptTable))
			if len(wantTable.rows) != 3 {
				t.Fatalf("Table of the whole objects has %d rows", len(wantTable.rows))
			}

			t.Run("table list", func(t *testing.T) {
				body := g.get(t, path, acceptTable)
				checkListRV(t, "Table list", body, full.GetResourceVersion())
				got := tableOf(t, body)
				if len(got.rows) != 3 {
					t.Errorf("Table list has %d rows, want 3", len(got.rows))
				}
				wantTable.same(t, "Table list", got, wantMeta)
			})

			metaNS := metadataResourceFor(metaClient, kind, ns)

			t.Run("get", func(t *testing.T) {
				for n := range wholes {
					m := g.get(t, path+"/"+n, acceptMeta)
					var partial struct {
						Kind     string          `json:"kind"`
						Metadata json.RawMessage `json:"metadata"`
						Results  any             `json:"results"`
						Spec     any             `json:"spec"`
					}
					if err := json.Unmarshal(m, &partial); err != nil {
						t.Fatal(err)
					}
					if partial.Kind != "PartialObjectMetadata" || partial.Results != nil || partial.Spec != nil {
						t.Errorf("metadata GET of %s: %s", n, m)
					}
					checkMeta(t, "metadata GET", key(n), partial.Metadata, wantMeta)
					// The same through client-go's metadata client (protobuf).
					p, err := metaNS.Get(ctx, n, metav1.GetOptions{})
					if err != nil {
						t.Fatal(err)
					}
					pm, err := json.Marshal(p.ObjectMeta)
					if err != nil {
						t.Fatal(err)
					}
					checkMeta(t, "metadata client GET", key(n), pm, wantMeta)

					table := tableOf(t, g.get(t, path+"/"+n, acceptTable))
					if len(table.rows) != 1 {
						t.Fatalf("Table GET of %s has %d rows", n, len(table.rows))
					}
					wantTable.same(t, "Table GET", table, wantMeta)
				}
			})

			t.Run("table watch-list", func(t *testing.T) {
				events, err := httpread.WatchList(ctx, g.hc, srv.Config.Host+path, acceptTable)
				if err != nil {
					t.Fatal(err)
				}
				got := table{dates: wantTable.dates}
				for _, raw := range events {
					got.add(t, raw)
				}
				if len(got.rows) != 3 {
					t.Fatalf("Table watch-list sent %d rows in %d events, want 3", len(got.rows), len(events))
				}
				wantTable.same(t, "Table watch-list", got, wantMeta)
			})

			t.Run("watch", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				from := full.GetResourceVersion()
				watches := map[string]*watchStream{}
				for _, accept := range []string{acceptWhole, acceptMeta, acceptTable} {
					watches[accept] = openWatch(t, ctx, g.hc, srv.Config.Host+path+"?watch=1&resourceVersion="+from, accept)
				}
				// And as informers watch metadata: client-go's metadata client, protobuf.
				protoWatch, err := metaNS.Watch(ctx, metav1.ListOptions{ResourceVersion: from})
				if err != nil {
					t.Fatal(err)
				}
				defer protoWatch.Stop()
				// One event of each type: a new object, a relabelled one and a deleted one.
				apply(3, map[string]string{"n": "3"}, "error")
				apply(0, map[string]string{"n": "0", "relabelled": "yes"}, "pass")
				deleted := wholes[name(1)]
				if err := res.Delete(ctx, name(1), metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}

				// What each event must carry: the GET of the written object afterwards, and for the
				// deletion the object as it was, at the deletion's resourceVersion.
				after := map[string]map[string]any{}
				afterTable := table{dates: wantTable.dates}
				for _, i := range []int{3, 0} {
					u, err := res.Get(ctx, name(i), metav1.GetOptions{})
					if err != nil {
						t.Fatal(err)
					}
					after[name(i)] = u.Object
					afterTable.add(t, g.get(t, path+"/"+name(i), acceptTable))
				}
				afterTable.rows[key(name(1))] = wantTable.rows[key(name(1))]

				types := []string{"ADDED", "MODIFIED", "DELETED"}
				names := []string{name(3), name(0), name(1)}
				var deletedRV string
				for accept, w := range watches {
					gotTable := table{dates: wantTable.dates}
					for e, typ := range types {
						ev := w.next(t)
						if ev.Type != typ {
							t.Fatalf("%s watch: event %d is %s, want %s", accept, e, ev.Type, typ)
						}
						obj := ev.Object
						want := after[names[e]]
						if typ == "DELETED" {
							want = withResourceVersion(deleted, objectRV(t, accept, obj))
							if deletedRV == "" {
								deletedRV = objectRV(t, accept, obj)
							} else if rv := objectRV(t, accept, obj); rv != deletedRV {
								t.Errorf("%s watch: DELETED at resourceVersion %s, another watch's at %s", accept, rv, deletedRV)
							}
							if deletedRV == deleted["metadata"].(map[string]any)["resourceVersion"] {
								t.Errorf("%s watch: DELETED event kept the object's last resourceVersion %s", accept, deletedRV)
							}
						}
						switch accept {
						case acceptWhole:
							if !equalJSON(t, obj, want) {
								t.Errorf("whole %s event of %s:\n%s\nwant\n%s", typ, names[e], mustJSON(t, obj), mustJSON(t, want))
							}
						case acceptMeta:
							if obj["kind"] != "PartialObjectMetadata" {
								t.Errorf("metadata %s event of %s is a %v", typ, names[e], obj["kind"])
							}
							checkMeta(t, "metadata "+typ+" event", names[e], mustJSON(t, obj["metadata"]),
								map[string]map[string]any{names[e]: want["metadata"].(map[string]any)})
						case acceptTable:
							gotTable.add(t, mustJSON(t, obj))
						}
					}
					if accept == acceptTable {
						metas := map[string]map[string]any{}
						for n, o := range after {
							metas[key(n)] = o["metadata"].(map[string]any)
						}
						metas[key(name(1))] = withResourceVersion(deleted, deletedRV)["metadata"].(map[string]any)
						afterTable.same(t, "Table watch", gotTable, metas)
					}
				}
				for e, typ := range types {
					var ev watch.Event
					select {
					case ev = <-protoWatch.ResultChan():
					case <-ctx.Done():
						t.Fatalf("metadata client watch: no event %d", e)
					}
					p, ok := ev.Object.(*metav1.PartialObjectMetadata)
					if string(ev.Type) != typ || !ok {
						t.Fatalf("metadata client watch: event %d is %s of %T, want %s of PartialObjectMetadata", e, ev.Type, ev.Object, typ)
					}
					want := after[names[e]]
					if typ == "DELETED" {
						want = withResourceVersion(deleted, deletedRV)
					}
					checkMeta(t, "metadata client "+typ+" event", names[e], mustJSON(t, p.ObjectMeta),
						map[string]map[string]any{names[e]: want["metadata"].(map[string]any)})
				}
			})
		})
	}
}

// table is the rows of Table responses by object (shapeKey): their cells (date columns blanked: ages
// move between requests) and their objects' metadata.
type table struct {
	dates []int
	rows  map[string]tableRow
}

type tableRow struct {
	cells    []any
	metadata json.RawMessage
}

// tableOf reads a Table response.
func tableOf(t *testing.T, body []byte) table {
	t.Helper()
	var tb table
	tb.add(t, body)
	return tb
}

// add adds the rows of a Table (a response or a watch event's object), taking the date columns
// from its column definitions when it has them.
func (tb *table) add(t *testing.T, body []byte) {
	t.Helper()
	var tab metav1.Table
	if err := json.Unmarshal(body, &tab); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if tab.Kind != "Table" {
		t.Fatalf("not a Table: %s", body)
	}
	if len(tab.ColumnDefinitions) > 0 {
		tb.dates = nil
		for c, col := range tab.ColumnDefinitions {
			if col.Type == "date" {
				tb.dates = append(tb.dates, c)
			}
		}
	}
	if tb.rows == nil {
		tb.rows = map[string]tableRow{}
	}
	for _, row := range tab.Rows {
		var obj struct {
			Metadata json.RawMessage `json:"metadata"`
		}
		if err := json.Unmarshal(row.Object.Raw, &obj); err != nil {
			t.Fatalf("Table row object: %v: %s", err, row.Object.Raw)
		}
		var m struct{ Namespace, Name string }
		if err := json.Unmarshal(obj.Metadata, &m); err != nil || m.Name == "" {
			t.Fatalf("Table row without a name: %s", row.Object.Raw)
		}
		cells := slices.Clone(row.Cells)
		for _, c := range tb.dates {
			if c < len(cells) {
				cells[c] = nil
			}
		}
		tb.rows[m.Namespace+"/"+m.Name] = tableRow{cells: cells, metadata: obj.Metadata}
	}
}

// same checks that got's rows have the cells of tb's rows of the same objects and the metadata of
// want (by shapeKey).
func (tb table) same(t *testing.T, what string, got table, want map[string]map[string]any) {
	t.Helper()
	for n, row := range got.rows {
		w, ok := tb.rows[n]
		if !ok {
			t.Errorf("%s: unexpected row %s", what, n)
			continue
		}
		if !reflect.DeepEqual(row.cells, w.cells) {
			t.Errorf("%s: row %s has cells %v, want %v", what, n, row.cells, w.cells)
		}
		checkMeta(t, what, n, row.metadata, want)
	}
}

// applySample writes obj with server-side apply as manager, so that the object has managedFields
// for the responses to carry.
func applySample(t *testing.T, ctx context.Context, res dynamic.ResourceInterface, obj *unstructured.Unstructured, manager string) {
	t.Helper()
	data, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.Patch(ctx, obj.GetName(), "application/apply-patch+yaml", data, metav1.PatchOptions{FieldManager: manager}); err != nil {
		t.Fatalf("apply %s: %v", obj.GetName(), err)
	}
}

// checkListRV checks that the list in body (a list of any shape, or a Table) has resourceVersion
// want, the full list's.
func checkListRV(t *testing.T, what string, body []byte, want string) {
	t.Helper()
	var list struct {
		Metadata metav1.ListMeta `json:"metadata"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if list.Metadata.ResourceVersion != want {
		t.Errorf("%s resourceVersion %q, the full list's %q", what, list.Metadata.ResourceVersion, want)
	}
}

// withResourceVersion is a deep copy of obj with its metadata.resourceVersion set to rv.
func withResourceVersion(obj map[string]any, rv string) map[string]any {
	u := (&unstructured.Unstructured{Object: obj}).DeepCopy()
	u.SetResourceVersion(rv)
	return u.Object
}

// objectRV is the resourceVersion of an event's object in the shape accept asked for.
func objectRV(t *testing.T, accept string, obj map[string]any) string {
	t.Helper()
	meta, _ := obj["metadata"].(map[string]any)
	if accept == acceptTable {
		rows, _ := obj["rows"].([]any)
		if len(rows) != 1 {
			t.Fatalf("Table event with %d rows", len(rows))
		}
		meta, _ = rows[0].(map[string]any)["object"].(map[string]any)["metadata"].(map[string]any)
	}
	rv, _ := meta["resourceVersion"].(string)
	if rv == "" {
		t.Fatalf("event object without a resourceVersion: %v", obj)
	}
	return rv
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// shapeKey is how the checks of this file find an object: namespace/name ("/name" when
// cluster-scoped), as findings of one name exist in several namespaces.
func shapeKey(obj map[string]any) string {
	u := unstructured.Unstructured{Object: obj}
	return u.GetNamespace() + "/" + u.GetName()
}

// findingShapes: the findings resources answer metadata-only and Table requests, lists and gets,
// with exactly what their whole objects give (TestFindings runs it on its projected reports).
func findingShapes(t *testing.T, ctx context.Context, srv *testServer, client dynamic.Interface) {
	g := newGetter(t, ctx, srv.Config)
	for _, gvr := range []schema.GroupVersionResource{findingsGVR, findingsGVR.GroupVersion().WithResource("clusterfindings"), summariesGVR} {
		t.Run(gvr.Resource, func(t *testing.T) {
			path := "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
			full, err := client.Resource(gvr).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(full.Items) == 0 {
				t.Fatalf("no %s to compare", gvr.Resource)
			}
			wantMeta := map[string]map[string]any{}
			for _, item := range full.Items {
				wantMeta[shapeKey(item.Object)] = item.Object["metadata"].(map[string]any)
			}

			// The list's resourceVersion (the projection's generation) is the same in every shape:
			// nothing is projected meanwhile.
			metaBody := g.get(t, path, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
			checkListRV(t, "metadata list", metaBody, full.GetResourceVersion())
			var metaList struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(metaBody, &metaList); err != nil {
				t.Fatal(err)
			}
			if len(metaList.Items) != len(full.Items) {
				t.Errorf("metadata list has %d items, the full list %d", len(metaList.Items), len(full.Items))
			}
			for _, item := range metaList.Items {
				checkMeta(t, "metadata list", shapeKey(item), mustJSON(t, item["metadata"]), wantMeta)
			}

			wantTable := tableOf(t, g.get(t, path+"?includeObject=Object", acceptTable))
			tableBody := g.get(t, path, acceptTable)
			checkListRV(t, "Table list", tableBody, full.GetResourceVersion())
			got := tableOf(t, tableBody)
			if len(got.rows) != len(full.Items) || len(wantTable.rows) != len(full.Items) {
				t.Errorf("Table rows %d, with whole objects %d, full list %d", len(got.rows), len(wantTable.rows), len(full.Items))
			}
			wantTable.same(t, "Table list", got, wantMeta)

			for _, item := range []unstructured.Unstructured{full.Items[0], full.Items[len(full.Items)/2], full.Items[len(full.Items)-1]} {
				itemPath := "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource + "/" + item.GetName()
				if ns := item.GetNamespace(); ns != "" {
					itemPath = "/apis/" + gvr.Group + "/" + gvr.Version + "/namespaces/" + ns + "/" + gvr.Resource + "/" + item.GetName()
				}
				var partial map[string]any
				if err := json.Unmarshal(g.get(t, itemPath, acceptMeta), &partial); err != nil {
					t.Fatal(err)
				}
				if partial["kind"] != "PartialObjectMetadata" {
					t.Errorf("metadata GET of %s is a %v", itemPath, partial["kind"])
				}
				checkMeta(t, "metadata GET", shapeKey(item.Object), mustJSON(t, partial["metadata"]), wantMeta)
				row := tableOf(t, g.get(t, itemPath, acceptTable))
				if len(row.rows) != 1 {
					t.Errorf("Table GET of %s has %d rows", itemPath, len(row.rows))
				}
				wantTable.same(t, "Table GET", row, wantMeta)
			}
		})
	}
}
