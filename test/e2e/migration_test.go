package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiservice"
	"github.com/reports-server/reports-server/internal/crdmigrate"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testMigrationFromCRDs is the path of a cluster that kept its reports in CRDs: the APIServices
// are removed with `reports-server apiservices remove` (the uninstall step), CRDs for the six
// kinds are installed (kube-apiserver then serves the groups from etcd), 500 reports of mixed
// kinds are created through them, and reports-server is started again. It copies them into
// PostgreSQL and takes the groups over: every report is then readable through the aggregated API
// with the content, uid and creationTimestamp it had, a watch from a resourceVersion of the CRD
// era gets 410 Gone (the client relists, no silent gap), and the CRDs and their objects are
// still there (in etcd) until the documented retirement step.
func testMigrationFromCRDs(t *testing.T, c *cluster.Cluster) {
	ctx := testContext(t, 15*time.Minute)
	dyn := dynamicClient(t, c)
	svc := c.Manifests.Service

	// The server takes over the APIServices that deploy/manifests installed: it labels them as
	// its own and replaces insecureSkipTLSVerify by the CA of the certificate all replicas share
	// (a Secret), so kube-apiserver now verifies the server; it also registers the analytics group.
	if err := c.ReportsServer.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.ReportsServer.AddArgs("--manage-apiservices=true", "--service-namespace="+svc.Namespace, "--service-name="+svc.Name)
	if err := c.ReportsServer.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "APIServices managed, with a caBundle", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		for _, gv := range append(servedGroupVersions(), schema.GroupVersion{Group: "analytics.reports-server.io", Version: "v1alpha1"}) {
			as, err := dyn.Resource(apiservice.Resource).Get(ctx, apiservice.Name(gv), metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			ca, _, _ := unstructured.NestedString(as.Object, "spec", "caBundle")
			skip, _, _ := unstructured.NestedBool(as.Object, "spec", "insecureSkipTLSVerify")
			if as.GetLabels()[apiservice.ManagedByLabel] != apiservice.ManagedByValue || ca == "" || skip {
				return false, apiservice.Name(gv) + " not managed yet", nil
			}
		}
		return true, "", nil
	})
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatalf("with the managed APIServices (TLS verified with the caBundle): %v", err)
	}

	// Uninstall the APIServices, as deploy/README.md says, and keep reports in CRDs instead.
	if err := c.ReportsServer.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, c.ReportsServer.Binary(), "apiservices", "remove",
		"--kubeconfig", c.AdminKubeconfig, "--service-namespace", svc.Namespace, "--service-name", svc.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("reports-server apiservices remove: %v\n%s", err, out)
	}
	for _, gv := range servedGroupVersions() {
		if _, err := dyn.Resource(apiservice.Resource).Get(ctx, apiservice.Name(gv), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("APIService %s after apiservices remove: %v, want NotFound", apiservice.Name(gv), err)
		}
	}

	kinds := reports.All()
	for _, k := range kinds {
		createCRD(ctx, t, dyn, k)
	}
	ensureNamespace(t, c, "migrate-a", nil)
	ensureNamespace(t, c, "migrate-b", nil)
	// Until kube-apiserver serves the CRDs, creates answer 404 or 503.
	created := map[string]*unstructured.Unstructured{}
	var crdRV string
	for i := range 500 {
		k := kinds[i%len(kinds)]
		ns := []string{"migrate-a", "migrate-b"}[i%2]
		obj := report(k, ns, fmt.Sprintf("m-%03d", i), []string{"pass", "fail", "warn"}[i%3], fmt.Sprintf("pod-%d", i))
		obj.SetLabels(map[string]string{"batch": "migration", "n": fmt.Sprint(i)})
		var got *unstructured.Unstructured
		eventually(t, "create through the CRD", time.Minute, func(ctx context.Context) (bool, string, error) {
			var err error
			got, err = resourceFor(dyn, k, ns).Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			return true, "", nil
		})
		created[k.Resource+"/"+got.GetNamespace()+"/"+got.GetName()] = got
		crdRV = got.GetResourceVersion()
	}
	t.Logf("created 500 reports through CRDs; last resourceVersion %s", crdRV)

	if err := c.ReportsServer.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReportsServerReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The server migrates, then points the APIServices at its Service.
	eventually(t, "APIServices taken over", 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		for _, gv := range servedGroupVersions() {
			as, err := dyn.Resource(apiservice.Resource).Get(ctx, apiservice.Name(gv), metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if name, _, _ := unstructured.NestedString(as.Object, "spec", "service", "name"); name != svc.Name {
				return false, apiservice.Name(gv) + " still local", nil
			}
		}
		return true, "", nil
	})
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatal(err)
	}

	// A client that held a resourceVersion of the CRD era must relist. kube-apiserver switches
	// its proxy moments after the APIService changes; until then the CRD still answers (such a
	// watch just waits), so poll until the answer is ours: 410 Gone.
	polrs := resourceFor(dyn, kindByResource(t, "policyreports"), "migrate-a")
	eventually(t, "a watch from the CRD-era resourceVersion "+crdRV+" gets 410 Gone", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		w, err := polrs.Watch(ctx, metav1.ListOptions{ResourceVersion: crdRV})
		if err != nil {
			return apierrors.IsGone(err) || apierrors.IsResourceExpired(err), err.Error(), nil
		}
		defer w.Stop()
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Error {
				if st, ok := apierrors.FromObject(ev.Object).(apierrors.APIStatus); ok && st.Status().Code == 410 {
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("got %s", ev.Type), nil
		case <-time.After(3 * time.Second):
			return false, "no event (still served by the CRD?)", nil
		}
	})

	// Every report, with its content and identity, through the aggregated API.
	for key, want := range created {
		resource, rest, _ := strings.Cut(key, "/")
		ns, name, _ := strings.Cut(rest, "/")
		k := kindByResource(t, resource)
		got, err := resourceFor(dyn, k, ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s after the migration: %v", key, err)
			continue
		}
		for _, field := range [][]string{{"metadata", "uid"}, {"metadata", "creationTimestamp"}, {"metadata", "labels"}, {"summary"}, {"results"}, {"scope"}, {"spec"}} {
			w, _, _ := unstructured.NestedFieldNoCopy(want.Object, field...)
			g, _, _ := unstructured.NestedFieldNoCopy(got.Object, field...)
			if !reflect.DeepEqual(w, g) {
				t.Errorf("%s: %s is %v after the migration, was %v", key, strings.Join(field, "."), g, w)
			}
		}
	}

	// Requests reach reports-server, not the CRD: a delete through the API removes the report
	// from the API while its CRD copy stays in etcd.
	before, err := c.EtcdCount(ctx, "/registry/wgpolicyk8s.io/policyreports/migrate-a/")
	if err != nil {
		t.Fatal(err)
	}
	if err := polrs.Delete(ctx, "m-000", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete through the API: %v", err)
	}
	if _, err := polrs.Get(ctx, "m-000", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
	if after, err := c.EtcdCount(ctx, "/registry/wgpolicyk8s.io/policyreports/migrate-a/"); err != nil {
		t.Error(err)
	} else if after != before || before == 0 {
		t.Errorf("policyreports of migrate-a in etcd: %d before the delete, %d after; want the same, non-zero (the CRD objects are not touched)", before, after)
	}

	// The CRDs and their objects are untouched: still in etcd, until the retirement step.
	for _, k := range kinds {
		if _, err := dyn.Resource(crdmigrate.CRDResource).Get(ctx, k.Resource+"."+k.GroupVersion.Group, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD of %s: %v", k.Resource, err)
		}
	}
	if n, err := c.EtcdCount(ctx, "/registry/wgpolicyk8s.io/"); err != nil {
		t.Error(err)
	} else if n == 0 {
		t.Error("no wgpolicyk8s.io objects left in etcd: the migration must not touch the CRD objects")
	}
}

func servedGroupVersions() []schema.GroupVersion {
	var gvs []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	for _, k := range reports.All() {
		if !seen[k.GroupVersion] {
			seen[k.GroupVersion] = true
			gvs = append(gvs, k.GroupVersion)
		}
	}
	return gvs
}

// createCRD installs a CRD for k that keeps any content: enough to hold reports in etcd as the
// upstream CRDs would (their schemas are not what this test is about).
func createCRD(ctx context.Context, t *testing.T, dyn dynamic.Interface, k reports.Kind) {
	t.Helper()
	scope := "Cluster"
	if k.Namespaced {
		scope = "Namespaced"
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": k.Resource + "." + k.GroupVersion.Group},
		"spec": map[string]any{
			"group": k.GroupVersion.Group,
			"scope": scope,
			"names": map[string]any{"plural": k.Resource, "singular": k.Singular, "kind": k.Kind, "listKind": k.Kind + "List"},
			"versions": []any{map[string]any{
				"name": k.GroupVersion.Version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdmigrate.CRDResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s: %v", crd.GetName(), err)
	}
}
