package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestMetadataListWatchAllKinds checks, for every served kind, what metadata-only clients
// (Kyverno's and Policy Reporter's metadata informers) rely on: a metadata list, a watch from its
// resourceVersion and a WatchList (initial events, then the initial-events-end bookmark) return
// PartialObjectMetadata with the right names, labels and resourceVersions; the server's JSON
// answers are PartialObjectMetadata(List) without the report content; a metadata informer syncs.
func TestMetadataListWatchAllKinds(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	store := openStore(t, srv.DatabaseURL)
	client := srv.dynamicClient(t)
	metaClient := srv.metadataClient(t)
	raw := newRawClient(t, srv.Config)
	for _, kind := range reports.All() {
		t.Run(kind.Kind, func(t *testing.T) {
			t.Parallel()
			testMetadataKind(t, kind, client, metaClient, raw, store)
		})
	}
}

func testMetadataKind(t *testing.T, kind reports.Kind, client dynamic.Interface, metaClient metadata.Interface, raw *rawClient, store *storeReader) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lower := strings.ToLower(kind.Kind)
	ns := "meta-" + lower
	res := resourceFor(client, kind, ns)
	metaRes := metadataResourceFor(metaClient, kind, ns)
	prefix := keyPrefix(kind)

	want := map[string]*unstructured.Unstructured{} // by cache key
	for i := range 3 {
		name := fmt.Sprintf("%s-%d", lower, i)
		obj, err := res.Create(ctx, sample(kind, ns, name, map[string]string{"app": name, "kind": lower}, "Pod", "pass"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		key, _, _ := objectKey(obj)
		want[key] = obj
	}

	// List.
	list, err := metaRes.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("metadata list: %v", err)
	}
	if len(list.Items) != len(want) {
		t.Errorf("metadata list has %d items, want %d", len(list.Items), len(want))
	}
	for i := range list.Items {
		checkPartial(t, "metadata list", &list.Items[i], want)
	}
	listRV, err := strconv.ParseInt(list.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("metadata list resourceVersion %q: %v", list.ResourceVersion, err)
	}
	// The server's own JSON answer, with the Accept header of metadata clients.
	body := rawGet(t, raw, apiPath(kind, ns), nil, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
	var rawList struct {
		Kind, APIVersion string
		Items            []map[string]any
	}
	if err := json.Unmarshal(body, &rawList); err != nil {
		t.Fatalf("metadata list JSON: %v: %s", err, body)
	}
	if rawList.Kind != "PartialObjectMetadataList" || rawList.APIVersion != "meta.k8s.io/v1" || len(rawList.Items) != len(want) {
		t.Errorf("metadata list JSON: kind %q apiVersion %q with %d items, want a meta.k8s.io/v1 PartialObjectMetadataList of %d", rawList.Kind, rawList.APIVersion, len(rawList.Items), len(want))
	}
	for _, item := range rawList.Items {
		checkPartialJSON(t, "metadata list JSON", item)
	}

	// Watch from the list's resourceVersion: an update, a delete, a create.
	w, err := metaRes.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatalf("metadata watch: %v", err)
	}
	defer w.Stop()
	first := lower + "-0"
	if err := relabel(ctx, res, first, "app", "changed"); err != nil {
		t.Fatal(err)
	}
	if err := res.Delete(ctx, lower+"-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	added, err := res.Create(ctx, sample(kind, ns, lower+"-3", map[string]string{"app": "new"}, "Pod", "fail"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.ParseInt(added.GetResourceVersion(), 10, 64)
	evs := collectEvents(t, "metadata watch", w, 30*time.Second, func(ev watch.Event) bool {
		_, rv, err := objectKey(ev.Object)
		return ev.Type != watch.Bookmark && (err != nil || rv >= last)
	})
	sameEvents(t, "metadata watch", reduce(t, evs), store.changes(t, prefix, listRV))
	// The objects are PartialObjectMetadata with the labels of their revision.
	current := map[string]*unstructured.Unstructured{}
	updated, err := res.Get(ctx, first, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*unstructured.Unstructured{updated, added, want[keyOf(kind, ns, lower+"-1")]} {
		key, _, _ := objectKey(u)
		current[key] = u
	}
	for _, ev := range evs {
		p, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if !ok {
			t.Errorf("metadata watch: %s event carries a %T, want *PartialObjectMetadata", ev.Type, ev.Object)
			continue
		}
		if ev.Type == watch.Deleted {
			// A deletion carries the deletion's revision; the rest is the last state.
			if p.Name != lower+"-1" || !maps.Equal(p.Labels, want[keyOf(kind, ns, lower+"-1")].GetLabels()) {
				t.Errorf("metadata watch: DELETED %s labels %v", p.Name, p.Labels)
			}
			continue
		}
		checkPartial(t, "metadata watch "+string(ev.Type), p, current)
	}

	// WatchList, as client-go informers start: initial events, then the bookmark.
	now := store.objects(t, prefix)
	wl, err := metaRes.Watch(ctx, metav1.ListOptions{
		SendInitialEvents: ptrTo(true), AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		t.Fatalf("metadata WatchList: %v", err)
	}
	defer wl.Stop()
	evs = collectEvents(t, "metadata WatchList", wl, 30*time.Second, func(ev watch.Event) bool { return ev.Type == watch.Bookmark })
	bookmark := evs[len(evs)-1]
	if m, err := meta.Accessor(bookmark.Object); err != nil || m.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" {
		t.Errorf("metadata WatchList: first bookmark %s is not the initial-events-end bookmark", statusOf(bookmark.Object))
	} else if rv, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64); rv < last {
		t.Errorf("metadata WatchList: initial-events-end bookmark at %d, before the last write %d", rv, last)
	}
	got := map[string]int64{}
	for _, ev := range evs[:len(evs)-1] {
		p, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if ev.Type != watch.Added || !ok {
			t.Errorf("metadata WatchList: initial %s event with a %T, want ADDED *PartialObjectMetadata", ev.Type, ev.Object)
			continue
		}
		key, rv, _ := objectKey(p)
		got[key] = rv
		if o, ok := now[key]; !ok || o.RV != rv {
			t.Errorf("metadata WatchList: initial %s@%d, database has %v", key, rv, o.RV)
		}
		if wantLabels := storedLabels(now[key].Object); !maps.Equal(p.Labels, wantLabels) {
			t.Errorf("metadata WatchList: initial %s labels %v, want %v", key, p.Labels, wantLabels)
		}
	}
	if len(got) != len(now) {
		t.Errorf("metadata WatchList: %d initial events (%v), database has %d objects", len(got), slices.Sorted(maps.Keys(got)), len(now))
	}

	// The server's JSON watch stream of a WatchList carries PartialObjectMetadata too.
	stream := rawGet(t, raw, apiPath(kind, ns), url.Values{
		"watch": {"true"}, "sendInitialEvents": {"true"}, "allowWatchBookmarks": {"true"},
		"resourceVersionMatch": {"NotOlderThan"}, "timeoutSeconds": {"2"},
	}, "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
	dec := json.NewDecoder(strings.NewReader(string(stream)))
	added0, bookmarks := 0, 0
	for dec.More() {
		var ev struct {
			Type   string
			Object map[string]any
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("metadata watch JSON: %v: %s", err, stream)
		}
		switch ev.Type {
		case "ADDED":
			added0++
			checkPartialJSON(t, "metadata watch JSON", ev.Object)
		case "BOOKMARK":
			bookmarks++
		default:
			t.Errorf("metadata watch JSON: unexpected %s event: %v", ev.Type, ev.Object)
		}
	}
	if added0 != len(now) || bookmarks == 0 {
		t.Errorf("metadata watch JSON: %d ADDED and %d BOOKMARK events, want %d and the initial-events-end bookmark", added0, bookmarks, len(now))
	}

	// A metadata informer (WatchList underneath) syncs and caches exactly the stored objects.
	factory := metadatainformer.NewFilteredSharedInformerFactory(metaClient, 0, ns, nil)
	if !kind.Namespaced {
		factory = metadatainformer.NewSharedInformerFactory(metaClient, 0)
	}
	informer := factory.ForResource(kind.GroupVersionResource()).Informer()
	informerCtx, stop := context.WithCancel(ctx)
	factory.Start(informerCtx.Done())
	defer func() { stop(); factory.Shutdown() }()
	if !waitFor(30*time.Second, informer.HasSynced) {
		t.Fatalf("metadata informer not synced within 30s")
	}
	checkCache(t, "metadata informer", informer.GetStore(), now, false)
}

func ptrTo[T any](v T) *T { return &v }

// keyOf is the cache key of a kind's object.
func keyOf(kind reports.Kind, ns, name string) string {
	if kind.Namespaced {
		return ns + "/" + name
	}
	return name
}

// storedLabels returns the labels of a stored object.
func storedLabels(obj map[string]any) map[string]string {
	out := map[string]string{}
	md, _ := obj["metadata"].(map[string]any)
	labels, _ := md["labels"].(map[string]any)
	for k, v := range labels {
		out[k], _ = v.(string)
	}
	return out
}

// checkPartial compares a PartialObjectMetadata with the object of the same key in want.
func checkPartial(t *testing.T, who string, p *metav1.PartialObjectMetadata, want map[string]*unstructured.Unstructured) {
	t.Helper()
	key, rv, err := objectKey(p)
	if err != nil {
		t.Errorf("%s: %v", who, err)
		return
	}
	w, ok := want[key]
	if !ok {
		t.Errorf("%s: unexpected object %s", who, key)
		return
	}
	if p.ResourceVersion != w.GetResourceVersion() || p.UID != w.GetUID() || !maps.Equal(p.Labels, w.GetLabels()) {
		t.Errorf("%s: %s@%d uid %s labels %v, want @%s uid %s labels %v", who, key, rv, p.UID, p.Labels,
			w.GetResourceVersion(), w.GetUID(), w.GetLabels())
	}
}

// checkPartialJSON checks that a JSON object is a PartialObjectMetadata: kind, apiVersion and
// metadata only, none of the report's content.
func checkPartialJSON(t *testing.T, who string, obj map[string]any) {
	t.Helper()
	if obj["kind"] != "PartialObjectMetadata" || obj["apiVersion"] != "meta.k8s.io/v1" {
		t.Errorf("%s: object kind %v apiVersion %v, want meta.k8s.io/v1 PartialObjectMetadata", who, obj["kind"], obj["apiVersion"])
	}
	for k := range obj {
		if k != "kind" && k != "apiVersion" && k != "metadata" {
			t.Errorf("%s: PartialObjectMetadata carries %q", who, k)
		}
	}
	md, _ := obj["metadata"].(map[string]any)
	if md["name"] == nil || md["resourceVersion"] == nil || md["uid"] == nil {
		t.Errorf("%s: metadata lacks name, resourceVersion or uid: %v", who, md)
	}
}

// rawGet sends a GET with the given Accept header and returns the body of a 200 answer.
func rawGet(t *testing.T, c *rawClient, path string, query url.Values, accept string) []byte {
	t.Helper()
	u := c.host + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	return body
}
