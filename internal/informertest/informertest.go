// Package informertest checks the promise clients build on: a client-go informer sees every
// write as an event, in order, also while replicas come and go. A sequential Writer creates and
// then updates reports, recording the resourceVersion of each write; a History informer records
// every resourceVersion its handlers see, and counts its syncs. test/integration (replicas behind
// a proxy) and test/e2e (replicas behind kube-apiserver, a Helm upgrade) share them.
package informertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// History is a shared informer (WatchList, as client-go starts informers) that records every
// resourceVersion its add and update handlers see, by name, and counts its syncs: lists, and
// watches that ask for the initial state. A sync after the first is a relist, which replaces
// what the informer missed without delivering it as events.
type History struct {
	informer cache.SharedIndexInformer
	syncs    atomic.Int64
	mu       sync.Mutex
	seen     map[string][]string
	stop     chan struct{}
	done     chan struct{}
}

// StartHistory starts a History on res and waits until it has synced; Stop ends it.
func StartHistory(ctx context.Context, res dynamic.ResourceInterface) (*History, error) {
	h := &History{seen: map[string][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
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
		return nil, err
	}
	go func() {
		defer close(h.done)
		h.informer.Run(h.stop)
	}()
	if !cache.WaitForCacheSync(ctx.Done(), h.informer.HasSynced) {
		h.Stop()
		return nil, fmt.Errorf("the informer did not sync: %w", ctx.Err())
	}
	return h, nil
}

// Stop stops the informer and waits until it has stopped.
func (h *History) Stop() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// Syncs is how often the informer listed (1 without a relist).
func (h *History) Syncs() int64 { return h.syncs.Load() }

// WaitEqual waits until the informer's store equals a fresh list of res (names and
// resourceVersions), or ctx ends.
func (h *History) WaitEqual(ctx context.Context, res dynamic.ResourceInterface) error {
	var why string
	for {
		equal, err := h.equal(ctx, res)
		if equal {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the informer's store never equalled a fresh list: %s", why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *History) equal(ctx context.Context, res dynamic.ResourceInterface) (bool, error) {
	l, err := res.List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	store := h.informer.GetStore()
	for _, item := range l.Items {
		obj, ok, _ := store.GetByKey(cacheKey(&item))
		if !ok || obj.(*unstructured.Unstructured).GetResourceVersion() != item.GetResourceVersion() {
			return false, fmt.Errorf("%s: not in the store at resourceVersion %s", item.GetName(), item.GetResourceVersion())
		}
	}
	if n := len(store.ListKeys()); n != len(l.Items) {
		return false, fmt.Errorf("store %d objects, list %d", n, len(l.Items))
	}
	return true, nil
}

func cacheKey(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

// Missed lists the writes (name@resourceVersion) the informer saw no event of, sorted.
func (h *History) Missed(written map[string][]string) []string {
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

// Writer creates objects one after the other, named prefix-0, prefix-1, …, and updates each
// once at once (a label), until stopped or limit objects are written. A write that fails is
// retried (a replica going away can fail a request in flight); one that cannot be completed
// stops the writer with its error.
type Writer struct {
	res     dynamic.ResourceInterface
	object  func(name string) *unstructured.Unstructured
	stopCh  chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	written map[string][]string // resourceVersions of the writes, by name
	retried int
	err     error
}

// StartWriter starts a Writer of object(name) on res, bounded by limit objects whatever happens.
func StartWriter(ctx context.Context, res dynamic.ResourceInterface, prefix string, limit int, object func(name string) *unstructured.Unstructured) *Writer {
	w := &Writer{res: res, object: object, stopCh: make(chan struct{}), done: make(chan struct{}), written: map[string][]string{}}
	go func() {
		defer close(w.done)
		for i := range limit {
			select {
			case <-w.stopCh:
				return
			case <-ctx.Done():
				w.err = ctx.Err()
				return
			default:
			}
			if err := w.write(ctx, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
				w.err = err
				return
			}
		}
	}()
	return w
}

// write creates name and updates it once, recording the resourceVersion of each.
func (w *Writer) write(ctx context.Context, name string) error {
	var created *unstructured.Unstructured
	if err := w.retry(ctx, func() (err error) {
		created, err = w.res.Create(ctx, w.object(name), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = w.res.Get(ctx, name, metav1.GetOptions{}) // an earlier attempt went through
		}
		return err
	}); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	w.record(name, created.GetResourceVersion())
	var updated *unstructured.Unstructured
	if err := w.retry(ctx, func() error {
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

func (w *Writer) retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 20 {
		if attempt > 0 {
			w.mu.Lock()
			w.retried++
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

func (w *Writer) record(name, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[name] = append(w.written[name], rv)
}

// Count is how many objects were written so far.
func (w *Writer) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.written)
}

// WaitFor waits until n objects were written, the writer stopped, or ctx ends.
func (w *Writer) WaitFor(ctx context.Context, n int) error {
	for w.Count() < n {
		select {
		case <-w.done:
			return w.err
		case <-ctx.Done():
			return fmt.Errorf("%d objects written, want %d: %w", w.Count(), n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Stop stops the writer and returns what it wrote, how many attempts it retried, and the
// error that stopped it early, if any.
func (w *Writer) Stop() (written map[string][]string, retried int, err error) {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written, w.retried, w.err
}
