package ecosystem

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

var (
	policyReports    = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
	ephemeralReports = schema.GroupVersionResource{Group: "reports.kyverno.io", Version: "v1", Resource: "ephemeralreports"}
	findings         = schema.GroupVersionResource{Group: "analytics.reports-server.io", Version: "v1alpha1", Resource: "findings"}
	findingSummaries = schema.GroupVersionResource{Group: "analytics.reports-server.io", Version: "v1alpha1", Resource: "findingsummaries"}
)

// eventually polls cond every second until it returns nil or timeout passes; the failure names
// what was awaited and the last thing cond found wrong.
func eventually(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) error) {
	t.Helper()
	var last error
	start := time.Now()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		last = cond(cctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: not reached within %s: %v", what, timeout, last)
	}
	t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond))
}

// counts are result counts by result.
type counts map[string]int64

func (c counts) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if c[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// settled checks that Kyverno has finished: every expected resource has its PolicyReport, named by
// its UID, owned by it, with exactly the expected results and a summary that counts them; no
// other PolicyReports are in the namespaces; no ephemeral reports are left.
func settled(ctx context.Context, dc dynamic.Interface, namespaces []string, want []resource) error {
	byUID := map[string]resource{}
	for _, r := range want {
		byUID[string(r.UID)] = r
	}
	errs, err := matchReports(ctx, dc, namespaces, byUID, resource.String, checkReport)
	if err != nil {
		return err
	}
	for _, ns := range namespaces {
		ephr, err := dc.Resource(ephemeralReports).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(ephr.Items); n > 0 {
			errs = append(errs, fmt.Errorf("%d ephemeral reports left in %s", n, ns))
		}
	}
	if len(errs) > 5 {
		return fmt.Errorf("%d problems, e.g. %w", len(errs), errors.Join(errs[:5]...))
	}
	return errors.Join(errs...)
}

// matchReports checks the PolicyReports in namespaces against expected, keyed by report name (the
// resource's UID): check for each report about an expected resource, a problem for each report
// about none and for each expected resource without a report (what names it). err is a failed list.
func matchReports[R any](ctx context.Context, dc dynamic.Interface, namespaces []string, expected map[string]R,
	what func(R) string, check func(unstructured.Unstructured, R) error) (problems []error, err error) {
	left := maps.Clone(expected)
	for _, ns := range namespaces {
		list, err := dc.Resource(policyReports).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, rep := range list.Items {
			r, ok := left[rep.GetName()]
			if !ok {
				problems = append(problems, fmt.Errorf("PolicyReport %s/%s is about no expected resource (%v)", ns, rep.GetName(), scopeOf(rep)))
				continue
			}
			delete(left, rep.GetName())
			if err := check(rep, r); err != nil {
				problems = append(problems, err)
			}
		}
	}
	for _, r := range left {
		problems = append(problems, fmt.Errorf("no PolicyReport for %s", what(r)))
	}
	return problems, nil
}

func scopeOf(rep unstructured.Unstructured) string {
	kind, _, _ := unstructured.NestedString(rep.Object, "scope", "kind")
	name, _, _ := unstructured.NestedString(rep.Object, "scope", "name")
	return kind + " " + name
}

// checkReport compares a PolicyReport with what is expected of r's.
func checkReport(rep unstructured.Unstructured, r resource) error {
	owners := rep.GetOwnerReferences()
	if len(owners) != 1 || owners[0].UID != r.UID || owners[0].Kind != r.Kind {
		return fmt.Errorf("report of %s: owners %v, want the resource", r, owners)
	}
	items, _, _ := unstructured.NestedSlice(rep.Object, "results")
	got := map[string]string{}
	tally := counts{}
	for _, it := range items {
		m, _ := it.(map[string]any)
		policy, _ := m["policy"].(string)
		result, _ := m["result"].(string)
		got[policy] = result
		tally[result]++
	}
	if !maps.Equal(got, r.Results) || len(items) != len(r.Results) {
		return fmt.Errorf("report of %s: results %v, want %v", r, got, r.Results)
	}
	summary := counts{}
	for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
		n, _, _ := unstructured.NestedInt64(rep.Object, "summary", k)
		summary[k] = n
	}
	for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
		if summary[k] != tally[k] {
			return fmt.Errorf("report of %s: summary %v, results %v", r, summary, tally)
		}
	}
	return nil
}

// views reads the cluster's report data the four ways a user can.
type views struct {
	c           *cluster.Cluster
	dc          dynamic.Interface
	databaseURL string
}

// consistent checks that, per namespace, the counts of the aggregated PolicyReports (their
// results, as kubectl lists them), of the findings API, of reporting.results (final reports
// only), of reporting.namespace_summary and of the Namespace findingsummaries are the same, and
// that kubectl get polr -A lists as many reports as the API. Ephemeral reports count nowhere.
func (v views) consistent(ctx context.Context, namespaces []string) error {
	reports, perNS, err := v.policyReportCounts(ctx, namespaces)
	if err != nil {
		return err
	}
	rows, err := v.kubectlReportRows(ctx, namespaces)
	if err != nil {
		return err
	}
	if rows != reports {
		return fmt.Errorf("kubectl get polr -A lists %d reports in the namespaces, the API %d", rows, reports)
	}
	sources := []struct {
		name string
		read func(context.Context, []string) (map[string]counts, error)
	}{
		{"the findings API", v.findingCounts},
		{"reporting.results WHERE NOT ephemeral", v.sqlCounts(`SELECT namespace, result, count(*) FROM reporting.results
			WHERE NOT ephemeral AND namespace = ANY($1) GROUP BY 1, 2`)},
		{"reporting.namespace_summary", v.sqlCounts(`SELECT namespace, k, n FROM reporting.namespace_summary,
			LATERAL (VALUES ('pass', pass), ('fail', fail), ('warn', warn), ('error', error), ('skip', skip)) AS c(k, n)
			WHERE namespace = ANY($1)`)},
		{"the Namespace findingsummaries", v.summaryCounts},
	}
	for _, s := range sources {
		got, err := s.read(ctx, namespaces)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for _, ns := range namespaces {
			if !sameCounts(got[ns], perNS[ns]) {
				return fmt.Errorf("namespace %s: %s counts %v, the PolicyReports %v", ns, s.name, got[ns], perNS[ns])
			}
		}
	}
	return nil
}

