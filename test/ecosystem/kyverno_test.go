package ecosystem

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/reports-server/reports-server/test/e2e/cluster"
	"github.com/reports-server/reports-server/test/ecosystem/kyverno"
)

// scenario is the state the steps of TestKyverno share.
type scenario struct {
	c          *cluster.Cluster
	client     kubernetes.Interface
	dc         dynamic.Interface
	views      views
	namespaces []string
	// active are the policies that exist.
	active map[string]bool
	// reportsController is Kyverno's reports controller; admission its admission controller.
	reportsController, admission *cluster.Process
}

// TestKyverno runs Kyverno's reports controller and admission controller, built from Kyverno's
// module at kyverno.Version, out of cluster against reports-server behind kube-apiserver, with
// two Audit ClusterPolicies and a ValidatingPolicy over ConfigMaps, Pods and Deployments in
// three namespaces, and checks what a user would: per-resource reports with the right results
// and summaries, admission reports aggregated, no ephemeral reports left, results that flip on a
// fix, vanish with their policy, reports gone with their resource, and the same counts through
// kubectl, the findings API and the reporting views, during a scan and after.
func TestKyverno(t *testing.T) {
	// Summaries refreshed a second after a change, so that the checks need not wait 30 s for each.
	k := startKyverno(t, kyvernoSetup{serverArgs: []string{"--summary-refresh-interval=1s"}})
	c := k.c
	s := &scenario{c: c, namespaces: namespaceNames(3), active: map[string]bool{requireTeam: true, disallowLatest: true, requireOwner: true},
		reportsController: k.reportsController, admission: k.admission}
	var err error
	if s.client, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		t.Fatal(err)
	}
	if s.dc, err = dynamic.NewForConfig(c.AdminConfig); err != nil {
		t.Fatal(err)
	}
	s.views = views{c: c, dc: s.dc, databaseURL: c.DatabaseURL}

	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Policies", s.testPolicies},
		{"BackgroundScan", s.testBackgroundScan},
		{"AdmissionReportsDuringScan", s.testAdmissionReportsDuringScan},
		{"FlipOnFix", s.testFlipOnFix},
		{"ReportGoneWithResource", s.testReportGoneWithResource},
		{"ResultsGoneWithPolicy", s.testResultsGoneWithPolicy},
		{"NoErrorsLogged", s.testNoErrorsLogged},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			t.Fatalf("%s failed; the later steps build on it", step.name)
		}
	}
}

// kyvernoSetup tunes startKyverno.
type kyvernoSetup struct {
	// serverArgs are reports-server's extra flags.
	serverArgs []string
	// policyExceptions turns on Kyverno's PolicyExceptions in both controllers.
	policyExceptions bool
}

// kyvernoCluster is the cluster with Kyverno running against it.
type kyvernoCluster struct {
	c    *cluster.Cluster
	bins *kyverno.Binaries
	// reportsController is Kyverno's reports controller; admission its admission controller.
	reportsController, admission *cluster.Process
}

// startKyverno starts the cluster, with reports-server, installs Kyverno and runs its reports
// and admission controllers out of cluster, the reports controller rescanning every ten minutes
// only: changed resources and policies are scanned as they change, and a periodic rescan of
// everything would only make "no ephemeral report left" harder to observe.
func startKyverno(t *testing.T, o kyvernoSetup) *kyvernoCluster {
	t.Helper()
	bins, err := kyverno.FromExtra(network.Binaries.Extra)
	if err != nil {
		t.Fatal(err)
	}
	k := &kyvernoCluster{c: startCluster(t, o.serverArgs...), bins: bins}
	ctx := testContext(t, 10*time.Minute)
	start := time.Now()
	if err := kyverno.Install(ctx, k.c, bins); err != nil {
		t.Fatal(err)
	}
	var extra []string
	if o.policyExceptions {
		extra = kyverno.PolicyExceptionArgs()
	}
	if k.reportsController, err = kyverno.StartReportsController(ctx, k.c, bins,
		kyverno.ReportsControllerOptions{BackgroundScanInterval: 10 * time.Minute, ExtraArgs: extra}); err != nil {
		t.Fatal(err)
	}
	if k.admission, err = kyverno.StartAdmissionController(ctx, k.c, bins, extra...); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kyverno %s installed and running after %s (logs: %s, %s)", kyverno.Version, time.Since(start).Round(time.Millisecond),
		k.reportsController.LogPath, k.admission.LogPath)
	return k
}

