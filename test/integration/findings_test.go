package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

// The user the findings test grants access to one namespace only, as a RoleBinding of a role
// allowing get and list on findings in team-a would.
const (
	viewerToken     = "team-a-viewer-token"
	viewerUser      = "team-a-viewer"
	viewerNamespace = "team-a"
)

var (
	findingsGVR  = analyticsv1alpha1.SchemeGroupVersion.WithResource("findings")
	summariesGVR = analyticsv1alpha1.SchemeGroupVersion.WithResource("findingsummaries")
)

// namespaceViewer is the test's authorizer: the viewer may read findings in one namespace and use
// discovery and OpenAPI (what system:discovery gives every authenticated user); anything else is
// left to the standalone policy, which denies it.
type namespaceViewer struct{ user, namespace string }

func (a namespaceViewer) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if attrs.GetUser() == nil || attrs.GetUser().GetName() != a.user {
		return authorizer.DecisionNoOpinion, "", nil
	}
	if !attrs.IsResourceRequest() {
		if attrs.GetVerb() == "get" {
			return authorizer.DecisionAllow, "discovery", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	}
	if attrs.GetAPIGroup() == findingsGVR.Group && attrs.GetResource() == findingsGVR.Resource &&
		attrs.GetNamespace() == a.namespace && (attrs.GetVerb() == "get" || attrs.GetVerb() == "list") {
		return authorizer.DecisionAllow, "namespace viewer", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// TestFindings checks the findings API against the SQL analytics it is a view of: reports from real
// producers plus generated ones are written through the API, and once they are projected every
// kubectl answer (field selectors, pages, get, the summaries) must be exactly what the equivalent
// SQL on the published `reporting` views returns. It also checks per-namespace access, refused
// selectors, explain and printer columns.
func TestFindings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildKubectl(t, dir)
	srv := startServerWith(t, dbtest.URL(t), func(o *server.Options, h *server.Hooks) {
		// Summaries follow within a fraction of a second, not after the default 30 s debounce.
		o.Analytics.SummaryRefreshInterval = 200 * time.Millisecond
		h.Authenticator = bearertoken.New(authenticator.TokenFunc(func(_ context.Context, token string) (*authenticator.Response, bool, error) {
			if token != viewerToken {
				return nil, false, nil
			}
			return &authenticator.Response{User: &user.DefaultInfo{Name: viewerUser, Groups: []string{user.AllAuthenticated}}}, true, nil
		}))
		h.Authorizer = authorizer.AuthorizerFunc(namespaceViewer{user: viewerUser, namespace: viewerNamespace}.Authorize)
	})
	admin := &kubectl{bin: bin, kubeconfig: srv.Kubeconfig, home: filepath.Join(dir, "admin")}
	viewer := &kubectl{bin: bin, kubeconfig: viewerKubeconfig(t, srv.Kubeconfig, filepath.Join(dir, "viewer.kubeconfig")), home: filepath.Join(dir, "viewer")}

	ctx := context.Background()
	client := srv.dynamicClient(t)
	pool, err := pgxpool.New(ctx, srv.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	applySamples(t, admin)
	for _, u := range generatedReports() {
		k := kindNamed(t, u.GetKind())
		if _, err := resourceFor(client, k, u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	waitAnalytics(t, pool)

	t.Run("selectors equal SQL", func(t *testing.T) {
		cases := []struct{ selector, where string }{
			{"severity=critical,result=fail", "severity = 'critical' AND result = 'fail'"},
			{"", "true"},
			{"severity=high", "severity = 'high'"},
			{"severity=", "severity IS NULL"},
			{"result!=pass,result!=skip", "result IS DISTINCT FROM 'pass' AND result IS DISTINCT FROM 'skip'"},
			{"finding=true,source=Trivy", "finding AND source = 'Trivy'"},
			{"finding!=true", "NOT finding"},
			{"policy=require-labels,rule=check-team", "policy = 'require-labels' AND rule = 'check-team'"},
			{"category=pod-security", "category = 'pod-security'"},
			{"subject.kind=Pod,subject.namespace=team-b", "resource_kind = 'Pod' AND resource_namespace = 'team-b'"},
			{"subject.name=web-3", "resource_name = 'web-3'"},
			{"metadata.namespace=team-a,finding=false", "report_namespace = 'team-a' AND NOT finding"},
			{"metadata.namespace!=team-a,severity=critical", "report_namespace <> 'team-a' AND severity = 'critical'"},
			{"report.name=generated-2", "report_name = 'generated-2'"},
			{"metadata.name=ephr.generated-1.2,report.ephemeral=true", "report_kind = 'EphemeralReport' AND report_name = 'generated-1' AND result_index = 2"},
			{"metadata.name=ephr.generated-1.2", "false"}, // final reports only by default
			{"report.ephemeral=true", "ephemeral"},
			{"report.ephemeral!=true,severity=high", "NOT ephemeral AND severity = 'high'"},
			{"severity=critical,severity=high", "false"},
		}
		for _, c := range cases {
			got := kubectlFindings(t, admin, "get", "findings", "-A", "--field-selector", c.selector, "--chunk-size", "7")
			where := c.where
			if !strings.Contains(c.selector, "report.ephemeral") {
				where += " AND NOT ephemeral" // the default: final reports only
			}
			want := sqlFindings(t, pool, "report_namespace <> '' AND "+where)
			if len(want) == 0 && c.where != "false" {
				t.Errorf("selector %q: the SQL finds no rows; the case tests nothing", c.selector)
			}
			compareRows(t, "kubectl get findings -A --field-selector "+c.selector, got, want)
		}
		// A namespace, and cluster-scoped reports.
		compareRows(t, "kubectl get findings -n team-b --field-selector severity=critical",
			kubectlFindings(t, admin, "get", "findings", "-n", "team-b", "--field-selector", "severity=critical", "--chunk-size", "3"),
			sqlFindings(t, pool, "report_namespace = 'team-b' AND severity = 'critical' AND NOT ephemeral"))
		compareRows(t, "kubectl get clusterfindings --field-selector result=fail",
			kubectlFindings(t, admin, "get", "clusterfindings", "--field-selector", "result=fail", "--chunk-size", "2"),
			sqlFindings(t, pool, "report_namespace = '' AND result = 'fail' AND NOT ephemeral"))
	})

	t.Run("pages", func(t *testing.T) {
		// Keyset pages: several of them, no row twice, together exactly the rows of one list.
		seen := map[string]bool{}
		pages, cont := 0, ""
		for {
			list, err := client.Resource(findingsGVR).List(ctx, metav1.ListOptions{
				Limit: 7, Continue: cont, FieldSelector: "finding=true",
			})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if list.GetResourceVersion() == "" || list.GetResourceVersion() == "0" {
				t.Errorf("page %d has resourceVersion %q, want the projection checkpoint", pages, list.GetResourceVersion())
			}
			for _, item := range list.Items {
				key := item.GetNamespace() + "/" + item.GetName()
				if seen[key] {
					t.Errorf("%s on two pages", key)
				}
				seen[key] = true
			}
			if cont = list.GetContinue(); cont == "" {
				break
			}
		}
		want := sqlFindings(t, pool, "report_namespace <> '' AND finding AND NOT ephemeral")
		if pages < 3 || len(seen) != len(want) {
			t.Errorf("%d pages of %d findings, want at least 3 pages of %d", pages, len(seen), len(want))
		}
		if _, err := client.Resource(findingsGVR).List(ctx, metav1.ListOptions{Limit: 7, Continue: "not-a-token"}); !apierrors.IsBadRequest(err) {
			t.Errorf("list with a forged continue token: %v, want 400", err)
		}
	})

	t.Run("get", func(t *testing.T) {
		all := kubectlFindings(t, admin, "get", "findings", "-A", "-o", "json")
		for _, row := range []findingRow{all[0], all[len(all)/2], all[len(all)-1]} {
			got := kubectlFindings(t, admin, "get", "finding", row.Name, "-n", row.Namespace)
			compareRows(t, "kubectl get finding "+row.Name, got, []findingRow{row})
		}
		if _, err := admin.run(t, "get", "finding", "polr.no-such-report.0", "-n", "team-a"); err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("get of a missing finding: %v, want NotFound", err)
		}
	})

	t.Run("metadata and Table shapes", func(t *testing.T) { findingShapes(t, ctx, srv, client) })

	t.Run("summaries equal SQL", func(t *testing.T) {
		got := kubectlSummaries(t, admin, "get", "findingsummaries", "--chunk-size", "4")
		want := sqlSummaries(t, pool, "true")
		compareRows(t, "kubectl get findingsummaries", got, want)
		compareRows(t, "kubectl get findingsummaries --field-selector type=Namespace,namespace!=team-a",
			kubectlSummaries(t, admin, "get", "findingsummaries", "--field-selector", "type=Namespace,namespace!=team-a"),
			sqlSummaries(t, pool, "type = 'Namespace' AND namespace <> 'team-a'"))
		compareRows(t, "kubectl get findingsummaries --field-selector source=kyverno",
			kubectlSummaries(t, admin, "get", "findingsummaries", "--field-selector", "source=kyverno", "--chunk-size", "2"),
			sqlSummaries(t, pool, "source = 'kyverno'"))
		compareRows(t, "kubectl get findingsummaries --field-selector subject.kind=Pod,namespace=team-b",
			kubectlSummaries(t, admin, "get", "findingsummaries", "--field-selector", "subject.kind=Pod,namespace=team-b"),
			sqlSummaries(t, pool, "kind = 'Pod' AND namespace = 'team-b'"))
		// Pages of one summary, so that pages end in every type, the single cluster row included.
		names := map[string]bool{}
		for cont := ""; ; {
			list, err := client.Resource(summariesGVR).List(ctx, metav1.ListOptions{Limit: 1, Continue: cont})
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range list.Items {
				if names[item.GetName()] {
					t.Errorf("summary %s on two pages", item.GetName())
				}
				names[item.GetName()] = true
			}
			if cont = list.GetContinue(); cont == "" {
				break
			}
		}
		if len(names) != len(want) {
			t.Errorf("pages of one summary: %d summaries, want %d", len(names), len(want))
		}
		for _, row := range []summaryRow{got[0], got[len(got)/2], got[len(got)-1]} {
			compareRows(t, "kubectl get findingsummary "+row.Name,
				kubectlSummaries(t, admin, "get", "findingsummary", row.Name), []summaryRow{row})
		}
	})

	t.Run("namespace access", func(t *testing.T) {
		compareRows(t, "viewer: kubectl get findings -n team-a",
			kubectlFindings(t, viewer, "get", "findings", "-n", viewerNamespace, "--chunk-size", "5"),
			sqlFindings(t, pool, "report_namespace = 'team-a' AND NOT ephemeral"))
		for _, args := range [][]string{
			{"get", "findings", "-A"},
			{"get", "findings", "-n", "team-b"},
			{"get", "findings", "-A", "--field-selector", "metadata.namespace=team-a"},
			{"get", "clusterfindings"},
			{"get", "findingsummaries"},
		} {
			out, err := viewer.run(t, args...)
			if err == nil || !strings.Contains(err.Error(), "Forbidden") {
				t.Errorf("viewer: kubectl %s: %v\n%s\nwant Forbidden", strings.Join(args, " "), err, out)
			}
		}
		// The status code itself.
		viewerCfg, err := clientcmd.BuildConfigFromFlags("", viewer.kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		vc, err := dynamic.NewForConfig(viewerCfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vc.Resource(findingsGVR).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("viewer: list findings in all namespaces: %v, want 403", err)
		}
		if _, err := vc.Resource(findingsGVR).Namespace(viewerNamespace).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("viewer: list findings in %s: %v", viewerNamespace, err)
		}
	})

	t.Run("refused selectors", func(t *testing.T) {
		_, err := client.Resource(findingsGVR).List(ctx, metav1.ListOptions{FieldSelector: "spec.severity=high"})
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "field label not supported: spec.severity") ||
			!strings.Contains(err.Error(), "severity, result") {
			t.Errorf("unknown field: %v, want 400 naming the supported fields", err)
		}
		for _, sel := range []struct{ label, field, want string }{
			{"app=web", "", "findings have no labels"},
			{"", "finding=maybe", "must be true or false"},
			{"", "metadata.name!=polr.x.1", "use = or =="},
		} {
			_, err := client.Resource(findingsGVR).List(ctx, metav1.ListOptions{LabelSelector: sel.label, FieldSelector: sel.field})
			if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), sel.want) {
				t.Errorf("labels %q fields %q: %v, want 400 with %q", sel.label, sel.field, err, sel.want)
			}
		}
		_, err = client.Resource(summariesGVR).List(ctx, metav1.ListOptions{FieldSelector: "severity=high"})
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "type, namespace") {
			t.Errorf("summary selector on severity: %v, want 400 naming the supported fields", err)
		}
		out, err := admin.run(t, "get", "findings", "-A", "--field-selector", "bogus=1")
		if err == nil || !strings.Contains(err.Error(), "BadRequest") || !strings.Contains(err.Error(), "field label not supported: bogus") {
			t.Errorf("kubectl with an unknown field: %v\n%s", err, out)
		}
	})

	t.Run("explain", func(t *testing.T) {
		out := admin.mustRun(t, "explain", "findings")
		for _, want := range []string{"GROUP:      analytics.reports-server.io", "KIND:       Finding", "severity\t<string>", "subject\t<SubjectReference>"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain findings lacks %q:\n%s", want, out)
			}
		}
		out = admin.mustRun(t, "explain", "findingsummaries.counts")
		if !strings.Contains(out, "critical\t<integer> -required-") {
			t.Errorf("kubectl explain findingsummaries.counts:\n%s", out)
		}
	})

	t.Run("printer columns", func(t *testing.T) {
		out := admin.mustRun(t, "get", "findings", "-A", "--field-selector", "severity=critical,result=fail")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if header := strings.Fields(lines[0]); !slices.Equal(header, []string{"NAMESPACE", "NAME", "POLICY", "RULE", "RESULT", "SEVERITY", "SUBJECT", "AGE"}) {
			t.Errorf("header %v", header)
		}
		if len(lines) < 2 {
			t.Fatalf("no critical failures printed:\n%s", out)
		}
		for _, line := range lines[1:] {
			if c := tableCells(lines[0], line); c["RESULT"] != "fail" || c["SEVERITY"] != "critical" || !strings.Contains(c["SUBJECT"], "/") {
				t.Errorf("row %q: %v", line, c)
			}
		}
		out = admin.mustRun(t, "get", "findings", "-n", "team-a", "-o", "wide")
		if header := strings.Fields(strings.SplitN(out, "\n", 2)[0]); !slices.Equal(header,
			[]string{"NAME", "POLICY", "RULE", "RESULT", "SEVERITY", "SUBJECT", "AGE", "SOURCE", "CATEGORY", "SCORE", "REPORT", "MESSAGE"}) {
			t.Errorf("wide header %v", header)
		}
		out = admin.mustRun(t, "get", "findingsummaries", "--field-selector", "type=Namespace,namespace=team-a")
		lines = strings.Split(strings.TrimSpace(out), "\n")
		if header := strings.Fields(lines[0]); !slices.Equal(header,
			[]string{"NAME", "TYPE", "SCOPE", "RESULTS", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "CRITICAL", "HIGH", "REFRESHED"}) {
			t.Errorf("summary header %v", header)
		}
		if len(lines) != 2 || tableCells(lines[0], lines[1])["TYPE"] != "Namespace" || tableCells(lines[0], lines[1])["SCOPE"] != "team-a" {
			t.Errorf("summary of team-a:\n%s", out)
		}
	})
}

