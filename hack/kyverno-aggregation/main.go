// Command kyverno-aggregation replays, against a reports-server, the API calls Kyverno v1.19's
// reports controller makes to turn ephemeral reports into PolicyReports
// (pkg/controllers/report/aggregate), and prints each call's latency, how fast each phase went and
// how late a metadata watcher of the ephemeral reports saw their updates and deletions. It is a
// measuring tool for docs/benchmarks.md ("Kyverno at scale"), not a test: it takes a kubeconfig
// (a standalone server's, `reports-server serve --standalone`, or a cluster's) and writes to it.
//
// Per resource, as Kyverno does:
//   - admission: create an EphemeralReport without owner (Kyverno's admission controller, 16
//     clients here as in TestKyvernoAtScale);
//   - front reconcile (adopt): get it, update it with the resource as owner and the
//     audit.kyverno.io/resource.uid label;
//   - back reconcile (aggregate): get the PolicyReport named after the resource UID, list the
//     namespace's ephemeral reports with audit.kyverno.io/resource.uid=<uid>, create the
//     PolicyReport, delete the ephemeral reports listed.
//
// Kyverno's delays between the steps (10 s after each ephemeral-report event) are left out: what
// is measured is how many resources a second the server lets -workers aggregation workers do.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	ephemeralReports = schema.GroupVersionResource{Group: "reports.kyverno.io", Version: "v1", Resource: "ephemeralreports"}
	policyReports    = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
	namespaces       = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	configMaps       = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

const namespaceCount = 5

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the server to measure")
	n := flag.Int("n", 2000, "number of resources")
	workers := flag.Int("workers", 10, "aggregation workers (Kyverno's --aggregationWorkers default)")
	watchers := flag.Int("watchers", 4, "metadata watchers of the ephemeral reports (Kyverno's informers)")
	owners := flag.Bool("owners", false, "create a ConfigMap per resource to own its reports (a cluster: else its garbage collector deletes reports whose owner does not exist)")
	flag.Parse()
	if err := run(*kubeconfig, *n, *workers, *watchers, *owners); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// replay is one run: its clients, the latencies it collected and when each write returned.
type replay struct {
	owners bool
	uids   sync.Map // resource index -> the owning ConfigMap's UID (with owners)
	dyn    dynamic.Interface
	meta   metadata.Interface
	lat    latencies
	wrote  sync.Map // "u/<name>" or "d/<name>" -> time.Time the update or delete returned
}

func run(kubeconfig string, n, workers, watchers int, owners bool) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 300, 300 // the reports controller's defaults
	r := &replay{owners: owners, lat: latencies{d: map[string][]time.Duration{}}}
	if r.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	if r.meta, err = metadata.NewForConfig(cfg); err != nil {
		return err
	}
	ctx := context.Background()
	for i := range namespaceCount {
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": namespace(i)}}}
		_, _ = r.dyn.Resource(namespaces).Create(ctx, ns, metav1.CreateOptions{}) // may exist
	}
	for k := range watchers {
		if err := r.watch(ctx, k == 0); err != nil {
			return err
		}
	}
	phase("admission-create", n, 16, func(i int) error { return r.admit(ctx, i) })
	phase("front-adopt", n, workers, func(i int) error { return r.adopt(ctx, i) })
	phase("back-aggregate", n, workers, func(i int) error { return r.aggregate(ctx, i) })
	time.Sleep(3 * time.Second) // the watchers' last events
	r.lat.print()
	return nil
}

func namespace(i int) string { return fmt.Sprintf("scale-%d", i%namespaceCount) }
func resourceUID(i int) string {
	return fmt.Sprintf("0000%04d-aaaa-bbbb-cccc-%012d", i%10000, i)
}