// testPolicies creates the namespaces and policies and waits until the admission controller has
// registered its resource webhooks for the three kinds: from then on, creating a resource makes
// it write an admission report.
func (s *scenario) testPolicies(t *testing.T) {
	ctx := testContext(t, within)
	createNamespaces(ctx, t, s.client, s.namespaces)
	if _, stderr, err := s.c.Kubectl(ctx, []byte(policies), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	waitResourceWebhooks(t, s.client, s.c, "configmaps", "pods", "deployments")
}

func hasOperation(r admissionregistrationv1.RuleWithOperations, op admissionregistrationv1.OperationType) bool {
	for _, o := range r.Operations {
		if o == op || o == admissionregistrationv1.OperationAll {
			return true
		}
	}
	return false
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// testBackgroundScan creates the first workload and waits until every resource has its report.
func (s *scenario) testBackgroundScan(t *testing.T) {
	ctx := testContext(t, 2*within)
	for _, ns := range s.namespaces {
		createBatch(ctx, t, s.client, ns, "")
	}
	s.waitSettled(t)
}

// waitSettled waits until the reports are what the resources and policies call for and the four
// views agree on the counts.
func (s *scenario) waitSettled(t *testing.T) {
	t.Helper()
	var want []resource
	eventually(t, "every report settled", within, func(ctx context.Context) error {
		var err error
		if want, err = expectedResources(ctx, s.client, s.namespaces, s.active); err != nil {
			return err
		}
		return settled(ctx, s.dc, s.namespaces, want)
	})
	t.Logf("%d resources, each with its PolicyReport, no ephemeral reports left", len(want))
	s.waitConsistent(t)
}

// waitConsistent waits until the views agree, and logs the counts they agree on.
func (s *scenario) waitConsistent(t *testing.T) {
	t.Helper()
	eventually(t, "kubectl, the findings API, reporting.results, namespace_summary and findingsummaries agree", within,
		func(ctx context.Context) error { return s.views.consistent(ctx, s.namespaces) })
	reports, perNS, err := s.views.policyReportCounts(testContext(t, time.Minute), s.namespaces)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d PolicyReports; results by namespace: %v", reports, perNS)
}

// testAdmissionReportsDuringScan stops the reports controller (SIGSTOP), creates a second
// workload, and waits until the admission controller has written an ephemeral admission report
// for each new resource: a scan in flight, held still. The summaries and the findings API must
// then count the aggregated PolicyReports only, while reporting.results and the findings API
// with report.ephemeral=true show the ephemeral results. Once the reports controller resumes,
// it aggregates the admission reports into PolicyReports, with no ephemeral report left.
func (s *scenario) testAdmissionReportsDuringScan(t *testing.T) {
	ctx := testContext(t, 2*within)
	resume, err := kyverno.Freeze(s.reportsController)
	if err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = resume()
		}
	}()
	frozenAt := time.Now()
	ns := s.namespaces[0]
	createBatch(ctx, t, s.client, ns, "second-")
	eventually(t, "an admission report for every new resource", within, func(ctx context.Context) error {
		want, err := expectedResources(ctx, s.client, []string{ns}, s.active)
		if err != nil {
			return err
		}
		list, err := s.dc.Resource(ephemeralReports).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: "audit.kyverno.io/source=admission"})
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, r := range list.Items {
			have[r.GetLabels()["audit.kyverno.io/resource.uid"]] = true
		}
		for _, r := range want {
			if strings.HasPrefix(r.Name, "second-") && !have[string(r.UID)] {
				return fmt.Errorf("no admission report for %s (%d admission reports)", r, len(list.Items))
			}
		}
		return nil
	})
	var ephemeral int64
	eventually(t, "during the scan, the summaries and findings count the aggregated PolicyReports only", within,
		func(ctx context.Context) error {
			if err := s.views.consistent(ctx, s.namespaces); err != nil {
				return err
			}
			sql, api, err := s.views.ephemeralResults(ctx, s.namespaces)
			ephemeral = sql
			switch {
			case err != nil:
				return err
			case sql == 0 || sql != api:
				return fmt.Errorf("ephemeral results: %d in reporting.results, %d through the findings API (report.ephemeral=true)", sql, api)
			}
			return nil
		})
	t.Logf("held scan: %d results of ephemeral reports in reporting.results and the findings API (report.ephemeral=true), counted by no summary", ephemeral)
	// The frozen controller keeps leading for 100 s after its last renewal (kyverno.commonArgs);
	// past that it would give up, which is not what this step is about.
	if held := time.Since(frozenAt); held > 80*time.Second {
		t.Logf("the reports controller was stopped for %s, close to its lease's duration", held.Round(time.Second))
	}
	resumed = true
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	s.waitSettled(t)
}

