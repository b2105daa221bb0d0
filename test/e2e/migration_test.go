package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// Sizes of the migration test: reports of every kind, and a bulk of small PolicyReports that
// makes the copy of that resource take long enough to interrupt it.
const (
	migrationMixed   = 500
	migrationBulk    = 2000
	migrationWorkers = 16
	// servingCertSecret is the Secret deploy/manifests makes the replicas share
	// (--serving-cert-secret).
	servingCertSecret = "reports-server-tls"
)

// Log messages of internal/crdmigrate the test follows.
const (
	logCopyProgress = "migrating from the CRD"
	logCopied       = "copied from the CRD"
	logFinished     = "migration from CRDs finished"
)

// testMigrationFromCRDs is the path of a cluster that kept its reports in CRDs, and of one that
// had the older static APIServices, in steps that build on each other:
//
//   - StaticAPIServiceTakenOver: an APIService in the form deploy/manifests used to ship
//     (insecureSkipTLSVerify, no caBundle, not labelled as the server's) is reconciled, when the
//     replicas start, to the managed form with the CA of the shared serving certificate, and is
//     Available: kube-apiserver verifies the replicas' certificate with it.
//   - Interrupted: the APIServices are removed with `reports-server apiservices remove` (the
//     uninstall step), CRDs for the six kinds are installed (kube-apiserver then serves the
//     groups from etcd), and 2,500 reports are created through them. One replica starts, and is
//     killed (SIGKILL) while it copies the PolicyReports, as its log's progress lines show. The
//     groups are still served from the CRDs; one report is then updated, one deleted (both were
//     already copied) and one added, through the CRD.
//   - ResumedByReplicasAtOnce: every replica starts at the same moment. Exactly one copies (the
//     others wait for its lock, then find the groups taken over); it resumes: it rewrites only
//     what is not already stored as it is, and removes the deleted report.
//
// Then every report is readable, through kube-apiserver and from each replica directly, with
// exactly the content and metadata the CRD had (uid, creationTimestamp, labels, managedFields...;
// only resourceVersion differs), nothing is missing or duplicated, and the deleted one is gone,
// as are the reports the earlier checks had stored (the CRDs, the truth at the takeover, do not
// have them); a
// watch from a resourceVersion of the CRD era gets 410 Gone (the client relists, no silent gap);
// requests reach reports-server, not the CRDs; and the CRDs and their objects are still in etcd
// until the documented retirement step.
func testMigrationFromCRDs(t *testing.T, c *cluster.Cluster) {
	m := &migration{c: c, dyn: dynamicClient(t, c), created: map[string]*unstructured.Unstructured{}}
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"StaticAPIServiceTakenOver", m.staticAPIServiceTakenOver},
		{"Interrupted", m.interrupted},
		{"ResumedByReplicasAtOnce", m.resumedByReplicasAtOnce},
		{"Content", m.content},
		{"ServedByReportsServer", m.servedByReportsServer},
	} {
		if !t.Run(step.name, step.run) {
			return // the later steps build on this one
		}
	}
}

type migration struct {
	c   *cluster.Cluster
	dyn dynamic.Interface
	// created are the CRD objects as the CRD last returned them, by key(kind, namespace, name).
	created map[string]*unstructured.Unstructured
	// deleted is the key of the report deleted from the CRD after the interrupted copy.
	deleted string
	// crdRV is the last resourceVersion the CRDs gave out.
	crdRV string
	// stored counts, by resource, the reports reports-server held before the migration (those
	// the earlier checks created): the CRDs do not have them, so the migration removes them.
	stored map[string]int
}

func objectKey(k reports.Kind, namespace, name string) string {
	return k.Resource + "/" + namespace + "/" + name
}

