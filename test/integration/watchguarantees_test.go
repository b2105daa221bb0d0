package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestWatchTwoServersInformers is the end-to-end watch guarantee (issue 3): two server
// processes share one database; concurrent writers, half on each server, create, update (full
// PUT with resourceVersion, retried on 409) and delete PolicyReports; a client-go dynamic informer
// and a metadata-only informer watch all namespaces on one server. At the end each informer's
// cache equals the database (names, resourceVersions, and the content for the full informer)
// and each informer received exactly the change log: no event missed, duplicated or out of order.
func TestWatchTwoServersInformers(t *testing.T) {
	t.Parallel()
	runWatchScenario(t, watchScenario{writers: 4, opsPerWriter: 400})
}

// TestWatchSurvivesListenerKill is the same scenario while the test repeatedly terminates the
// servers' LISTEN connections: they reconnect, the safety poll and the change log cover the gap,
// and still nothing is lost.
func TestWatchSurvivesListenerKill(t *testing.T) {
	t.Parallel()
	runWatchScenario(t, watchScenario{writers: 4, opsPerWriter: 250, killListeners: 3})
}

type watchScenario struct {
	writers, opsPerWriter int
	// killListeners is how many times to terminate the LISTEN connections during the writes.
	killListeners int
}

// writeStats counts what the writers did.
type writeStats struct {
	creates, updates, deletes, conflicts atomic.Int64
	mu                                   sync.Mutex
	acked                                []event // creates and updates with the revision the server returned
}

func (s *writeStats) ack(typ string, u *unstructured.Unstructured) {
	rv, _ := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
	s.mu.Lock()
	s.acked = append(s.acked, event{Type: typ, Key: u.GetNamespace() + "/" + u.GetName(), RV: rv})
	s.mu.Unlock()
}