// testFlipOnFix labels a failing ConfigMap: its report must turn to pass.
func (s *scenario) testFlipOnFix(t *testing.T) {
	ctx := testContext(t, within)
	ns := s.namespaces[1]
	cm, err := s.client.CoreV1().ConfigMaps(ns).Get(ctx, "cm-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels = map[string]string{"team": "green"}
	if _, err := s.client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fixed := resource{Kind: "ConfigMap", Namespace: ns, Name: cm.Name, UID: cm.UID, Results: map[string]string{requireTeam: "pass"}}
	eventually(t, "the fixed ConfigMap's report says pass", within, func(ctx context.Context) error {
		rep, err := s.dc.Resource(policyReports).Namespace(ns).Get(ctx, string(cm.UID), metav1.GetOptions{})
		if err != nil {
			return err
		}
		return checkReport(*rep, fixed)
	})
	s.waitSettled(t)
}

// testReportGoneWithResource deletes a ConfigMap: the garbage collector deletes its report.
func (s *scenario) testReportGoneWithResource(t *testing.T) {
	ctx := testContext(t, within)
	ns := s.namespaces[2]
	cm, err := s.client.CoreV1().ConfigMaps(ns).Get(ctx, "cm-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted ConfigMap's report is gone", within, func(ctx context.Context) error {
		return reportGone(ctx, s.dc, ns, string(cm.UID))
	})
	s.waitSettled(t)
}

// testResultsGoneWithPolicy deletes the ValidatingPolicy: its results leave every report (the
// Deployments', which had no other, go away or stay empty).
func (s *scenario) testResultsGoneWithPolicy(t *testing.T) {
	ctx := testContext(t, within)
	vpol := schema.GroupVersionResource{Group: "policies.kyverno.io", Version: "v1", Resource: "validatingpolicies"}
	if err := s.dc.Resource(vpol).Delete(ctx, requireOwner, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.active = maps.Clone(s.active)
	delete(s.active, requireOwner)
	eventually(t, "no report has a result of the deleted policy", within, func(ctx context.Context) error {
		list, err := s.dc.Resource(findings).List(ctx, metav1.ListOptions{FieldSelector: "policy=" + requireOwner})
		if err != nil {
			return err
		}
		if n := len(list.Items); n > 0 {
			return fmt.Errorf("%d findings of %s left", n, requireOwner)
		}
		return nil
	})
	s.waitSettledAllowingEmpty(t)
}

// waitSettledAllowingEmpty is waitSettled where a resource whose only policy is gone may keep a
// report without results (Kyverno's choice) or lose it.
func (s *scenario) waitSettledAllowingEmpty(t *testing.T) {
	t.Helper()
	eventually(t, "every report settled", within, func(ctx context.Context) error {
		want, err := expectedResources(ctx, s.client, s.namespaces, s.active)
		if err != nil {
			return err
		}
		err = settled(ctx, s.dc, s.namespaces, want)
		if err == nil {
			return nil
		}
		// Empty reports of Deployments are acceptable: drop them and check again.
		return settled(ctx, s.dc, s.namespaces, append(want, s.emptyDeploymentReports(ctx)...))
	})
	s.waitConsistent(t)
}

// emptyDeploymentReports are the Deployments with a report without results.
func (s *scenario) emptyDeploymentReports(ctx context.Context) []resource {
	var out []resource
	for _, ns := range s.namespaces {
		ds, err := s.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil
		}
		for _, d := range ds.Items {
			rep, err := s.dc.Resource(policyReports).Namespace(ns).Get(ctx, string(d.UID), metav1.GetOptions{})
			if err != nil {
				continue
			}
			if results, _, _ := unstructured.NestedSlice(rep.Object, "results"); len(results) == 0 {
				out = append(out, resource{Kind: "Deployment", Namespace: ns, Name: d.Name, UID: d.UID, Results: map[string]string{}})
			}
		}
	}
	return out
}

// testNoErrorsLogged fails on any error reports-server logged while Kyverno used it.
func (s *scenario) testNoErrorsLogged(t *testing.T) {
	for _, r := range s.c.ReportsServers {
		log, err := r.RunLog()
		if err != nil {
			t.Fatal(err)
		}
		var errs []string
		for line := range strings.Lines(log) {
			// klog: severity letter, then MMDD.
			if len(line) > 5 && line[0] == 'E' && isDigits(line[1:5]) {
				errs = append(errs, strings.TrimSpace(line))
			}
		}
		if len(errs) > 0 {
			t.Errorf("%s logged %d errors, e.g.:\n%s", r.Name, len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
		}
	}
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
