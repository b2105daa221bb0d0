package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// replicaProxy stands for kube-apiserver's aggregation in front of a Service's replicas: each
// request goes to one of the ready replicas, and a stream in flight is relayed until the replica
// ends it (cleanly, or by going away).
type replicaProxy struct {
	mu    sync.Mutex
	rng   *rand.Rand
	ready map[string]bool
	proxy map[string]*httputil.ReverseProxy
}

func newReplicaProxy(t *testing.T, replicas map[string]*rest.Config) (*replicaProxy, *rest.Config) {
	t.Helper()
	p := &replicaProxy{rng: rand.New(rand.NewPCG(1, 2)), ready: map[string]bool{}, proxy: map[string]*httputil.ReverseProxy{}}
	for name, cfg := range replicas {
		target, err := url.Parse(cfg.Host)
		if err != nil {
			t.Fatal(err)
		}
		transport, err := rest.TransportFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = transport
		rp.FlushInterval = -1 // watch events as they come
		p.proxy[name] = rp
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, &rest.Config{Host: srv.URL, QPS: -1}
}

func (p *replicaProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	var ready []string
	for name, ok := range p.ready {
		if ok {
			ready = append(ready, name)
		}
	}
	slices.Sort(ready)
	var rp *httputil.ReverseProxy
	if len(ready) > 0 {
		rp = p.proxy[ready[p.rng.IntN(len(ready))]]
	}
	p.mu.Unlock()
	if rp == nil {
		http.Error(w, "no ready replica", http.StatusServiceUnavailable)
		return
	}
	rp.ServeHTTP(w, r)
}

// setReady puts a replica's endpoint in or out of rotation; its requests in flight go on.
func (p *replicaProxy) setReady(name string, ready bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready[name] = ready
}

// TestInformerThroughRollingUpgrade is a rolling upgrade behind the aggregation, as the Helm
// upgrade in test/e2e does it: replica a serves an informer's watch while a writer creates and
// updates reports; replica b joins; a's endpoint goes not ready and a stops. a ends the
// informer's watch cleanly (--shutdown-watch-termination-grace-period), client-go resumes it
// from its resourceVersion on b, and the informer sees every write as an event, without a
// relist. (With the grace period at 0, the generic server leaves the watch open and silent
// until its HTTP shutdown gives up a minute later; a killed pod cuts it sooner; either way the
// informer relists and sees the writes made meanwhile only as their newest state.)
func TestInformerThroughRollingUpgrade(t *testing.T) {
	t.Parallel()
	a := startServer(t)
	b := startServerOn(t, a.DatabaseURL)
	proxy, cfg := newReplicaProxy(t, map[string]*rest.Config{"a": a.Config, "b": b.Config})
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	polr := kindNamed(t, "PolicyReport")
	const ns = "upgrade"
	res := resourceFor(client, polr, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	proxy.setReady("a", true)
	inf := newHistoryInformer(t, res)
	w := &seqWriter{res: res, kind: polr, ns: ns, written: map[string][]string{}}
	writerDone := make(chan error, 1)
	stopWriter := make(chan struct{})
	go func() { writerDone <- w.run(ctx, stopWriter) }()
	w.waitFor(t, 20)
	proxy.setReady("b", true)
	w.waitFor(t, 40)
	proxy.setReady("a", false)
	stopping := time.Now()
	a.Stop()
	stopped := time.Since(stopping)
	w.waitFor(t, w.count()+40)
	close(stopWriter)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}

	inf.waitEqual(t, ctx, res)
	missed := inf.missed(w.written)
	relists := inf.syncs.Load() - 1
	t.Logf("%d reports written; replica a stopped in %v; the informer relisted %d time(s) and missed %d events",
		len(w.written), stopped.Round(time.Millisecond), relists, len(missed))
	if relists != 0 || len(missed) != 0 {
		t.Errorf("the informer relisted %d time(s) and missed %d of the writes' events: %s", relists, len(missed), strings.Join(missed, " "))
	}
}

// historyInformer records every resourceVersion its handlers see for each name, and counts its
// syncs (lists, or watches asking for the initial state).
type historyInformer struct {
	informer cache.SharedIndexInformer
	syncs    atomic.Int64
	mu       sync.Mutex
	seen     map[string][]string
}

func newHistoryInformer(t *testing.T, res dynamic.ResourceInterface) *historyInformer {
	t.Helper()
	h := &historyInformer{seen: map[string][]string{}}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			h.syncs.Add(1)
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				h.syncs.Add(1)
			}
			return res.Watch(ctx, o)
		},
	}
	h.informer = cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	record := func(obj any) {
		u := obj.(*unstructured.Unstructured)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.seen[u.GetName()] = append(h.seen[u.GetName()], u.GetResourceVersion())
	}
	if _, err := h.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.informer.Run(stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	if !waitFor(time.Minute, h.informer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	return h
}

// waitEqual waits until the informer's store equals a fresh list.
func (h *historyInformer) waitEqual(t *testing.T, ctx context.Context, res dynamic.ResourceInterface) {
	t.Helper()
	var why string
	if !waitFor(time.Minute, func() bool {
		l, err := res.List(ctx, metav1.ListOptions{})
		if err != nil {
			why = err.Error()
			return false
		}
		store := h.informer.GetStore()
		for _, item := range l.Items {
			obj, ok, _ := store.GetByKey(item.GetNamespace() + "/" + item.GetName())
			if !ok || obj.(*unstructured.Unstructured).GetResourceVersion() != item.GetResourceVersion() {
				why = fmt.Sprintf("%s: not in the store at resourceVersion %s", item.GetName(), item.GetResourceVersion())
				return false
			}
		}
		why = fmt.Sprintf("store %d objects, list %d", len(store.ListKeys()), len(l.Items))
		return len(store.ListKeys()) == len(l.Items)
	}) {
		t.Fatalf("the informer's store never equalled a fresh list: %s", why)
	}
}

// missed lists the writes (name@resourceVersion) the informer saw no event of.
func (h *historyInformer) missed(written map[string][]string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var missed []string
	for name, rvs := range written {
		for _, rv := range rvs {
			if !slices.Contains(h.seen[name], rv) {
				missed = append(missed, name+"@"+rv)
			}
		}
	}
	slices.Sort(missed)
	return missed
}

// seqWriter creates reports one after the other and updates each once at once, retrying what
// a replica going away fails.
type seqWriter struct {
	res     dynamic.ResourceInterface
	kind    reports.Kind
	ns      string
	mu      sync.Mutex
	written map[string][]string
}

func (w *seqWriter) run(ctx context.Context, stop <-chan struct{}) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if err := w.write(ctx, fmt.Sprintf("r-%04d", i)); err != nil {
			return err
		}
	}
}