// phase runs f for 0..n-1 on w goroutines and prints the rate.
func phase(name string, n, w int, f func(i int) error) {
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					fmt.Fprintln(os.Stderr, name, i, err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("phase %s: %d in %.1fs (%.1f/s)\n", name, n, el.Seconds(), float64(n)/el.Seconds())
}

// watch starts a metadata watch of the ephemeral reports; the measuring one records how long
// after the write returned it saw an adoption (update with owner) or a deletion.
func (r *replay) watch(ctx context.Context, measure bool) error {
	w, err := r.meta.Resource(ephemeralReports).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	go func() {
		for ev := range w.ResultChan() {
			m, ok := ev.Object.(*metav1.PartialObjectMetadata)
			if !measure || !ok {
				continue
			}
			switch {
			case ev.Type == watch.Modified && len(m.OwnerReferences) > 0:
				r.seen("u/"+m.Name, "watch-lag-adopt")
			case ev.Type == watch.Deleted:
				r.seen("d/"+m.Name, "watch-lag-delete")
			}
		}
	}()
	return nil
}

// seen records a watch event's lag behind its write (0 when the event came first).
func (r *replay) seen(key, op string) {
	now := time.Now()
	if v, loaded := r.wrote.LoadOrStore(key, now); loaded {
		r.lat.add(op, now.Sub(v.(time.Time)))
		return
	}
	r.lat.add(op, 0)
}

func (r *replay) timed(op string, f func() error) error {
	s := time.Now()
	err := f()
	r.lat.add(op, time.Since(s))
	return err
}

func (r *replay) admit(ctx context.Context, i int) error {
	if r.owners {
		cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": fmt.Sprintf("obj-%d", i), "namespace": namespace(i)}}}
		created, err := r.dyn.Resource(configMaps).Namespace(namespace(i)).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		r.uids.Store(i, string(created.GetUID()))
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "reports.kyverno.io/v1", "kind": "EphemeralReport",
		"metadata": map[string]any{"name": fmt.Sprintf("eph-%d", i), "namespace": namespace(i), "labels": map[string]any{
			"app.kubernetes.io/managed-by": "kyverno", "audit.kyverno.io/source": "admission",
			"audit.kyverno.io/resource.hash": fmt.Sprintf("%032d", i), "audit.kyverno.io/resource.gvr.resource": "configmaps",
			"audit.kyverno.io/resource.gvr.version": "v1", "audit.kyverno.io/resource.name": fmt.Sprintf("obj-%d", i),
			"audit.kyverno.io/resource.namespace": namespace(i), "cpol.kyverno.io/scale-pss-baseline": "1234"}},
		"spec": map[string]any{"owner": map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "name": fmt.Sprintf("obj-%d", i), "uid": ""},
			"results": results(3), "summary": map[string]any{"pass": int64(3)}},
	}}
	return r.timed("eph-create", func() error {
		_, err := r.dyn.Resource(ephemeralReports).Namespace(namespace(i)).Create(ctx, obj, metav1.CreateOptions{})
		return err
	})
}

func (r *replay) adopt(ctx context.Context, i int) error {
	client := r.dyn.Resource(ephemeralReports).Namespace(namespace(i))
	var obj *unstructured.Unstructured
	if err := r.timed("eph-get", func() (err error) {
		obj, err = client.Get(ctx, fmt.Sprintf("eph-%d", i), metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	owner := types.UID("u")
	if v, ok := r.uids.Load(i); ok {
		owner = types.UID(v.(string))
	}
	obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: fmt.Sprintf("obj-%d", i), UID: owner}})
	labels := obj.GetLabels()
	labels["audit.kyverno.io/resource.uid"] = resourceUID(i)
	obj.SetLabels(labels)
	err := r.timed("eph-update", func() error { _, err := client.Update(ctx, obj, metav1.UpdateOptions{}); return err })
	r.wrote.LoadOrStore("u/"+obj.GetName(), time.Now())
	return err
}

func (r *replay) aggregate(ctx context.Context, i int) error {
	uid, ns := resourceUID(i), namespace(i)
	_ = r.timed("pr-get", func() error { // NotFound: the first aggregation of the resource
		_, err := r.dyn.Resource(policyReports).Namespace(ns).Get(ctx, uid, metav1.GetOptions{})
		return err
	})
	var list *unstructured.UnstructuredList
	if err := r.timed("eph-list-uid", func() (err error) {
		list, err = r.dyn.Resource(ephemeralReports).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: "audit.kyverno.io/resource.uid=" + uid})
		return err
	}); err != nil {
		return err
	}
	pr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": uid, "namespace": ns, "labels": map[string]any{"app.kubernetes.io/managed-by": "kyverno"}},
		"scope":    map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "name": fmt.Sprintf("obj-%d", i), "namespace": ns, "uid": uid},
		"results":  results(3), "summary": map[string]any{"pass": int64(3)},
	}}
	if err := r.timed("pr-create", func() error {
		_, err := r.dyn.Resource(policyReports).Namespace(ns).Create(ctx, pr, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	for _, e := range list.Items {
		if err := r.timed("eph-delete", func() error {
			return r.dyn.Resource(ephemeralReports).Namespace(ns).Delete(ctx, e.GetName(), metav1.DeleteOptions{})
		}); err != nil {
			return err
		}
		r.wrote.LoadOrStore("d/"+e.GetName(), time.Now())
	}
	return nil
}

func results(n int) []any {
	out := make([]any, 0, n)
	for i := range n {
		out = append(out, map[string]any{"policy": "scale-pss-baseline", "rule": fmt.Sprintf("rule-%d", i), "result": "pass",
			"message": "validation rule passed", "scored": true, "source": "kyverno",
			"timestamp": map[string]any{"seconds": int64(1764844800), "nanos": int64(0)}})
	}
	return out
}

// latencies collects durations per operation.
type latencies struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (l *latencies) add(op string, d time.Duration) {
	l.mu.Lock()
	l.d[op] = append(l.d[op], d)
	l.mu.Unlock()
}

func (l *latencies) print() {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := make([]string, 0, len(l.d))
	for op := range l.d {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		ds := l.d[op]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		fmt.Printf("%-16s n=%5d mean=%7.2fms p50=%7.2fms p90=%7.2fms p99=%7.2fms\n", op, len(ds),
			ms(sum/time.Duration(len(ds))), ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]), ms(ds[len(ds)*99/100]))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
