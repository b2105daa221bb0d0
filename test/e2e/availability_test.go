package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/internal/apiservice"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testAvailability checks the APIServices' Available condition as kube-apiserver's availability
// controller maintains it, and what clients see, as replicas go down and come back:
//
//   - one replica killed, its endpoint then marked not ready (the kubelet's readiness probe
//     failing): the APIServices stay Available and every request is answered by the others,
//     for longer than the availability controller takes to notice the endpoint change;
//   - the last replica killed too, its endpoint left ready (a crash the kubelet has not noticed
//     yet): the availability controller's own discovery check fails, Available turns False and
//     requests get 503;
//   - every replica started again and marked ready: Available=True and writes work.
//
// With one replica, only the last two steps run.
func testAvailability(t *testing.T, c *cluster.Cluster) {
	ctx := testContext(t, 10*time.Minute)
	if err := c.WaitAPIServices(ctx, true, 30*time.Second); err != nil {
		t.Fatalf("before the kills: %v", err)
	}
	polr := kindByResource(t, "policyreports")
	reports := resourceFor(dynamicClient(t, c), polr, "default")
	replicas := c.ReportsServers
	survivor := replicas[len(replicas)-1]

	for _, r := range replicas[:len(replicas)-1] {
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := c.SetReady(ctx, r, false); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed %s and marked its endpoint not ready", r.Name)
	}
	if len(replicas) > 1 {
		// kube-apiserver learns of the endpoint change through its informer, within moments.
		time.Sleep(time.Second)
		// The availability controller re-checks the APIServices of a Service when its endpoints
		// change; over 15 s it has, and every request meanwhile must be answered.
		dyn := dynamicClient(t, c)
		deadline := time.Now().Add(15 * time.Second)
		var requests int
		for i := 0; time.Now().Before(deadline); i++ {
			name := fmt.Sprintf("one-down-%d", i)
			if _, err := reports.Create(ctx, report(polr, "default", name, "pass", "web-0"), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create %s with %s down: %v", name, replicas[0].Name, err)
			}
			if _, err := reports.Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Fatalf("get %s with %s down: %v", name, replicas[0].Name, err)
			}
			if err := reports.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete %s with %s down: %v", name, replicas[0].Name, err)
			}
			requests += 3
			if down := unavailableAPIServices(ctx, t, c, dyn); len(down) > 0 {
				t.Fatalf("with only %s up: %v", survivor.Name, down)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("with only %s up: APIServices stayed Available and %d requests were answered over 15 s", survivor.Name, requests)
	}

	start := time.Now()
	if err := survivor.Kill(); err != nil {
		t.Fatal(err)
	}
	// The availability controller re-checks every APIService at least every 30 s.
	if err := c.WaitAPIServices(ctx, false, 2*time.Minute); err != nil {
		t.Fatalf("after killing every replica: %v", err)
	}
	t.Logf("APIServices unavailable %s after the last replica was killed", time.Since(start).Round(time.Millisecond))
	_, err := reports.List(ctx, metav1.ListOptions{})
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("list while every replica is down: got %v, want 503 ServiceUnavailable", err)
	}

	start = time.Now()
	if err := c.StartReplicas(ctx, replicas...); err != nil {
		t.Fatal(err)
	}
	// Failed checks are retried with backoff (at most 30 s apart).
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatalf("after restarting the replicas: %v", err)
	}
	t.Logf("APIServices available %s after the restart", time.Since(start).Round(time.Millisecond))
	eventually(t, "writes and lists work again", time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := reports.Create(ctx, report(polr, "default", "after-restart", "pass", "web-0"), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return false, err.Error(), nil
		}
		l, err := reports.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return len(l.Items) == 1, fmt.Sprintf("%d reports in default", len(l.Items)), nil
	})
}

// unavailableAPIServices lists the server's APIServices whose Available condition is not True,
// with their reason and message.
func unavailableAPIServices(ctx context.Context, t *testing.T, c *cluster.Cluster, dyn dynamic.Interface) []string {
	t.Helper()
	var down []string
	for _, name := range c.APIServiceNames() {
		as, err := dyn.Resource(apiservice.Resource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get APIService %s: %v", name, err)
		}
		conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
		available := false
		state := "no Available condition"
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Available" {
				available = m["status"] == "True"
				state = fmt.Sprintf("Available=%v (%v: %v)", m["status"], m["reason"], m["message"])
			}
		}
		if !available {
			down = append(down, name+": "+state)
		}
	}
	return down
}
