package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// kindByResource returns the served kind with that plural resource name.
func kindByResource(t *testing.T, resource string) reports.Kind {
	t.Helper()
	for _, k := range reports.All() {
		if k.Resource == resource {
			return k
		}
	}
	t.Fatalf("no served kind %q", resource)
	return reports.Kind{}
}

// isEphemeral: reports.kyverno.io keeps a report's content under spec, with an owner and no
// scope; the other two groups keep scope, summary and results at the top level.
func isEphemeral(k reports.Kind) bool { return k.GroupVersion.Group == "reports.kyverno.io" }

// contentPath is where field lives in an object of k.
func contentPath(k reports.Kind, field ...string) []string {
	if isEphemeral(k) {
		return append([]string{"spec"}, field...)
	}
	return field
}

// report is an object of kind k with one result, scoped to (or, for ephemeral reports, owned by)
// a Pod called scopeName.
func report(k reports.Kind, namespace, name, result, scopeName string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(k.GroupVersion.String())
	u.SetKind(k.Kind)
	u.SetName(name)
	if k.Namespaced {
		u.SetNamespace(namespace)
	}
	set := func(value any, field ...string) {
		if err := unstructured.SetNestedField(u.Object, value, contentPath(k, field...)...); err != nil {
			panic(err) // only with a malformed path, a bug in this file
		}
	}
	set(map[string]any{result: int64(1)}, "summary")
	set([]any{map[string]any{
		"policy":  "require-labels",
		"rule":    "check-team",
		"result":  result,
		"message": "rule " + result,
		"scored":  true,
		"source":  "kyverno",
	}}, "results")
	if isEphemeral(k) {
		set(map[string]any{"apiVersion": "v1", "kind": "Pod", "name": scopeName, "uid": "6c737f35-260c-4e4f-8516-61a125c9fb78"}, "owner")
	} else {
		scope := map[string]any{"apiVersion": "v1", "kind": "Pod", "name": scopeName}
		if k.Namespaced {
			scope["namespace"] = namespace
		}
		set(scope, "scope")
	}
	return u
}

func toYAML(t *testing.T, u *unstructured.Unstructured) []byte {
	t.Helper()
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resourceFor returns the dynamic client of kind, in namespace for namespaced kinds.
func resourceFor(c dynamic.Interface, k reports.Kind, namespace string) dynamic.ResourceInterface {
	r := c.Resource(k.GroupVersionResource())
	if k.Namespaced {
		return r.Namespace(namespace)
	}
	return r
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// kubectl runs the repository's kubectl as the admin and fails the test on error.
func kubectl(t *testing.T, c *cluster.Cluster, args ...string) string {
	t.Helper()
	return kubectlIn(t, c, nil, args...)
}

// kubectlIn is kubectl with stdin.
func kubectlIn(t *testing.T, c *cluster.Cluster, stdin []byte, args ...string) string {
	t.Helper()
	out, _, err := c.Kubectl(testContext(t, 2*time.Minute), stdin, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(t *testing.T, c *cluster.Cluster, name string, labels map[string]string) {
	t.Helper()
	client := kubeClient(t, c)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := client.CoreV1().Namespaces().Create(testContext(t, time.Minute), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func kubeClient(t *testing.T, c *cluster.Cluster) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func dynamicClient(t *testing.T, c *cluster.Cluster) dynamic.Interface {
	t.Helper()
	client, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// eventually polls cond every interval until it returns true, an error, or timeout passes; the
// failure names what was awaited and the last state cond reported.
func eventually(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (done bool, state string, err error)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		done, state, err := cond(ctx)
		last = state
		return done, err
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %s)", what, err, last)
	}
}

// fields splits kubectl's table output into rows of whitespace-separated cells.
func rows(out string) [][]string {
	var r [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			r = append(r, f)
		}
	}
	return r
}