func runWatchScenario(t *testing.T, sc watchScenario) {
	start := time.Now()
	a := startServer(t)
	b := startServerOn(t, a.DatabaseURL)
	store := openStore(t, a.DatabaseURL)
	polr := kindNamed(t, "PolicyReport")
	gvr := polr.GroupVersionResource()
	prefix := keyPrefix(polr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	clientA, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	clientB, err := dynamic.NewForConfig(b.Config)
	if err != nil {
		t.Fatal(err)
	}

	// Objects are named from a small set, so writers on both servers collide (409s, creates of
	// existing names, deletes of deleted objects) and names are deleted and created again.
	type objKey struct{ ns, name string }
	var keys []objKey
	for _, ns := range []string{"watch-a", "watch-b", "watch-c"} {
		for i := range 25 {
			keys = append(keys, objKey{ns, fmt.Sprintf("r-%02d", i)})
		}
	}
	// Some exist before the informers start, so their initial lists are not empty.
	for i, k := range keys {
		if i%3 != 0 {
			continue
		}
		c := clientA
		if i%2 == 1 {
			c = clientB
		}
		if _, err := resourceFor(c, polr, k.ns).Create(ctx, sample(polr, k.ns, k.name, map[string]string{"gen": "0"}, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("preload %v: %v", k, err)
		}
	}

	// The informers, against server B, with their requests logged.
	fullLog, metaLog := &requestLog{}, &requestLog{}
	dynB, err := dynamic.NewForConfig(fullLog.wrap(b.Config))
	if err != nil {
		t.Fatal(err)
	}
	metaB, err := metadata.NewForConfig(metaLog.wrap(b.Config))
	if err != nil {
		t.Fatal(err)
	}
	dynFactory := dynamicinformer.NewDynamicSharedInformerFactory(dynB, 0)
	metaFactory := metadatainformer.NewSharedInformerFactory(metaB, 0)
	fullInformer := dynFactory.ForResource(gvr).Informer()
	metaInformer := metaFactory.ForResource(gvr).Informer()
	fullRec, metaRec := &recorder{}, &recorder{}
	if _, err := fullInformer.AddEventHandler(fullRec.handler()); err != nil {
		t.Fatal(err)
	}
	if _, err := metaInformer.AddEventHandler(metaRec.handler()); err != nil {
		t.Fatal(err)
	}
	// Nothing is written until both have synced, so this is the state they start from.
	from, _ := store.revisions(t)
	initial := store.objects(t, prefix)
	informerCtx, stopInformers := context.WithCancel(ctx)
	dynFactory.Start(informerCtx.Done())
	metaFactory.Start(informerCtx.Done())
	defer func() { stopInformers(); dynFactory.Shutdown(); metaFactory.Shutdown() }()
	if !waitFor(30*time.Second, func() bool { return fullInformer.HasSynced() && metaInformer.HasSynced() }) {
		t.Fatalf("informers not synced within 30s (full %v, metadata %v); requests: %v, %v",
			fullInformer.HasSynced(), metaInformer.HasSynced(), fullLog.requests(), metaLog.requests())
	}
	// client-go starts informers with WatchList unless the WatchListClient gate is off; this
	// checks the requests, so the initial-events path is really what synced them.
	checkWatchListOnly(t, "full informer", fullLog, 1, false)
	checkWatchListOnly(t, "metadata informer", metaLog, 1, true)
	synced := time.Now()

	// The writers.
	seed := uint64(time.Now().UnixNano())
	t.Logf("writer seed %d", seed)
	stats := &writeStats{}
	// Bounded in time too: with -race on two cores, with other tests in parallel, writes are slow.
	deadline := time.Now().Add(20 * time.Second)
	var writersDone atomic.Bool
	var wg sync.WaitGroup
	for w := range sc.writers {
		client, server := clientA, "A"
		if w%2 == 1 {
			client, server = clientB, "B"
		}
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for op := 0; op < sc.opsPerWriter && time.Now().Before(deadline) && ctx.Err() == nil; op++ {
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
				k := keys[rng.IntN(len(keys))]
				if err := writeOnce(ctx, resourceFor(client, polr, k.ns), polr, k.ns, k.name, fmt.Sprintf("w%d-%d", w, op), rng, stats); err != nil {
					t.Errorf("writer %d on server %s, op %d on %s/%s: %v", w, server, op, k.ns, k.name, err)
					return
				}
			}
		})
	}

	// Terminate the LISTEN connections a few times while the writers run.
	kills := 0
	var killerDone chan struct{}
	if sc.killListeners > 0 {
		killerDone = make(chan struct{})
		go func() {
			defer close(killerDone)
			if !waitFor(20*time.Second, func() bool { return store.listenerConnections(t) == 2 }) {
				t.Errorf("the two servers' LISTEN connections (application_name %q) are not both up: %d", "reports-server-listener", store.listenerConnections(t))
				return
			}
			for range sc.killListeners {
				time.Sleep(500 * time.Millisecond)
				if writersDone.Load() {
					return
				}
				if n := store.killListeners(t); n != 2 {
					t.Errorf("terminated %d LISTEN connections, want 2", n)
				}
				kills++
				// Both notifiers reconnect (with backoff); writes go on meanwhile.
				if !waitFor(20*time.Second, func() bool { return store.listenerConnections(t) == 2 }) {
					t.Errorf("LISTEN connections not back within 20s of being terminated: %d", store.listenerConnections(t))
					return
				}
			}
		}()
	}
	wg.Wait()
	writersDone.Store(true)
	if killerDone != nil {
		<-killerDone
		if kills == 0 {
			t.Errorf("the writers finished before a LISTEN connection was terminated; the test proved nothing about it")
		}
	}
	wrote := time.Now()
	if t.Failed() {
		t.FailNow()
	}

	// Wait until both informers have seen the newest change.
	current, compacted := store.revisions(t)
	if compacted > from {
		t.Fatalf("the change log was compacted during the test (compacted revision %d > %d): the expected events are gone", compacted, from)
	}
	changes := store.changes(t, prefix, from)
	if len(changes) == 0 {
		t.Fatalf("no changes recorded")
	}
	target := changes[len(changes)-1].RV
	if target != current {
		t.Logf("note: current revision %d, newest PolicyReport change %d", current, target)
	}
	if !waitFor(30*time.Second, func() bool { return fullRec.lastRV() >= target && metaRec.lastRV() >= target }) {
		t.Errorf("informers did not reach revision %d within 30s of the last write: full at %d, metadata at %d",
			target, fullRec.lastRV(), metaRec.lastRV())
	}
	caughtUp := time.Now()

	// Exactly the change log, in order.
	checkEvents(t, "full informer", fullRec, initial, from, changes)
	checkEvents(t, "metadata informer", metaRec, initial, from, changes)
	// Every write the servers acknowledged is in the change log, and nothing else is.
	byRV := map[int64]event{}
	for _, c := range changes {
		byRV[c.RV] = c
	}
	for _, w := range stats.acked {
		if c, ok := byRV[w.RV]; !ok || c.Type != w.Type || c.Key != w.Key {
			t.Errorf("acknowledged %v, change log at that revision has %v", w, c)
		}
	}
	if n := stats.creates.Load() + stats.updates.Load() + stats.deletes.Load(); n != int64(len(changes)) {
		t.Errorf("writers made %d writes, change log has %d entries", n, len(changes))
	}

	// Both caches equal the database.
	final := store.objects(t, prefix)
	checkCache(t, "full informer", fullInformer.GetStore(), final, true)
	checkCache(t, "metadata informer", metaInformer.GetStore(), final, false)
	// The watches were never re-opened: killing LISTEN connections is invisible to clients.
	checkWatchListOnly(t, "full informer", fullLog, 1, false)
	checkWatchListOnly(t, "metadata informer", metaLog, 1, true)

	t.Logf("%d writes (%d creates, %d updates, %d deletes, %d conflicts retried) in %v; %d objects in the end; "+
		"%d LISTEN kills; informers caught up %v after the last write; total %v",
		len(changes), stats.creates.Load(), stats.updates.Load(), stats.deletes.Load(), stats.conflicts.Load(),
		wrote.Sub(synced).Round(time.Millisecond), len(final), kills, caughtUp.Sub(wrote).Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond))
}

