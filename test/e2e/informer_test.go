package e2e

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// Sizes of the informer test's write burst.
const (
	informerCreates = 300
	informerWorkers = 8
)

// testInformer runs a client-go shared informer on PolicyReports through kube-apiserver (list
// and watch proxied by the aggregator) while reports are created, updated and deleted
// concurrently, then checks that its store converges to a fresh list: same names, same
// resourceVersions.
//
// With several replicas, kube-apiserver spreads the writes over all of them while the informer's
// watch stays on one: its events for writes another replica took come through PostgreSQL. Each
// replica's own request metric shows that every one of them took a share of the writes.
func testInformer(t *testing.T, c *cluster.Cluster) {
	const ns = "informer"
	ctx := testContext(t, 5*time.Minute)
	ensureNamespace(t, c, ns, nil)
	dyn := dynamicClient(t, c)
	polr := kindByResource(t, "policyreports")
	reports := resourceFor(dyn, polr, ns)

	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, ns, nil)
	informer := factory.ForResource(polr.GroupVersionResource()).Informer()
	var adds, updates, deletes atomic.Int64
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { adds.Add(1) },
		UpdateFunc: func(any, any) { updates.Add(1) },
		DeleteFunc: func(any) { deletes.Add(1) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	// Shutdown waits for the informers, which end when stop is closed.
	defer func() {
		close(stop)
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync")
	}

	servedBefore := servedByEach(t, c, polr)

	// Each worker owns the reports i ≡ w (mod workers): creates them, updates every second one
	// twice (read-modify-write, so a conflict would be a bug) and deletes every fourth.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, informerWorkers)
	var writes atomic.Int64
	for w := range informerWorkers {
		wg.Go(func() {
			errs <- func() error {
				for i := w; i < informerCreates; i += informerWorkers {
					name := "r-" + strconv.Itoa(i)
					if _, err := reports.Create(ctx, report(polr, ns, name, "pass", "web-"+strconv.Itoa(i)), metav1.CreateOptions{}); err != nil {
						return fmt.Errorf("create %s: %w", name, err)
					}
					writes.Add(1)
					if i%2 == 0 {
						for round := range 2 {
							obj, err := reports.Get(ctx, name, metav1.GetOptions{})
							if err != nil {
								return fmt.Errorf("get %s: %w", name, err)
							}
							obj.SetLabels(map[string]string{"round": strconv.Itoa(round)})
							if err := unstructured.SetNestedField(obj.Object, map[string]any{"fail": int64(round + 1)}, "summary"); err != nil {
								return err
							}
							if _, err := reports.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
								return fmt.Errorf("update %s: %w", name, err)
							}
							writes.Add(1)
						}
					}
					if i%4 == 0 {
						if err := reports.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
							return fmt.Errorf("delete %s: %w", name, err)
						}
						writes.Add(1)
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d writes through kube-apiserver in %s", writes.Load(), time.Since(start).Round(time.Millisecond))
	servedAfter := servedByEach(t, c, polr)
	var shares []string
	for i, r := range c.ReportsServers {
		n := servedAfter[i] - servedBefore[i]
		shares = append(shares, fmt.Sprintf("%s %.0f", r.Name, n))
		// A replica answers the writes (and reads) kube-apiserver sends it; with the informer's
		// few requests aside, each must have had a fair part of the burst.
		if len(c.ReportsServers) > 1 && n < float64(writes.Load())/float64(4*len(c.ReportsServers)) {
			t.Errorf("%s answered %.0f PolicyReport requests of the burst (%d writes): kube-apiserver does not spread requests over the replicas", r.Name, n, writes.Load())
		}
	}
	t.Logf("PolicyReport requests answered per replica during the burst: %s", strings.Join(shares, ", "))

	want := map[string]string{}
	eventually(t, "the informer's store equals a fresh list", time.Minute, func(ctx context.Context) (bool, string, error) {
		l, err := reports.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		want = map[string]string{}
		for _, item := range l.Items {
			want[item.GetName()] = item.GetResourceVersion()
		}
		got := map[string]string{}
		for _, obj := range informer.GetStore().List() {
			u := obj.(*unstructured.Unstructured)
			got[u.GetName()] = u.GetResourceVersion()
		}
		if maps.Equal(got, want) {
			return true, "", nil
		}
		return false, fmt.Sprintf("store has %d objects, list %d", len(got), len(want)), nil
	})
	if wantCount := informerCreates - informerCreates/4; len(want) != wantCount {
		t.Errorf("list has %d reports, want %d", len(want), wantCount)
	}
	t.Logf("informer events: %d adds, %d updates, %d deletes", adds.Load(), updates.Load(), deletes.Load())
	if adds.Load() != informerCreates || deletes.Load() != informerCreates/4 {
		t.Errorf("informer saw %d adds and %d deletes, want %d and %d", adds.Load(), deletes.Load(), informerCreates, informerCreates/4)
	}
}
