package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testGarbageCollection checks that kube-controller-manager's garbage collector, which discovers
// reports-server's resources through kube-apiserver and watches them through the aggregator,
// deletes a PolicyReport once its owner, a ConfigMap, is gone, and leaves alone a report whose
// owner still exists.
//
// The collector re-reads discovery every 30 s (its sync period), so it finds an aggregated
// resource at most that long after it became available; reports created before that are picked
// up by the initial list of its new monitor. The timeout allows for both.
func testGarbageCollection(t *testing.T, c *cluster.Cluster) {
	const ns = "gc"
	ctx := testContext(t, 5*time.Minute)
	ensureNamespace(t, c, ns, nil)
	client := kubeClient(t, c)
	polr := kindByResource(t, "policyreports")
	reports := resourceFor(dynamicClient(t, c), polr, ns)

	owned := func(name string) *corev1.ConfigMap {
		t.Helper()
		cm, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create ConfigMap %s: %v", name, err)
		}
		r := report(polr, ns, "report-of-"+name, "fail", name)
		r.SetOwnerReferences([]metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID, BlockOwnerDeletion: ptr.To(false),
		}})
		if _, err := reports.Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create report owned by %s: %v", name, err)
		}
		return cm
	}
	owned("doomed")
	owned("kept")

	start := time.Now()
	if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ConfigMap: %v", err)
	}
	eventually(t, "the garbage collector deletes report-of-doomed", 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := reports.Get(ctx, "report-of-doomed", metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, "", nil
		case err != nil:
			return false, err.Error(), nil
		default:
			return false, "still there", nil
		}
	})
	t.Logf("the garbage collector deleted the report %s after its owner", time.Since(start).Round(time.Millisecond))
	if _, err := reports.Get(ctx, "report-of-kept", metav1.GetOptions{}); err != nil {
		t.Errorf("the report whose owner exists: %v", err)
	}
}
