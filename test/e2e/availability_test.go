package e2e

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testAvailability checks the APIServices' Available condition as kube-apiserver's availability
// controller maintains it: True while reports-server serves, False after the process is killed
// (requests then fail with 503), and True again once the same process is started again, with
// nothing else touched (APIService, Service and EndpointSlice stay as they are).
func testAvailability(t *testing.T, c *cluster.Cluster) {
	ctx := testContext(t, 10*time.Minute)
	if err := c.WaitAPIServices(ctx, true, 30*time.Second); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	polr := kindByResource(t, "policyreports")
	reports := resourceFor(dynamicClient(t, c), polr, "default")

	start := time.Now()
	if err := c.ReportsServer.Kill(); err != nil {
		t.Fatal(err)
	}
	// The availability controller re-checks every APIService at least every 30 s.
	if err := c.WaitAPIServices(ctx, false, 2*time.Minute); err != nil {
		t.Fatalf("after killing reports-server: %v", err)
	}
	t.Logf("APIServices unavailable %s after the kill", time.Since(start).Round(time.Millisecond))
	_, err := reports.List(ctx, metav1.ListOptions{})
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("list while reports-server is down: got %v, want 503 ServiceUnavailable", err)
	}

	start = time.Now()
	if err := c.ReportsServer.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReportsServerReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Failed checks are retried with backoff (at most 30 s apart).
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatalf("after restarting reports-server: %v", err)
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
		return len(l.Items) == 1, "", nil
	})
}
