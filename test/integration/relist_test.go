package integration

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/internal/informertest"
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
	inf, err := informertest.StartHistory(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	w := informertest.StartWriter(ctx, res, "r", 5000, func(name string) *unstructured.Unstructured {
		return sample(polr, ns, name, nil, "Pod", "pass")
	})
	waitWritten := func(n int) {
		t.Helper()
		if err := w.WaitFor(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	waitWritten(20)
	proxy.setReady("b", true)
	waitWritten(40)
	proxy.setReady("a", false)
	stopping := time.Now()
	a.Stop()
	stopped := time.Since(stopping)
	waitWritten(w.Count() + 40)
	written, retried, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}

	if err := inf.WaitEqual(ctx, res); err != nil {
		t.Fatal(err)
	}
	missed := inf.Missed(written)
	relists := inf.Syncs() - 1
	t.Logf("%d reports written (%d attempts retried); replica a stopped in %v; the informer relisted %d time(s) and missed %d events",
		len(written), retried, stopped.Round(time.Millisecond), relists, len(missed))
	if relists != 0 || len(missed) != 0 {
		t.Errorf("the informer relisted %d time(s) and missed %d of the writes' events: %s", relists, len(missed), strings.Join(missed, " "))
	}
}
