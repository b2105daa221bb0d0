package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/httpread"
)

// TestStoredJSONResponses: full lists, watch-list initial events, watch events and GETs of plain
// JSON are the stored JSON (package storedjson), not a decoded and encoded object. What clients
// get must be what the typed path gives once decoded: for every kind, the real producers' reports
// with their quirks included, each GET, list item, initial event and watch event equals the
// object a pretty GET returns (which decodes and encodes: the stored JSON cannot serve pretty
// output as it is); pretty and YAML lists equal the plain one; paged lists give the same items
// and list metadata. A metadata watcher's events (decoded from the metadata alone) carry the same
// metadata.
func TestStoredJSONResponses(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
	g := newGetter(t, ctx, srv.Config)
	hc := g.hc
	do := g.get
	decode := func(t *testing.T, what string, data []byte) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v\n%.300s", what, err, data)
		}
		return v
	}

	// Every kind: generated samples applied server-side (managedFields), one with a NUL and a
	// "metadata" key inside its results, and the real producers' reports.
	created := map[string]map[string]bool{}            // kind -> namespace/name
	answers := map[string]*unstructured.Unstructured{} // kind namespace/name -> the write's answer
	add := func(kind reports.Kind, u *unstructured.Unstructured) {
		res := resourceFor(client, kind, u.GetNamespace())
		var answer *unstructured.Unstructured
		var err error
		if strings.HasSuffix(u.GetName(), "-0") {
			answer, err = res.Create(ctx, u, metav1.CreateOptions{})
		} else {
			data, merr := json.Marshal(u.Object)
			if merr != nil {
				t.Fatal(merr)
			}
			answer, err = res.Patch(ctx, u.GetName(), "application/apply-patch+yaml", data, metav1.PatchOptions{FieldManager: "stored-json-test"})
		}
		if err != nil {
			t.Fatalf("write %s %s/%s: %v", kind.Kind, u.GetNamespace(), u.GetName(), err)
		}
		answers[kind.Kind+" "+u.GetNamespace()+"/"+u.GetName()] = answer
		if created[kind.Kind] == nil {
			created[kind.Kind] = map[string]bool{}
		}
		created[kind.Kind][u.GetNamespace()+"/"+u.GetName()] = true
	}
	for _, kind := range reports.All() {
		ns := "stored-" + strings.ToLower(kind.Kind)
		for i, result := range []string{"pass", "fail", "warn"} {
			u := sample(kind, ns, fmt.Sprintf("s-%d", i), map[string]string{"n": fmt.Sprint(i)}, "Pod", result)
			if !kind.Namespaced {
				u.SetNamespace("")
			}
			if i == 1 {
				results, _, _ := unstructured.NestedSlice(u.Object, contentPath(kind, "results")...)
				r := results[0].(map[string]any)
				r["message"] = "a NUL \u0000 and an escape \uFDD0 in a message"
				r["properties"] = map[string]any{"metadata": "a key named metadata", "resourceVersion": "not this one"}
				if err := unstructured.SetNestedSlice(u.Object, results, contentPath(kind, "results")...); err != nil {
					t.Fatal(err)
				}
			}
			add(kind, u)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "..", "shared", "testdata", "*.yaml"))
	jsonFiles, _ := filepath.Glob(filepath.Join(root, "..", "shared", "testdata", "*.json"))
	for _, file := range append(files, jsonFiles...) {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if doc == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: normalize(t, doc)}
			kind := kindOf(t, u.Object)
			if kind.Namespaced && u.GetNamespace() == "" {
				u.SetNamespace("default")
			}
			add(kind, u)
		}
		f.Close()
	}

	for _, kind := range reports.All() {
		objects := created[kind.Kind]
		t.Run(kind.Kind, func(t *testing.T) {
			gvr := kind.GroupVersionResource()
			collection := "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
			objectPath := func(key string) string {
				ns, name, _ := strings.Cut(key, "/")
				if ns == "" {
					return collection + "/" + name
				}
				return "/apis/" + gvr.Group + "/" + gvr.Version + "/namespaces/" + ns + "/" + gvr.Resource + "/" + name
			}
			// What the typed path gives: each object's pretty GET. A plain GET is the stored
			// JSON, and the same object.
			want := map[string]map[string]any{}
			for key := range objects {
				want[key] = decode(t, "pretty get "+key, do(t, objectPath(key)+"?pretty=true", "application/json"))
				plainGet := do(t, objectPath(key), "application/json")
				if !strings.Contains(string(plainGet), `"metadata": {`) {
					// PostgreSQL writes JSON with a space after each colon; encoding/json never does.
					t.Errorf("plain GET of %s is not the stored JSON:\n%.300s", key, plainGet)
				}
				if got := decode(t, "get "+key, plainGet); !reflect.DeepEqual(got, want[key]) {
					g, _ := json.Marshal(got)
					exp, _ := json.Marshal(want[key])
					t.Errorf("plain GET of %s differs from its pretty GET:\n got %s\nwant %s", key, g, exp)
				}
				// The answer to the write (create or apply) is the object as stored.
				if answer := normalize(t, answers[kind.Kind+" "+key].Object); !reflect.DeepEqual(answer, want[key]) {
					got, _ := json.Marshal(answer)
					exp, _ := json.Marshal(want[key])
					t.Errorf("the write's answer for %s differs from its GET:\n got %s\nwant %s", key, got, exp)
				}
			}
			keyOf := func(obj map[string]any) string {
				m := obj["metadata"].(map[string]any)
				ns, _ := m["namespace"].(string)
				return ns + "/" + m["name"].(string)
			}
			check := func(t *testing.T, what string, items []map[string]any) {
				t.Helper()
				seen := 0
				for _, item := range items {
					key := keyOf(item)
					if !objects[key] {
						continue
					}
					seen++
					if !reflect.DeepEqual(item, want[key]) {
						got, _ := json.Marshal(item)
						exp, _ := json.Marshal(want[key])
						t.Errorf("%s: %s differs from its GET:\n got %s\nwant %s", what, key, got, exp)
					}
				}
				if seen != len(objects) {
					t.Errorf("%s: %d of the %d objects", what, seen, len(objects))
				}
			}

			// The plain list is the stored JSON; its list metadata is the typed list's.
			plainBody := do(t, collection, "application/json")
			if !strings.Contains(string(plainBody), `"metadata": {`) {
				// PostgreSQL writes JSON with a space after each colon; encoding/json never does.
				t.Errorf("plain list is not the stored JSON:\n%.300s", plainBody)
			}
			plain := decode(t, "list", plainBody)
			var items []map[string]any
			for _, item := range plain["items"].([]any) {
				items = append(items, item.(map[string]any))
			}
			check(t, "plain list", items)
			if plain["kind"] != kind.ListKind || plain["apiVersion"] != kind.GroupVersion.String() {
				t.Errorf("plain list is %v %v", plain["apiVersion"], plain["kind"])
			}
			if m := plain["metadata"].(map[string]any); m["resourceVersion"] == nil || len(m) != 1 {
				t.Errorf("plain list metadata %v, want a resourceVersion alone", m)
			}

			// Pretty and YAML lists: the typed encoding of the decoded stored JSON.
			pretty := decode(t, "pretty list", do(t, collection+"?pretty=true", "application/json"))
			if !reflect.DeepEqual(pretty, plain) {
				t.Errorf("pretty list differs from the plain one")
			}
			y, err := yaml.YAMLToJSON(do(t, collection, "application/yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if yl := decode(t, "yaml list", y); !reflect.DeepEqual(yl, plain) {
				t.Errorf("YAML list differs from the plain one")
			}

			// Pages of one: each page's items and continuation as a typed list has them.
			raw, err := httpread.PagedList(ctx, hc, srv.Config.Host+collection, "", "application/json", 1)
			if err != nil {
				t.Fatal(err)
			}
			items = nil
			for _, r := range raw {
				items = append(items, decode(t, "page item", r))
			}
			check(t, "paged list", items)
			first := decode(t, "first page", do(t, collection+"?limit=1", "application/json"))
			if m := first["metadata"].(map[string]any); m["continue"] == nil || m["remainingItemCount"] == nil {
				t.Errorf("first page metadata %v, want continue and remainingItemCount", m)
			}

			// Watch-list initial events.
			raw, err = httpread.WatchList(ctx, hc, srv.Config.Host+collection, "application/json")
			if err != nil {
				t.Fatal(err)
			}
			items = nil
			for _, r := range raw {
				items = append(items, decode(t, "initial event", r))
				// Each event is written around the stored JSON as PostgreSQL prints it (a space
				// after each colon), not re-encoded by the handler's event encoder, which
				// compacts it (storedjson's plainJSONEvent).
				if !bytes.Contains(r, []byte(`": `)) {
					t.Errorf("initial event is not the stored JSON: %.120s", r)
				}
			}
			check(t, "watch-list", items)

			// Watch events: a change and a deletion, as a watcher from the list's revision sees them.
			rv := plain["metadata"].(map[string]any)["resourceVersion"].(string)
			events := openWatch(t, ctx, hc, srv.Config.Host+collection+"?watch=1&resourceVersion="+rv, "application/json")
			// A metadata watcher's events carry the same metadata (decoded from it alone).
			metaEvents := openWatch(t, ctx, hc, srv.Config.Host+collection+"?watch=1&resourceVersion="+rv,
				"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
			var key string
			for k := range objects {
				key = k
				break
			}
			ns, name, _ := strings.Cut(key, "/")
			res := resourceFor(client, kind, ns)
			u, err := res.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			labels := u.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels["stored-json-test"] = "changed"
			u.SetLabels(labels)
			if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			changed := decode(t, "get changed", do(t, objectPath(key), "application/json"))
			if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			ev := events.next(t)
			if ev.Type != "MODIFIED" || !reflect.DeepEqual(ev.Object, changed) {
				got, _ := json.Marshal(ev.Object)
				exp, _ := json.Marshal(changed)
				t.Errorf("watch event %s:\n got %s\nwant MODIFIED %s", ev.Type, got, exp)
			}
			ev = events.next(t)
			// A deletion carries the deleted object with the deletion's revision, as with etcd.
			deleted := ev.Object
			delRV, _ := deleted["metadata"].(map[string]any)["resourceVersion"].(string)
			expect := changed
			if ev.Type == "DELETED" {
				expect = normalize(t, changed) // a copy
				expect["metadata"].(map[string]any)["resourceVersion"] = delRV
			}
			if ev.Type != "DELETED" || delRV == changed["metadata"].(map[string]any)["resourceVersion"] || !reflect.DeepEqual(deleted, expect) {
				got, _ := json.Marshal(deleted)
				exp, _ := json.Marshal(changed)
				t.Errorf("watch event %s:\n got %s\nwant DELETED %s with a later resourceVersion", ev.Type, got, exp)
			}
			for _, want := range []watchEventJSON{{Type: "MODIFIED", Object: changed}, {Type: "DELETED", Object: expect}} {
				ev := metaEvents.next(t)
				if ev.Type != want.Type || ev.Object["kind"] != "PartialObjectMetadata" ||
					!reflect.DeepEqual(ev.Object["metadata"], want.Object["metadata"]) {
					got, _ := json.Marshal(ev)
					exp, _ := json.Marshal(want.Object["metadata"])
					t.Errorf("metadata watch event:\n got %s\nwant %s PartialObjectMetadata with metadata %s", got, want.Type, exp)
				}
			}
		})
	}

	// A create answers with the object as written: for plain JSON the JSON it was stored as, with
	// its resourceVersion put first in its metadata (where storedjson puts it; encoding/json puts
	// it after the name), unescaped; YAML the same object; a Table a Table. Each equals the
	// object's GET.
	for _, kind := range reports.All() {
		t.Run("create/"+kind.Kind, func(t *testing.T) {
			gvr := kind.GroupVersionResource()
			ns := "stored-" + strings.ToLower(kind.Kind)
			collection := "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
			if kind.Namespaced {
				collection = "/apis/" + gvr.Group + "/" + gvr.Version + "/namespaces/" + ns + "/" + gvr.Resource
			}
			for i, accept := range []string{"application/json", "application/yaml", "application/json;as=Table;v=v1;g=meta.k8s.io"} {
				u := sample(kind, ns, fmt.Sprintf("created-%d", i), map[string]string{"n": fmt.Sprint(i)}, "Pod", "fail")
				if !kind.Namespaced {
					u.SetNamespace("")
				}
				results, _, _ := unstructured.NestedSlice(u.Object, contentPath(kind, "results")...)
				results[0].(map[string]any)["message"] = "a NUL \u0000 and an escape \uFDD0 in a message"
				if err := unstructured.SetNestedSlice(u.Object, results, contentPath(kind, "results")...); err != nil {
					t.Fatal(err)
				}
				body, err := json.Marshal(u.Object)
				if err != nil {
					t.Fatal(err)
				}
				answer := g.post(t, collection, accept, body)
				want := decode(t, "get", do(t, collection+"/"+u.GetName(), "application/json"))
				wantJSON, _ := json.Marshal(want)
				switch i {
				case 0:
					if !strings.Contains(string(answer), `"metadata":{"resourceVersion":`) {
						t.Errorf("plain JSON answer to a create is not the JSON stored:\n%.300s", answer)
					}
					if got := decode(t, "create answer", answer); !reflect.DeepEqual(got, want) {
						t.Errorf("plain JSON answer to a create differs from its GET:\n got %s\nwant %s", answer, wantJSON)
					}
				case 1:
					var got map[string]any
					if err := yaml.Unmarshal(answer, &got); err != nil || !reflect.DeepEqual(normalize(t, got), want) {
						t.Errorf("YAML answer to a create differs from its GET (%v):\n got %s\nwant %s", err, answer, wantJSON)
					}
				case 2:
					if got := decode(t, "create answer", answer); got["kind"] != "Table" {
						t.Errorf("a create asked for a Table answered %.300s", answer)
					}
				}
			}
		})
	}
}

type watchEventJSON struct {
	Type   string         `json:"type"`
	Object map[string]any `json:"object"`
}

type watchStream struct {
	events chan watchEventJSON
}

// openWatch opens a watch at url and returns its events as they come; the watch ends with the test.
func openWatch(t *testing.T, ctx context.Context, hc *http.Client, url, accept string) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("watch %s: %d %s", url, resp.StatusCode, body)
	}
	s := &watchStream{events: make(chan watchEventJSON, 16)}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var ev watchEventJSON
			if err := dec.Decode(&ev); err != nil {
				return
			}
			s.events <- ev
		}
	}()
	return s
}

func (s *watchStream) next(t *testing.T) watchEventJSON {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event in 30s")
	}
	return watchEventJSON{}
}