func sameCounts(a, b counts) bool {
	for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

// policyReportCounts counts the PolicyReports of the namespaces and their results by result.
func (v views) policyReportCounts(ctx context.Context, namespaces []string) (int, map[string]counts, error) {
	n := 0
	out := map[string]counts{}
	for _, ns := range namespaces {
		list, err := v.dc.Resource(policyReports).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, nil, err
		}
		out[ns] = counts{}
		for _, rep := range list.Items {
			n++
			items, _, _ := unstructured.NestedSlice(rep.Object, "results")
			for _, it := range items {
				m, _ := it.(map[string]any)
				result, _ := m["result"].(string)
				out[ns][result]++
			}
		}
	}
	return n, out, nil
}

// kubectlReportRows counts the rows of kubectl get polr -A in the namespaces.
func (v views) kubectlReportRows(ctx context.Context, namespaces []string) (int, error) {
	out, stderr, err := v.c.Kubectl(ctx, nil, "get", "polr", "-A", "--no-headers")
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, stderr)
	}
	n := 0
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && slices.Contains(namespaces, f[0]) {
			n++
		}
	}
	return n, nil
}

// findingCounts counts the findings API's rows (final reports only, its default) by result.
func (v views) findingCounts(ctx context.Context, namespaces []string) (map[string]counts, error) {
	return v.findingCountsWhere(ctx, namespaces, "")
}

func (v views) findingCountsWhere(ctx context.Context, namespaces []string, fieldSelector string) (map[string]counts, error) {
	out := map[string]counts{}
	for _, ns := range namespaces {
		out[ns] = counts{}
		opts := metav1.ListOptions{FieldSelector: fieldSelector, Limit: 500}
		for {
			list, err := v.dc.Resource(findings).Namespace(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for _, f := range list.Items {
				result, _, _ := unstructured.NestedString(f.Object, "result")
				out[ns][result]++
			}
			if opts.Continue = list.GetContinue(); opts.Continue == "" {
				break
			}
		}
	}
	return out, nil
}

// summaryCounts reads the Namespace FindingSummaries.
func (v views) summaryCounts(ctx context.Context, namespaces []string) (map[string]counts, error) {
	list, err := v.dc.Resource(findingSummaries).List(ctx, metav1.ListOptions{FieldSelector: "type=Namespace"})
	if err != nil {
		return nil, err
	}
	out := map[string]counts{}
	for _, s := range list.Items {
		ns, _, _ := unstructured.NestedString(s.Object, "namespace")
		if !slices.Contains(namespaces, ns) {
			continue
		}
		c := counts{}
		for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
			c[k], _, _ = unstructured.NestedInt64(s.Object, "counts", k)
		}
		out[ns] = c
	}
	return out, nil
}

// sqlCounts reads (namespace, result, count) rows of query, which takes the namespaces as $1.
func (v views) sqlCounts(query string) func(context.Context, []string) (map[string]counts, error) {
	return func(ctx context.Context, namespaces []string) (map[string]counts, error) {
		conn, err := pgx.Connect(ctx, v.databaseURL)
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(ctx, query, namespaces)
		if err != nil {
			return nil, err
		}
		out := map[string]counts{}
		for rows.Next() {
			var ns string
			var result *string
			var n int64
			if err := rows.Scan(&ns, &result, &n); err != nil {
				return nil, err
			}
			if out[ns] == nil {
				out[ns] = counts{}
			}
			if result != nil {
				out[ns][*result] += n
			}
		}
		return out, rows.Err()
	}
}

// ephemeralResults counts the rows of reporting.results from ephemeral reports in the
// namespaces, and the findings the API lists with report.ephemeral=true.
func (v views) ephemeralResults(ctx context.Context, namespaces []string) (sql, api int64, err error) {
	got, err := v.sqlCounts(`SELECT namespace, result, count(*) FROM reporting.results
		WHERE ephemeral AND namespace = ANY($1) GROUP BY 1, 2`)(ctx, namespaces)
	if err != nil {
		return 0, 0, err
	}
	viaAPI, err := v.findingCountsWhere(ctx, namespaces, "report.ephemeral=true")
	if err != nil {
		return 0, 0, err
	}
	for _, ns := range namespaces {
		for _, n := range got[ns] {
			sql += n
		}
		for _, n := range viaAPI[ns] {
			api += n
		}
	}
	return sql, api, nil
}

// reportGone is nil once the PolicyReport named name in ns is gone.
func reportGone(ctx context.Context, dc dynamic.Interface, ns, name string) error {
	_, err := dc.Resource(policyReports).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	default:
		return fmt.Errorf("PolicyReport %s/%s still exists", ns, name)
	}
}