func (m *migration) staticAPIServiceTakenOver(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	c := m.c
	name := apiservice.Name(kindByResource(t, "policyreports").GroupVersion)
	if err := c.StopReplicas(ctx, c.ReportsServers...); err != nil {
		t.Fatal(err)
	}
	as, err := m.dyn.Resource(apiservice.Resource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labels := as.GetLabels()
	delete(labels, apiservice.ManagedByLabel)
	as.SetLabels(labels)
	unstructured.RemoveNestedField(as.Object, "spec", "caBundle")
	if err := unstructured.SetNestedField(as.Object, true, "spec", "insecureSkipTLSVerify"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.dyn.Resource(apiservice.Resource).Update(ctx, as, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("rewrite APIService %s to the old static form: %v", name, err)
	}

	start := time.Now()
	if err := c.StartReplicas(ctx, c.ReportsServers...); err != nil {
		t.Fatal(err)
	}
	secret, err := kubeClient(t, c).CoreV1().Secrets(c.Manifests.Service.Namespace).Get(ctx, servingCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the serving certificate's Secret: %v", err)
	}
	eventually(t, "APIService "+name+" reconciled to the managed form", time.Minute, func(ctx context.Context) (bool, string, error) {
		as, err := m.dyn.Resource(apiservice.Resource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return managedForm(as, secret)
	})
	if err := c.WaitAPIServices(ctx, true, 3*time.Minute); err != nil {
		t.Fatalf("with the managed APIService (TLS verified with the caBundle): %v", err)
	}
	t.Logf("APIService %s reconciled and Available %s after the replicas started", name, time.Since(start).Round(time.Millisecond))
	// The others are in the managed form too.
	for _, n := range c.APIServiceNames() {
		as, err := m.dyn.Resource(apiservice.Resource).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ok, state, _ := managedForm(as, secret); !ok {
			t.Errorf("APIService %s: %s", n, state)
		}
	}
}

// managedForm reports whether as is labelled as the server's, points at its Service and trusts
// the CA of the shared serving certificate instead of skipping verification.
func managedForm(as *unstructured.Unstructured, secret *corev1.Secret) (bool, string, error) {
	ca, _, _ := unstructured.NestedString(as.Object, "spec", "caBundle")
	skip, _, _ := unstructured.NestedBool(as.Object, "spec", "insecureSkipTLSVerify")
	svc, _, _ := unstructured.NestedString(as.Object, "spec", "service", "name")
	bundle, err := base64.StdEncoding.DecodeString(ca)
	switch {
	case as.GetLabels()[apiservice.ManagedByLabel] != apiservice.ManagedByValue:
		return false, "not labelled as managed", nil
	case skip || ca == "":
		return false, fmt.Sprintf("insecureSkipTLSVerify=%v, caBundle %d bytes", skip, len(ca)), nil
	case err != nil:
		return false, fmt.Sprintf("caBundle is not base64: %v", err), nil
	case !bytes.Contains(bundle, bytes.TrimSpace(secret.Data["ca.crt"])):
		return false, "caBundle lacks the CA of Secret " + secret.Name, nil
	case svc == "":
		return false, "no spec.service", nil
	}
	return true, "", nil
}

func (m *migration) interrupted(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	c := m.c
	svc := c.Manifests.Service
	m.stored = map[string]int{}
	for _, k := range reports.All() {
		l, err := m.dyn.Resource(k.GroupVersionResource()).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.stored[k.Resource] = len(l.Items)
	}
	t.Logf("reports held before the migration, by resource: %v", m.stored)
	if err := c.StopReplicas(ctx, c.ReportsServers...); err != nil {
		t.Fatal(err)
	}
	// Uninstall the APIServices, as deploy/README.md says, and keep reports in CRDs instead.
	out, err := exec.CommandContext(ctx, c.ReportsServers[0].Binary(), "apiservices", "remove",
		"--kubeconfig", c.AdminKubeconfig, "--service-namespace", svc.Namespace, "--service-name", svc.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("reports-server apiservices remove: %v\n%s", err, out)
	}
	for _, name := range c.APIServiceNames() {
		if _, err := m.dyn.Resource(apiservice.Resource).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("APIService %s after apiservices remove: %v, want NotFound", name, err)
		}
	}

	kinds := reports.All()
	for _, k := range kinds {
		createCRD(ctx, t, m.dyn, k)
	}
	for _, ns := range []string{"migrate-a", "migrate-b", "migrate-bulk"} {
		ensureNamespace(t, c, ns, nil)
	}
	var objs []*unstructured.Unstructured
	for i := range migrationMixed {
		k := kinds[i%len(kinds)]
		obj := report(k, []string{"migrate-a", "migrate-b"}[i%2], fmt.Sprintf("m-%03d", i), []string{"pass", "fail", "warn"}[i%3], fmt.Sprintf("pod-%d", i))
		obj.SetLabels(map[string]string{"batch": "migration", "n": strconv.Itoa(i)})
		objs = append(objs, obj)
	}
	polr := kindByResource(t, "policyreports")
	for i := range migrationBulk {
		objs = append(objs, report(polr, "migrate-bulk", fmt.Sprintf("bulk-%04d", i), "pass", fmt.Sprintf("pod-%d", i)))
	}
	start := time.Now()
	m.createThroughCRDs(ctx, t, objs)
	t.Logf("created %d reports through the CRDs in %s; last resourceVersion %s", len(objs), time.Since(start).Round(time.Millisecond), m.crdRV)

	// One replica starts and copies; it is killed while it copies the PolicyReports (the first
	// resource it migrates), after a page of them is stored.
	r := c.ReportsServers[0]
	resource := polr.GroupVersionResource().GroupResource().String()
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	var progress []logRecord
	deadline := time.Now().Add(2 * time.Minute)
	for len(progress) == 0 {
		if time.Now().After(deadline) || !r.Running() {
			t.Fatalf("%s logged no progress of copying %s (running: %v):\n%s", r.Name, resource, r.Running(), r.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
		progress = withAttr(logRecords(runLog(t, r), logCopyProgress), "resource", resource)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	log := runLog(t, r)
	if done := withAttr(logRecords(log, logCopied), "resource", resource); len(done) > 0 {
		t.Fatalf("%s finished copying %s before it was killed (%v): the copy is too fast to interrupt with %d reports", r.Name, resource, done[0].attrs, migrationBulk)
	}
	progress = withAttr(logRecords(log, logCopyProgress), "resource", resource)
	last := progress[len(progress)-1].attrs
	t.Logf("killed %s %s after it started, while copying %s: copied %s, remaining %s", r.Name, time.Since(start).Round(time.Millisecond), resource, last["copied"], last["remaining"])

	// The groups are still served from the CRDs: the takeover comes after the copy.
	as, err := m.dyn.Resource(apiservice.Resource).Get(ctx, apiservice.Name(polr.GroupVersion), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref, found, _ := unstructured.NestedMap(as.Object, "spec", "service"); found && ref != nil {
		t.Fatalf("APIService %s points at %v after the interrupted copy, want local (the CRD)", as.GetName(), ref)
	}

	// Changes while no replica runs, through the CRD, to reports the first page held (the list is
	// in key order: migrate-a comes first).
	reportsA := resourceFor(m.dyn, polr, "migrate-a")
	changed, err := reportsA.Get(ctx, "m-006", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed.SetLabels(map[string]string{"batch": "migration", "changed": "after-the-interruption"})
	if err := unstructured.SetNestedField(changed.Object, map[string]any{"fail": int64(7)}, "summary"); err != nil {
		t.Fatal(err)
	}
	if changed, err = reportsA.Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update through the CRD: %v", err)
	}
	m.created[objectKey(polr, "migrate-a", "m-006")] = changed
	if err := reportsA.Delete(ctx, "m-012", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete through the CRD: %v", err)
	}
	m.deleted = objectKey(polr, "migrate-a", "m-012")
	delete(m.created, m.deleted)
	added, err := reportsA.Create(ctx, report(polr, "migrate-a", "m-added", "fail", "pod-added"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create through the CRD: %v", err)
	}
	m.created[objectKey(polr, "migrate-a", "m-added")] = added
	m.crdRV = added.GetResourceVersion()
}

// createThroughCRDs creates objs through the CRDs with several clients at once, retrying while
// kube-apiserver does not serve a new CRD yet (404 or 503), and records them as created.
func (m *migration) createThroughCRDs(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	kinds := map[string]reports.Kind{}
	for _, k := range reports.All() {
		kinds[k.GroupVersionKind().String()] = k
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make(chan error, migrationWorkers)
		maxR int64
	)
	for w := range migrationWorkers {
		wg.Go(func() {
			for i := w; i < len(objs); i += migrationWorkers {
				obj := objs[i]
				k := kinds[obj.GroupVersionKind().String()]
				var got *unstructured.Unstructured
				var err error
				for attempt := 0; ; attempt++ {
					got, err = resourceFor(m.dyn, k, obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{})
					if err == nil || attempt == 120 || !(apierrors.IsNotFound(err) || apierrors.IsServiceUnavailable(err)) {
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("create %s %s/%s through the CRD: %w", k.Kind, obj.GetNamespace(), obj.GetName(), err)
					return
				}
				rv, _ := strconv.ParseInt(got.GetResourceVersion(), 10, 64)
				mu.Lock()
				m.created[objectKey(k, got.GetNamespace(), got.GetName())] = got
				if rv > maxR {
					maxR, m.crdRV = rv, got.GetResourceVersion()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func (m *migration) resumedByReplicasAtOnce(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	c := m.c
	svc := c.Manifests.Service
	start := time.Now()
	if err := c.StartReplicas(ctx, c.ReportsServers...); err != nil {
		t.Fatal(err)
	}
	// The replica that migrates points the APIServices at the Service once it has copied.
	eventually(t, "APIServices taken over", 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		for _, gv := range servedGroupVersions() {
			as, err := m.dyn.Resource(apiservice.Resource).Get(ctx, apiservice.Name(gv), metav1.GetOptions{})
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
	t.Logf("APIServices taken over and Available %s after the replicas started", time.Since(start).Round(time.Millisecond))
	// The migrating replica follows the CRDs' watches until they are quiet, then logs the end.
	var copier *cluster.Replica
	eventually(t, "the migration finishes", 2*time.Minute, func(context.Context) (bool, string, error) {
		for _, r := range c.ReportsServers {
			if len(logRecords(runLog(t, r), logFinished)) > 0 {
				copier = r
				return true, "", nil
			}
		}
		return false, "no replica logged " + logFinished, nil
	})

	// Exactly one replica copied; the others found the groups taken over when they got the lock.
	var copiers []string
	for _, r := range c.ReportsServers {
		log := runLog(t, r)
		if n := len(logRecords(log, logCopyProgress)) + len(logRecords(log, logCopied)) + len(logRecords(log, logFinished)); n > 0 {
			copiers = append(copiers, r.Name)
		}
	}
	if len(copiers) != 1 {
		t.Fatalf("replicas that migrated from the CRDs: %v, want exactly one (%s)", copiers, copier.Name)
	}

	// It resumed: it copied every object of every kind, rewrote only what was not stored as it
	// is, and removed the report deleted from the CRD since the interrupted copy, as well as
	// every report stored before that the CRDs do not have: when the server takes a group over,
	// its CRD is the truth.
	counts := map[string]int{}
	for key := range m.created {
		resource, _, _ := strings.Cut(key, "/")
		counts[resource]++
	}
	copied := logRecords(runLog(t, copier), logCopied)
	if len(copied) != len(reports.All()) {
		t.Errorf("%s logged %d %q lines, want one per kind (%d)", copier.Name, len(copied), logCopied, len(reports.All()))
	}
	for _, k := range reports.All() {
		resource := k.GroupVersionResource().GroupResource().String()
		recs := withAttr(copied, "resource", resource)
		if len(recs) != 1 {
			continue // reported above
		}
		a := recs[0].attrs
		objects, _ := strconv.Atoi(a["objects"])
		written, _ := strconv.Atoi(a["written"])
		removed, _ := strconv.Atoi(a["removed"])
		wantRemoved := m.stored[k.Resource]
		if k.Resource == "policyreports" {
			wantRemoved++ // the one deleted from the CRD after the interrupted copy
			// The interrupted copy had stored a page (500), unchanged since but for m-006: the
			// resumed copy writes only objects that differ from what is stored (the storage
			// compares them with managedFields normalised, see pgstorage TestNoopUpdateWithManagedFields).
			if written < 2 {
				t.Errorf("%s: resumed copy wrote %d objects, want at least the updated and the added report", resource, written)
			} else if written > objects-500+2 {
				t.Errorf("%s: the resumed copy wrote %d of %d objects, although the interrupted copy had stored a page of them unchanged", resource, written, objects)
			}
		}
		if objects != counts[k.Resource] || removed != wantRemoved {
			t.Errorf("%s: copied %d objects and removed %d, want %d and %d (%v)", resource, objects, removed, counts[k.Resource], wantRemoved, a)
		}
		t.Logf("%s copied %s: %v", copier.Name, resource, a)
	}
}

// content checks every report, through kube-apiserver and from each replica directly: the set
// of objects of each kind is the CRD's, with no duplicates and nothing else (not the deleted
// report, nor those stored before the migration), and each object is what the CRD returned
// last, but for its resourceVersion.
func (m *migration) content(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	c := m.c
	secret, err := kubeClient(t, c).CoreV1().Secrets(c.Manifests.Service.Namespace).Get(ctx, servingCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sources := []struct {
		name string
		dyn  dynamic.Interface
	}{{"kube-apiserver", m.dyn}}
	for _, r := range c.ReportsServers {
		// Verifying the replica's certificate as kube-apiserver does: the Secret's CA, the
		// Service's name.
		sources = append(sources, struct {
			name string
			dyn  dynamic.Interface
		}{r.Name + " (directly)", dynamicFor(t, c.ReplicaConfig(r, secret.Data["ca.crt"]))})
	}
	for _, src := range sources {
		got := map[string]*unstructured.Unstructured{}
		for _, k := range reports.All() {
			l, err := src.dyn.Resource(k.GroupVersionResource()).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("%s: list %s: %v", src.name, k.Resource, err)
			}
			for i := range l.Items {
				item := &l.Items[i]
				key := objectKey(k, item.GetNamespace(), item.GetName())
				if _, dup := got[key]; dup {
					t.Errorf("%s: %s listed twice", src.name, key)
				}
				got[key] = item
			}
		}
		var missing, extra, differ []string
		for key, want := range m.created {
			g, ok := got[key]
			if !ok {
				missing = append(missing, key)
				continue
			}
			if diff := objectDiff(want, g); diff != "" {
				differ = append(differ, key+": "+diff)
			}
		}
		for key := range got {
			if _, ok := m.created[key]; !ok {
				extra = append(extra, key)
			}
		}
		slices.Sort(missing)
		slices.Sort(extra)
		slices.Sort(differ)
		if len(missing) > 0 {
			t.Errorf("%s: %d reports of the CRDs missing, e.g. %v", src.name, len(missing), missing[:min(5, len(missing))])
		}
		if len(extra) > 0 {
			t.Errorf("%s: %d reports the CRDs do not have, e.g. %v (deleted from the CRD: %s)", src.name, len(extra), extra[:min(5, len(extra))], m.deleted)
		}
		if len(differ) > 0 {
			t.Errorf("%s: %d reports differ from the CRD's, e.g.\n%s", src.name, len(differ), strings.Join(differ[:min(5, len(differ))], "\n"))
		}
		t.Logf("%s: %d reports of the CRDs, identical", src.name, len(m.created)-len(missing)-len(differ))
	}
}

// objectDiff says how got differs from want, resourceVersion aside ("" if not at all).
func objectDiff(want, got *unstructured.Unstructured) string {
	w, g := want.DeepCopy(), got.DeepCopy()
	unstructured.RemoveNestedField(w.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(g.Object, "metadata", "resourceVersion")
	if reflect.DeepEqual(w.Object, g.Object) {
		return ""
	}
	var diffs []string
	for _, top := range sortedKeys(w.Object, g.Object) {
		wv, gv := w.Object[top], g.Object[top]
		if top == "metadata" {
			wm, _ := wv.(map[string]any)
			gm, _ := gv.(map[string]any)
			for _, f := range sortedKeys(wm, gm) {
				if !reflect.DeepEqual(wm[f], gm[f]) {
					diffs = append(diffs, fmt.Sprintf("metadata.%s is %v, the CRD had %v", f, gm[f], wm[f]))
				}
			}
			continue
		}
		if !reflect.DeepEqual(wv, gv) {
			diffs = append(diffs, fmt.Sprintf("%s is %v, the CRD had %v", top, gv, wv))
		}
	}
	return strings.Join(diffs, "; ")
}

func sortedKeys(maps ...map[string]any) []string {
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// servedByReportsServer checks what clients of the CRD era see: a watch from one of its
// resourceVersions gets 410 Gone, and requests reach reports-server while the CRDs and their
// objects stay in etcd.
func (m *migration) servedByReportsServer(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	c := m.c
	// A client that held a resourceVersion of the CRD era must relist. kube-apiserver switches
	// its proxy moments after the APIService changes; until then the CRD still answers (such a
	// watch just waits), so poll until the answer is ours: 410 Gone.
	polrs := resourceFor(m.dyn, kindByResource(t, "policyreports"), "migrate-a")
	eventually(t, "a watch from the CRD-era resourceVersion "+m.crdRV+" gets 410 Gone", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		w, err := polrs.Watch(ctx, metav1.ListOptions{ResourceVersion: m.crdRV})
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
	for _, k := range reports.All() {
		if _, err := m.dyn.Resource(crdmigrate.CRDResource).Get(ctx, k.Resource+"."+k.GroupVersion.Group, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD of %s: %v", k.Resource, err)
		}
	}
	if n, err := c.EtcdCount(ctx, "/registry/wgpolicyk8s.io/policyreports/migrate-bulk/"); err != nil {
		t.Error(err)
	} else if n != migrationBulk {
		t.Errorf("%d bulk PolicyReports left in etcd, want %d: the migration must not touch the CRD objects", n, migrationBulk)
	}
}

// withAttr are the records whose attribute key is value.
func withAttr(recs []logRecord, key, value string) []logRecord {
	var out []logRecord
	for _, r := range recs {
		if r.attrs[key] == value {
			out = append(out, r)
		}
	}
	return out
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
