package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
)

// TestSelectorsMatchExactly throws the characters SQL treats specially (quotes, LIKE's % and _,
// backslashes, dollar quoting), unicode and the longest label values through every selector:
// each value reaches PostgreSQL as a bind parameter and matches exactly that value, never a
// pattern ("a%" never matches "ab").
func TestSelectorsMatchExactly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	polr := kindNamed(t, "PolicyReport")
	const ns = "exact"
	res := resourceFor(client, polr, ns)

	// Label values are restricted ([A-Za-z0-9_.-], 63 characters); scope.name is free text.
	long := strings.Repeat("x", 62) + "y"
	labelValues := []string{"a", "ab", "a_b", "axb", "a.b", "a-b", "A", long, long[:62]}
	scopeNames := []string{
		"a", "ab", "a%", "a%b", "a_b", "axb", `a\b`, `a\\b`, "a'b", `a"b`, "a$$b", "$$", "a;b", "a b",
		"ä", "a\u0301", "日本", "🙂", "a\tb", "A", strings.Repeat("é", 63), "%", "_", `\`, "'",
	}
	for i, v := range scopeNames {
		labels := map[string]string{"v": labelValues[i%len(labelValues)], "i": strconv.Itoa(i)}
		u := sample(polr, ns, fmt.Sprintf("r%d", i), labels, "Pod", "pass")
		u.Object["scope"].(map[string]any)["name"] = v
		if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create with scope.name %q: %v", v, err)
		}
	}

	count := func(opts metav1.ListOptions) []string {
		t.Helper()
		l, err := res.List(ctx, opts)
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		return names(l)
	}
	for i, v := range scopeNames {
		got := count(metav1.ListOptions{FieldSelector: "scope.name=" + escapeFieldValue(v)})
		if len(got) != 1 || got[0] != fmt.Sprintf("r%d", i) {
			t.Errorf("scope.name=%q matched %v, want [r%d]", v, got, i)
		}
		others := count(metav1.ListOptions{FieldSelector: "scope.name!=" + escapeFieldValue(v)})
		if len(others) != len(scopeNames)-1 {
			t.Errorf("scope.name!=%q matched %d reports, want %d", v, len(others), len(scopeNames)-1)
		}
	}
	for _, v := range labelValues {
		want := 0
		for i := range scopeNames {
			if labelValues[i%len(labelValues)] == v {
				want++
			}
		}
		for _, sel := range []string{"v=" + v, "v==" + v, "v in (" + v + ")"} {
			if got := count(metav1.ListOptions{LabelSelector: sel}); len(got) != want {
				t.Errorf("label selector %q matched %d reports, want %d", sel, len(got), want)
			}
		}
		if got := count(metav1.ListOptions{LabelSelector: "v!=" + v}); len(got) != len(scopeNames)-want {
			t.Errorf("label selector v!=%s matched %d reports, want %d", v, len(got), len(scopeNames)-want)
		}
	}
	// A metadata.name selector that is a pattern to LIKE matches nothing.
	if got := count(metav1.ListOptions{FieldSelector: "metadata.name=r%"}); len(got) != 0 {
		t.Errorf("metadata.name=r%% matched %v", got)
	}
	if got := count(metav1.ListOptions{FieldSelector: "metadata.name=r_"}); len(got) != 0 {
		t.Errorf("metadata.name=r_ matched %v", got)
	}
}

// escapeFieldValue escapes a field selector value as fields.EscapeValue does.
func escapeFieldValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `=`, `\=`)
	return r.Replace(v)
}

// TestConcurrentWriters: 32 clients increment a counter label on one report by get → update,
// retrying on 409; the final value is the number of successful updates. 16 clients creating the
// same name at once get exactly one 201 and fifteen 409 AlreadyExists.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	polr := kindNamed(t, "PolicyReport")
	const ns = "concurrent"
	res := resourceFor(client, polr, ns)
	if _, err := res.Create(ctx, sample(polr, ns, "counter", map[string]string{"n": "0"}, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const clients, each = 32, 5
	var done, conflicts atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				for {
					cur, err := res.Get(ctx, "counter", metav1.GetOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(cur.GetLabels()["n"])
					cur.SetLabels(map[string]string{"n": strconv.Itoa(n + 1)})
					_, err = res.Update(ctx, cur, metav1.UpdateOptions{})
					if apierrors.IsConflict(err) {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					done.Add(1)
					break
				}
			}
		})
	}
	wg.Wait()
	final, err := res.Get(ctx, "counter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := final.GetLabels()["n"]; got != strconv.FormatInt(done.Load(), 10) || done.Load() != clients*each {
		t.Errorf("counter %s after %d successful updates (%d conflicts retried), want %d", got, done.Load(), conflicts.Load(), clients*each)
	}
	t.Logf("%d updates, %d conflicts retried", done.Load(), conflicts.Load())

	var created, exists atomic.Int32
	start := make(chan struct{})
	for i := range 16 {
		wg.Go(func() {
			<-start
			_, err := res.Create(ctx, sample(polr, ns, "contested", map[string]string{"by": strconv.Itoa(i)}, "Pod", "pass"), metav1.CreateOptions{})
			switch {
			case err == nil:
				created.Add(1)
			case apierrors.IsAlreadyExists(err):
				exists.Add(1)
			default:
				t.Errorf("create: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if created.Load() != 1 || exists.Load() != 15 {
		t.Errorf("16 concurrent creates: %d created, %d AlreadyExists; want 1 and 15", created.Load(), exists.Load())
	}
}
