package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testKubectl drives every kind through kube-apiserver with the kubectl users have: create, get,
// list by short name, the patch types, client-side and server-side apply, delete and delete
// --all; then printer columns and explain.
func testKubectl(t *testing.T, c *cluster.Cluster) {
	const ns = "kubectl"
	ensureNamespace(t, c, ns, nil)
	for _, k := range reports.All() {
		t.Run(k.Kind, func(t *testing.T) { kubectlLifecycle(t, c, k, ns) })
	}
	t.Run("printer columns", func(t *testing.T) { kubectlPrinterColumns(t, c, ns) })
	t.Run("explain", func(t *testing.T) { kubectlExplain(t, c) })
}

func kubectlLifecycle(t *testing.T, c *cluster.Cluster, k reports.Kind, ns string) {
	res := k.Resource + "." + k.GroupVersion.Group
	short := k.ShortNames[0]
	var nsArgs []string
	if k.Namespaced {
		nsArgs = []string{"-n", ns}
	}
	args := func(a ...string) []string { return append(a, nsArgs...) }
	get := func(name string) *unstructured.Unstructured {
		t.Helper()
		out := kubectl(t, c, args("get", res, name, "-o", "json", "--show-managed-fields")...)
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal([]byte(out), &u.Object); err != nil {
			t.Fatalf("decode kubectl get %s %s: %v\n%s", res, name, err, out)
		}
		return u
	}
	result := func(u *unstructured.Unstructured) string {
		t.Helper()
		results, _, _ := unstructured.NestedSlice(u.Object, contentPath(k, "results")...)
		if len(results) != 1 {
			t.Fatalf("%s has results %v, want one", u.GetName(), results)
		}
		r, _ := results[0].(map[string]any)["result"].(string)
		return r
	}
	names := func() []string {
		t.Helper()
		var n []string
		for _, line := range strings.Fields(kubectl(t, c, args("get", short, "-o", "name")...)) {
			n = append(n, line[strings.Index(line, "/")+1:])
		}
		return n
	}

	created := short + "-created"
	kubectlIn(t, c, toYAML(t, report(k, ns, created, "pass", "web-0")), args("create", "-f", "-")...)
	obj := get(created)
	if ts := obj.GetCreationTimestamp(); obj.GetUID() == "" || obj.GetResourceVersion() == "" || ts.IsZero() {
		t.Errorf("created %s lacks uid, resourceVersion or creationTimestamp: %v", created, obj.Object["metadata"])
	}
	if r := result(obj); r != "pass" {
		t.Errorf("created %s has result %q, want pass", created, r)
	}
	if n := names(); !slices.Equal(n, []string{created}) {
		t.Errorf("kubectl get %s: %v, want [%s]", short, n, created)
	}

	// The three patch types.
	kubectl(t, c, args("patch", res, created, "--type=merge", "-p", `{"metadata":{"labels":{"patched":"merge"}}}`)...)
	kubectl(t, c, args("patch", res, created, "--type=json", "-p",
		`[{"op":"replace","path":"/`+strings.Join(contentPath(k, "results", "0", "result"), "/")+`","value":"fail"}]`)...)
	kubectl(t, c, args("patch", res, created, "--type=strategic", "-p", `{"metadata":{"annotations":{"patched":"strategic"}}}`)...)
	obj = get(created)
	if obj.GetLabels()["patched"] != "merge" || obj.GetAnnotations()["patched"] != "strategic" || result(obj) != "fail" {
		t.Errorf("after patches %s has labels %v, annotations %v, result %q", created, obj.GetLabels(), obj.GetAnnotations(), result(obj))
	}

	// Client-side apply: create, then change.
	applied := short + "-applied"
	kubectlIn(t, c, toYAML(t, report(k, ns, applied, "pass", "web-1")), args("apply", "-f", "-")...)
	kubectlIn(t, c, toYAML(t, report(k, ns, applied, "warn", "web-1")), args("apply", "-f", "-")...)
	if obj := get(applied); result(obj) != "warn" || obj.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"] == "" {
		t.Errorf("after the second apply %s has result %q and annotations %v", applied, result(obj), obj.GetAnnotations())
	}

	// Server-side apply: create, then change, with field ownership recorded by the server.
	ssa := short + "-server-side"
	kubectlIn(t, c, toYAML(t, report(k, ns, ssa, "pass", "web-2")), args("apply", "--server-side", "-f", "-")...)
	kubectlIn(t, c, toYAML(t, report(k, ns, ssa, "error", "web-2")), args("apply", "--server-side", "-f", "-")...)
	obj = get(ssa)
	if result(obj) != "error" {
		t.Errorf("after the second server-side apply %s has result %q, want error", ssa, result(obj))
	}
	if mf := obj.GetManagedFields(); len(mf) != 1 || mf[0].Manager != "kubectl" || mf[0].Operation != "Apply" {
		t.Errorf("managed fields of %s: %+v, want one Apply entry of kubectl", ssa, mf)
	}

	// Delete one (kubectl waits for it to be gone, watching through kube-apiserver), then the
	// rest at once (deletecollection).
	kubectl(t, c, args("delete", res, created)...)
	if out, _, err := c.Kubectl(testContext(t, time.Minute), nil, args("get", res, created)...); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("kubectl get %s after delete: %v\n%s", created, err, out)
	}
	if n := names(); !slices.Equal(n, []string{applied, ssa}) {
		t.Errorf("after one delete: %v, want [%s %s]", n, applied, ssa)
	}
	kubectl(t, c, args("delete", res, "--all")...)
	if n := names(); len(n) != 0 {
		t.Errorf("after delete --all: %v", n)
	}
}

