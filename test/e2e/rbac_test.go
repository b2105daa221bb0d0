package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testRBAC checks that reports-server enforces kube-apiserver's RBAC for the user kube-apiserver
// authenticated (it sees the user in the front proxy's headers and asks kube-apiserver with a
// SubjectAccessReview): alice may read PolicyReports in namespace rbac-a only; bob, bound to the
// built-in view role, may read them through the ClusterRole deploy/manifests aggregates into it;
// anonymous requests are refused.
func testRBAC(t *testing.T, c *cluster.Cluster) {
	const nsA, nsB = "rbac-a", "rbac-b"
	ctx := testContext(t, 5*time.Minute)
	admin := kubeClient(t, c)
	polr := kindByResource(t, "policyreports")
	dyn := dynamicClient(t, c)
	for _, ns := range []string{nsA, nsB} {
		ensureNamespace(t, c, ns, nil)
		if _, err := resourceFor(dyn, polr, ns).Create(ctx, report(polr, ns, "in-"+ns, "pass", "web-0"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create report in %s: %v", ns, err)
		}
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "policyreport-reader", Namespace: nsA},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{polr.GroupVersion.Group}, Resources: []string{polr.Resource}, Verbs: []string{"get", "list"},
		}},
	}
	if _, err := admin.RbacV1().Roles(nsA).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Role: %v", err)
	}
	bind := func(ns, name string, roleRef rbacv1.RoleRef, user string) {
		t.Helper()
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef:    roleRef,
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create RoleBinding %s/%s: %v", ns, name, err)
		}
	}
	bind(nsA, "alice-reads-reports", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}, "alice")
	bind(nsB, "bob-views", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, "bob")

	aliceKubeconfig, aliceConfig, err := c.UserKubeconfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	alice := dynamicFor(t, aliceConfig)

	// RBAC reaches kube-apiserver's authorizer through an informer, and reports-server caches
	// SubjectAccessReview answers for seconds: wait until the grant is visible end to end.
	eventually(t, "alice can list policyreports in "+nsA, time.Minute, func(ctx context.Context) (bool, string, error) {
		l, err := alice.Resource(polr.GroupVersionResource()).Namespace(nsA).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		var names []string
		for _, item := range l.Items {
			names = append(names, item.GetName())
		}
		return slices.Equal(names, []string{"in-" + nsA}), fmt.Sprint(names), nil
	})
	if _, err := alice.Resource(polr.GroupVersionResource()).Namespace(nsA).Get(ctx, "in-"+nsA, metav1.GetOptions{}); err != nil {
		t.Errorf("alice get in %s: %v", nsA, err)
	}

	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want 403 Forbidden", what, err)
		}
	}
	_, err = alice.Resource(polr.GroupVersionResource()).Namespace(nsB).List(ctx, metav1.ListOptions{})
	forbidden("alice lists policyreports in "+nsB, err)
	_, err = alice.Resource(polr.GroupVersionResource()).List(ctx, metav1.ListOptions{})
	forbidden("alice lists policyreports in all namespaces", err)
	_, err = alice.Resource(polr.GroupVersionResource()).Namespace(nsA).Create(ctx, report(polr, nsA, "by-alice", "pass", "web-0"), metav1.CreateOptions{})
	forbidden("alice creates a policyreport in "+nsA, err)
	_, err = alice.Resource(kindByResource(t, "ephemeralreports").GroupVersionResource()).Namespace(nsA).List(ctx, metav1.ListOptions{})
	forbidden("alice lists ephemeralreports in "+nsA, err)

	// The same through kubectl, as a user would see it.
	if out, _, err := c.KubectlAs(ctx, aliceKubeconfig, nil, "get", "polr", "-n", nsA, "-o", "name"); err != nil || strings.TrimSpace(out) != "policyreport.wgpolicyk8s.io/in-"+nsA {
		t.Errorf("kubectl get polr -n %s as alice: %v\n%s", nsA, err, out)
	}
	if _, _, err := c.KubectlAs(ctx, aliceKubeconfig, nil, "get", "polr", "-n", nsB); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("kubectl get polr -n %s as alice: %v, want Forbidden", nsB, err)
	}

	// bob: the view ClusterRole includes reports-server:view once kube-controller-manager's
	// clusterrole-aggregation controller has merged it.
	_, bobConfig, err := c.UserKubeconfig("bob")
	if err != nil {
		t.Fatal(err)
	}
	bob := dynamicFor(t, bobConfig)
	eventually(t, "bob (view) can list policyreports in "+nsB, time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := bob.Resource(polr.GroupVersionResource()).Namespace(nsB).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
	_, err = bob.Resource(polr.GroupVersionResource()).Namespace(nsB).Create(ctx, report(polr, nsB, "by-bob", "pass", "web-0"), metav1.CreateOptions{})
	forbidden("bob (view) creates a policyreport", err)

	// No credentials at all: kube-apiserver authenticates the request as system:anonymous (or
	// refuses it with 401 when anonymous authentication is off), and RBAC grants it nothing.
	anon := dynamicFor(t, c.AnonymousConfig())
	_, err = anon.Resource(polr.GroupVersionResource()).Namespace(nsA).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		t.Errorf("anonymous list: got %v, want 401 or 403", err)
	}
}

func dynamicFor(t *testing.T, cfg *rest.Config) dynamic.Interface {
	t.Helper()
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