// writeOnce makes one write to ns/name: a create when it does not exist, otherwise mostly an
// update (full PUT with the resourceVersion read) and sometimes a delete (with UID and
// resourceVersion preconditions). Conflicts with other writers are retried from a fresh read.
func writeOnce(ctx context.Context, res dynamic.ResourceInterface, kind reports.Kind, ns, name, tag string, rng *rand.Rand, stats *writeStats) error {
	results := []string{"pass", "fail", "warn", "error", "skip"}
	for attempt := 0; attempt < 50; attempt++ {
		if attempt > 0 {
			stats.conflicts.Add(1)
		}
		cur, err := res.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := res.Create(ctx, sample(kind, ns, name, map[string]string{"gen": tag}, "Pod", results[rng.IntN(len(results))]), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			stats.creates.Add(1)
			stats.ack("add", created)
			return nil
		case err != nil:
			return fmt.Errorf("get: %w", err)
		}
		if rng.IntN(4) == 0 {
			uid, rv := cur.GetUID(), cur.GetResourceVersion()
			err := res.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			stats.deletes.Add(1)
			return nil
		}
		// Change labels and content; the tag makes every update a real change.
		fresh := sample(kind, ns, name, nil, "Pod", results[rng.IntN(len(results))])
		labels := cur.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels["gen"] = tag
		cur.SetLabels(labels)
		cur.Object["summary"] = fresh.Object["summary"]
		cur.Object["results"] = fresh.Object["results"]
		updated, err := res.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		stats.updates.Add(1)
		stats.ack("update", updated)
		return nil
	}
	return fmt.Errorf("still conflicting after 50 attempts")
}

// checkCache compares an informer's cache with the stored objects: the same keys and
// resourceVersions, the same labels, and with content the same objects.
func checkCache(t *testing.T, who string, store cache.Store, want map[string]storedObject, content bool) {
	t.Helper()
	got := map[string]any{}
	for _, obj := range store.List() {
		key, rv, err := objectKey(obj)
		if err != nil {
			t.Errorf("%s: cached object: %v", who, err)
			continue
		}
		got[key] = obj
		w, ok := want[key]
		switch {
		case !ok:
			t.Errorf("%s: cache has %s@%d, which is not in the database", who, key, rv)
			continue
		case rv != w.RV:
			t.Errorf("%s: cache has %s@%d, database @%d", who, key, rv, w.RV)
			continue
		}
		if content {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				t.Errorf("%s: cached %s is a %T", who, key, obj)
				continue
			}
			stored := normalizeJSON(t, w.Object).(map[string]any)
			stored["metadata"].(map[string]any)["resourceVersion"] = strconv.FormatInt(w.RV, 10)
			if cached := normalizeJSON(t, u.Object); !reflect.DeepEqual(cached, stored) {
				t.Errorf("%s: cached %s differs from the database:\ncache:    %v\ndatabase: %v", who, key, cached, stored)
			}
		} else {
			m, err := metaAccessorLabels(obj)
			if err != nil {
				t.Errorf("%s: %v", who, err)
				continue
			}
			wantLabels := storedLabels(w.Object)
			if len(m) != 0 || len(wantLabels) != 0 {
				if !reflect.DeepEqual(m, wantLabels) {
					t.Errorf("%s: cached %s has labels %v, database %v", who, key, m, wantLabels)
				}
			}
		}
	}
	for key, w := range want {
		if _, ok := got[key]; !ok {
			t.Errorf("%s: cache misses %s@%d", who, key, w.RV)
		}
	}
}

func metaAccessorLabels(obj any) (map[string]string, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return nil, fmt.Errorf("metadata informer cached a %T, want *PartialObjectMetadata", obj)
	}
	return m.Labels, nil
}