// TestFindingsWithoutAnalytics: a server that does not run the projector refuses to serve findings
// it cannot keep fresh, and says which flag to change.
func TestFindingsWithoutAnalytics(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, dbtest.URL(t), func(o *server.Options, _ *server.Hooks) { o.Analytics.Enabled = false })
	client := srv.dynamicClient(t)
	for _, gvr := range []schema.GroupVersionResource{findingsGVR, summariesGVR} {
		_, err := client.Resource(gvr).List(context.Background(), metav1.ListOptions{})
		if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "--analytics") {
			t.Errorf("list %s without analytics: %v, want 503 naming --analytics", gvr.Resource, err)
		}
	}
}

// tableCells splits a line of kubectl's table output by the columns of its header (cells can be
// empty, so splitting at spaces would not do).
func tableCells(header, line string) map[string]string {
	cells := map[string]string{}
	fields := strings.Fields(header)
	at := 0
	for i, name := range fields {
		start := at + strings.Index(header[at:], name)
		at = start + len(name)
		end := len(line)
		if i+1 < len(fields) {
			end = min(at+strings.Index(header[at:], fields[i+1]), len(line))
		}
		if start < len(line) {
			cells[name] = strings.TrimSpace(line[start:end])
		}
	}
	return cells
}

// viewerKubeconfig writes a copy of the admin kubeconfig that authenticates as the viewer.
func viewerKubeconfig(t *testing.T, adminPath, path string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(adminPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Token = viewerToken
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// applySamples applies the sample reports of real producers, when they are present.
func applySamples(t *testing.T, k *kubectl) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testdata := filepath.Join(root, "..", "shared", "testdata")
	samples, _ := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	jsonSamples, _ := filepath.Glob(filepath.Join(testdata, "*.json"))
	samples = append(samples, jsonSamples...)
	if len(samples) == 0 {
		t.Logf("no sample reports in %s: generated reports only", testdata)
	}
	for _, file := range samples {
		k.mustRun(t, "apply", "-f", file)
	}
}

// generatedReports are reports of every kind in three namespaces and at cluster scope, with results
// of every outcome and severity (and none), several sources, policies and categories, scores, and
// subjects in other namespaces than their report's.
func generatedReports() []*unstructured.Unstructured {
	rng := rand.New(rand.NewPCG(5, 5))
	pick := func(values ...string) string { return values[rng.IntN(len(values))] }
	results := func(n int) []any {
		var out []any
		for i := range n {
			r := map[string]any{
				"policy":   pick("require-labels", "disallow-privileged", "restrict-registries", "CVE-2024-1234"),
				"rule":     pick("check-team", "privileged", "registry", ""),
				"source":   pick("kyverno", "kyverno", "Trivy", "kube-bench"),
				"category": pick("pod-security", "best-practices", "openssl"),
				"message":  fmt.Sprintf("generated result %d", i),
				"scored":   rng.IntN(2) == 0,
				"timestamp": map[string]any{
					"seconds": int64(1_700_000_000 + rng.IntN(1_000_000)), "nanos": int64(rng.IntN(1_000_000_000)),
				},
				"properties": map[string]any{"score": strconv.FormatFloat(float64(rng.IntN(100))/10, 'f', 1, 64), "FixedVersion": pick("", "1.2.3")},
			}
			if s := pick("critical", "critical", "high", "medium", "low", "info", ""); s != "" {
				r["severity"] = s
			}
			if o := pick("pass", "fail", "fail", "warn", "error", "skip", ""); o != "" {
				r["result"] = o
			}
			if rng.IntN(4) == 0 {
				r["resources"] = []any{map[string]any{
					"apiVersion": "apps/v1", "kind": "Deployment", "name": fmt.Sprintf("web-%d", rng.IntN(5)),
					"namespace": pick("team-a", "team-b", "team-c"), "uid": fmt.Sprintf("00000000-0000-4000-8000-%012d", rng.IntN(1000)),
				}}
			}
			out = append(out, r)
		}
		return out
	}
	var out []*unstructured.Unstructured
	add := func(k reports.Kind, ns, name string, n int) {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetAPIVersion(k.GroupVersion.String())
		u.SetKind(k.Kind)
		u.SetName(name)
		if k.Namespaced {
			u.SetNamespace(ns)
		}
		subject := map[string]any{"apiVersion": "v1", "kind": "Pod", "name": fmt.Sprintf("web-%d", rng.IntN(5)), "uid": fmt.Sprintf("00000000-0000-4000-9000-%012d", rng.IntN(1000))}
		if !k.Namespaced {
			subject = map[string]any{"apiVersion": "v1", "kind": "Node", "name": fmt.Sprintf("node-%d", rng.IntN(3)), "uid": fmt.Sprintf("00000000-0000-4000-a000-%012d", rng.IntN(1000))}
		}
		switch {
		case isEphemeral(k):
			_ = unstructured.SetNestedField(u.Object, subject, "spec", "owner")
		case ns != "":
			subject["namespace"] = ns
			_ = unstructured.SetNestedField(u.Object, subject, "scope")
		default:
			_ = unstructured.SetNestedField(u.Object, subject, "scope")
		}
		_ = unstructured.SetNestedSlice(u.Object, results(n), contentPath(k, "results")...)
		out = append(out, u)
	}
	for _, k := range reports.All() {
		if !k.Namespaced {
			for i := range 2 {
				add(k, "", fmt.Sprintf("generated-%d", i), 4)
			}
			continue
		}
		for _, ns := range []string{"team-a", "team-b", "team-c"} {
			for i := range 4 {
				add(k, ns, fmt.Sprintf("generated-%d", i), 3+i)
			}
		}
	}
	return out
}

// waitAnalytics waits until the results reflect every write and the summaries the results.
func waitAnalytics(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ok := waitFor(time.Minute, func() bool {
		var behind int64
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FROM reporting.refresh_status
			WHERE (object = 'results' AND cluster = $1 AND (pending_revisions > 0 OR refreshed_at IS NULL))
			   OR (object <> 'results' AND (pending_revisions > 0 OR refreshed_at IS NULL))`, server.DefaultClusterName).Scan(&behind)
		if err != nil {
			t.Fatalf("read refresh status: %v", err)
		}
		return behind == 0
	})
	if !ok {
		t.Fatal("analytics not up to date after a minute")
	}
}

// findingRow is everything a finding says, comparable and printable.
type findingRow struct {
	Namespace, Name                                                           string
	ReportAPIVersion, ReportKind, ReportName, ReportUID                       string
	Index                                                                     int32
	Source, Policy, Rule, Category, Severity, Result                          string
	Finding                                                                   bool
	Scored, Message, Timestamp, Score, Properties                             string
	SubjectAPIVersion, SubjectKind, SubjectNamespace, SubjectName, SubjectUID string
}

func (r findingRow) key() string { return r.Namespace + "/" + r.Name }

// summaryRow is everything a summary says.
type summaryRow struct {
	Name, Type, Namespace, Source, Policy, Kind, Subject string
	Counts                                               analyticsv1alpha1.FindingCounts
}

func (r summaryRow) key() string { return r.Name }

// kubectlFindings runs kubectl with -o json and returns the findings it printed (a list or one).
func kubectlFindings(t *testing.T, k *kubectl, args ...string) []findingRow {
	t.Helper()
	out := k.mustRun(t, append(args, "-o", "json")...)
	var list struct {
		Kind  string                      `json:"kind"`
		Items []analyticsv1alpha1.Finding `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if list.Kind != "List" {
		var one analyticsv1alpha1.Finding
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			t.Fatal(err)
		}
		list.Items = []analyticsv1alpha1.Finding{one}
	}
	var rows []findingRow
	for _, f := range list.Items {
		if f.UID == "" || f.ResourceVersion == "" {
			t.Errorf("finding %s/%s has uid %q resourceVersion %q", f.Namespace, f.Name, f.UID, f.ResourceVersion)
		}
		r := findingRow{
			Namespace: f.Namespace, Name: f.Name,
			ReportAPIVersion: f.Report.APIVersion, ReportKind: f.Report.Kind, ReportName: f.Report.Name,
			ReportUID: string(f.Report.UID), Index: f.Report.ResultIndex,
			Source: f.Source, Policy: f.Policy, Rule: f.Rule, Category: f.Category, Severity: f.Severity, Result: f.Result,
			Finding: f.Finding, Message: f.Message,
		}
		if f.Scored != nil {
			r.Scored = strconv.FormatBool(*f.Scored)
		}
		if f.Timestamp != nil {
			r.Timestamp = f.Timestamp.UTC().Format(time.RFC3339Nano)
		}
		if f.Score != nil {
			r.Score = strconv.FormatFloat(*f.Score, 'g', -1, 64)
		}
		if len(f.Properties) > 0 {
			b, _ := json.Marshal(f.Properties) // sorted keys
			r.Properties = string(b)
		}
		if s := f.Subject; s != nil {
			r.SubjectAPIVersion, r.SubjectKind, r.SubjectNamespace, r.SubjectName, r.SubjectUID = s.APIVersion, s.Kind, s.Namespace, s.Name, string(s.UID)
		}
		rows = append(rows, r)
	}
	return rows
}

// sqlFindings returns the rows of reporting.results (the published view, as an analyst queries it)
// that satisfy where, as findings: the name built from the report kind's short name, the report
// name and the result index.
func sqlFindings(t *testing.T, pool *pgxpool.Pool, where string) []findingRow {
	t.Helper()
	short := map[string]string{}
	for _, k := range reports.All() {
		short[k.GroupVersion.Group+"/"+k.Kind] = k.ShortNames[0]
	}
	rows, err := pool.Query(context.Background(), `
		SELECT report_namespace, report_api_group, report_api_version, report_kind, report_name, report_uid, result_index,
		       coalesce(source, ''), coalesce(policy, ''), coalesce(rule, ''), coalesce(category, ''),
		       coalesce(severity, ''), coalesce(result, ''), finding, scored, coalesce(message, ''), "timestamp",
		       score, properties, coalesce(resource_api_version, ''), coalesce(resource_kind, ''),
		       coalesce(resource_namespace, ''), coalesce(resource_name, ''), coalesce(resource_uid, '')
		FROM reporting.results WHERE cluster = $1 AND (`+where+`)`, server.DefaultClusterName)
	if err != nil {
		t.Fatalf("query %s: %v", where, err)
	}
	defer rows.Close()
	var out []findingRow
	for rows.Next() {
		var (
			r          findingRow
			group      string
			scored     *bool
			ts         *time.Time
			score      *float64
			properties map[string]string
		)
		if err := rows.Scan(&r.Namespace, &group, &r.ReportAPIVersion, &r.ReportKind, &r.ReportName, &r.ReportUID, &r.Index,
			&r.Source, &r.Policy, &r.Rule, &r.Category, &r.Severity, &r.Result, &r.Finding, &scored, &r.Message, &ts,
			&score, &properties, &r.SubjectAPIVersion, &r.SubjectKind, &r.SubjectNamespace, &r.SubjectName, &r.SubjectUID); err != nil {
			t.Fatal(err)
		}
		r.Name = fmt.Sprintf("%s.%s.%d", short[group+"/"+r.ReportKind], r.ReportName, r.Index)
		if scored != nil {
			r.Scored = strconv.FormatBool(*scored)
		}
		if ts != nil {
			r.Timestamp = ts.UTC().Format(time.RFC3339Nano)
		}
		if score != nil {
			r.Score = strconv.FormatFloat(*score, 'g', -1, 64)
		}
		if len(properties) > 0 {
			b, _ := json.Marshal(properties)
			r.Properties = string(b)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func kubectlSummaries(t *testing.T, k *kubectl, args ...string) []summaryRow {
	t.Helper()
	out := k.mustRun(t, append(args, "-o", "json")...)
	var list struct {
		Kind  string                             `json:"kind"`
		Items []analyticsv1alpha1.FindingSummary `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if list.Kind != "List" {
		var one analyticsv1alpha1.FindingSummary
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			t.Fatal(err)
		}
		list.Items = []analyticsv1alpha1.FindingSummary{one}
	}
	var rows []summaryRow
	for _, s := range list.Items {
		if s.RefreshedAt == nil {
			t.Errorf("summary %s has no refreshedAt", s.Name)
		}
		r := summaryRow{Name: s.Name, Type: string(s.Type), Namespace: s.Namespace, Source: s.Source, Policy: s.Policy, Counts: s.Counts}
		if s.Subject != nil {
			r.Kind, r.Subject = s.Subject.Kind, s.Subject.Name
		}
		rows = append(rows, r)
	}
	return rows
}

// sqlSummaries returns the rows of the four published summaries that satisfy where (on the columns
// type, namespace, source, policy, kind, name). Names are the hash the API documents.
func sqlSummaries(t *testing.T, pool *pgxpool.Pool, where string) []summaryRow {
	t.Helper()
	const counts = `results, pass, fail, warn, error, skip, findings, critical, high, medium, low, info`
	rows, err := pool.Query(context.Background(), `
		SELECT type, namespace, source, policy, kind, name, `+counts+`,
		       lower(type) || '-' || left(encode(sha256(convert_to(key::text, 'UTF8')), 'hex'), 16)
		FROM (
		    SELECT 'Cluster' AS type, '' AS namespace, '' AS source, '' AS policy, '' AS kind, '' AS name, '[]'::jsonb AS key, `+counts+`
		    FROM reporting.cluster_summary WHERE cluster = $1
		    UNION ALL
		    SELECT 'Namespace', namespace, '', '', '', '', jsonb_build_array(namespace), `+counts+`
		    FROM reporting.namespace_summary WHERE cluster = $1
		    UNION ALL
		    SELECT 'Policy', '', source, policy, '', '', jsonb_build_array(source, policy), `+counts+`
		    FROM reporting.policy_summary WHERE cluster = $1
		    UNION ALL
		    SELECT 'Resource', namespace, '', '', resource_kind, resource_name, jsonb_build_array(namespace, resource_kind, resource_name), `+counts+`
		    FROM reporting.resource_summary WHERE cluster = $1
		) s WHERE `+where, server.DefaultClusterName)
	if err != nil {
		t.Fatalf("query %s: %v", where, err)
	}
	defer rows.Close()
	var out []summaryRow
	for rows.Next() {
		var r summaryRow
		c := &r.Counts
		if err := rows.Scan(&r.Type, &r.Namespace, &r.Source, &r.Policy, &r.Kind, &r.Subject,
			&c.Results, &c.Pass, &c.Fail, &c.Warn, &c.Error, &c.Skip, &c.Findings, &c.Critical, &c.High, &c.Medium, &c.Low, &c.Info,
			&r.Name); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareRows checks that got and want hold the same rows, keyed by name, and reports the
// differences.
func compareRows[R interface {
	comparable
	key() string
}](t *testing.T, what string, got, want []R) {
	t.Helper()
	index := func(rows []R) map[string]R {
		m := map[string]R{}
		for _, r := range rows {
			if _, dup := m[r.key()]; dup {
				t.Errorf("%s: %s twice", what, r.key())
			}
			m[r.key()] = r
		}
		return m
	}
	g, w := index(got), index(want)
	var diffs []string
	for k, wr := range w {
		gr, ok := g[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s: %+v", k, wr))
		case gr != wr:
			diffs = append(diffs, fmt.Sprintf("%s differs:\n  got  %+v\n  want %+v", k, gr, wr))
		}
	}
	for k, gr := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s: %+v", k, gr))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d rows, SQL %d; %d differences:\n%s", what, len(got), len(want), len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "\n"))
	}
}