// kubectlPrinterColumns checks that `kubectl get -A` prints the CRDs' columns for every kind: the
// server answers kubectl's Table request, through kube-apiserver.
func kubectlPrinterColumns(t *testing.T, c *cluster.Cluster, ns string) {
	for _, k := range reports.All() {
		name := k.ShortNames[0] + "-columns"
		kubectlIn(t, c, toYAML(t, report(k, ns, name, "fail", "web-0")), "apply", "--server-side", "-f", "-")
		var wantHeader []string
		if k.Namespaced {
			wantHeader = append(wantHeader, "NAMESPACE")
		}
		for _, col := range k.TableColumns {
			if col.Priority == 0 {
				wantHeader = append(wantHeader, strings.ToUpper(col.Name))
			}
		}
		out := kubectl(t, c, "get", k.ShortNames[0], "-A")
		header, table := columns(out)
		if !slices.Equal(header, wantHeader) {
			t.Errorf("kubectl get %s -A header %v, want %v", k.ShortNames[0], header, wantHeader)
		}
		if k.Kind == "PolicyReport" {
			// Scope Pod web-0, one failure, no other counts (empty cells), then the age.
			want := []string{ns, name, "Pod", "web-0", "", "1", "", "", ""}
			var found bool
			for _, row := range table {
				if len(row) == len(wantHeader) && row[0] == ns && row[1] == name {
					found = true
					if !slices.Equal(row[:len(want)], want) {
						t.Errorf("row of %s: %q, want %q and an age", name, row, want)
					}
				}
			}
			if !found {
				t.Errorf("kubectl get polr -A has no row for %s/%s:\n%s", ns, name, out)
			}
		}
	}
}

// columns splits kubectl's table output into the header and rows of cells by the header's column
// positions (kubectl aligns cells left under their heading), so empty cells stay in place.
func columns(out string) (header []string, table [][]string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var starts []int
	for i, r := range lines[0] {
		if r != ' ' && (i == 0 || lines[0][i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	cut := func(line string) []string {
		cells := make([]string, len(starts))
		for i, start := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			if start < end {
				cells[i] = strings.TrimSpace(line[start:end])
			}
		}
		return cells
	}
	header = cut(lines[0])
	for _, line := range lines[1:] {
		table = append(table, cut(line))
	}
	return header, table
}

// kubectlExplain reads the schemas kube-apiserver aggregates from reports-server's OpenAPI v3.
func kubectlExplain(t *testing.T, c *cluster.Cluster) {
	for _, tc := range []struct {
		field string
		want  []string
	}{
		{"polr.results", []string{"KIND:       PolicyReport", "FIELD: results", "policy\t<string> -required-", "result\t<string>"}},
		{"ephr.spec", []string{"KIND:       EphemeralReport", "FIELD: spec", "results"}},
		{"creps.scope", []string{"KIND:       ClusterReport", "FIELD: scope"}},
	} {
		out := kubectl(t, c, "explain", tc.field)
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain %s lacks %q:\n%s", tc.field, want, out)
			}
		}
	}
}