func (w *seqWriter) write(ctx context.Context, name string) error {
	var created *unstructured.Unstructured
	if err := retryWrite(ctx, func() (err error) {
		created, err = w.res.Create(ctx, sample(w.kind, w.ns, name, nil, "Pod", "pass"), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = w.res.Get(ctx, name, metav1.GetOptions{}) // an earlier attempt went through
		}
		return err
	}); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	w.record(name, created.GetResourceVersion())
	var updated *unstructured.Unstructured
	if err := retryWrite(ctx, func() error {
		obj, err := w.res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if obj.GetLabels()["updated"] == "true" {
			updated = obj // an earlier attempt went through
			return nil
		}
		obj.SetLabels(map[string]string{"updated": "true"})
		updated, err = w.res.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	w.record(name, updated.GetResourceVersion())
	return nil
}

func retryWrite(ctx context.Context, f func() error) error {
	var err error
	for range 20 {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

func (w *seqWriter) record(name, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[name] = append(w.written[name], rv)
}

func (w *seqWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.written)
}

func (w *seqWriter) waitFor(t *testing.T, n int) {
	t.Helper()
	if !waitFor(time.Minute, func() bool { return w.count() >= n }) {
		t.Fatalf("%d reports written in a minute, want %d", w.count(), n)
	}
}
