package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestSelectorsMatchExactly throws the characters SQL treats specially (quotes, LIKE's % and _,
// backslashes, dollar quoting), unicode and the longest label values through every selector:
// each value reaches PostgreSQL as a bind parameter and matches exactly that value, never a
// pattern ("a%" never matches "ab").
func TestSelectorsMatchExactly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
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

// TestSelectorsMatchExactlyAtMaxLength repeats TestSelectorsMatchExactly with values at their
// maximum lengths: 63-character label values made of the characters label values allow that a
// pattern would read specially ("_", ".", "-"), 63-character scope fields made of quotes, "%",
// "_", "\\", "$$" and unicode, 63-character namespaces and 253-character names, through every
// selector (labels =, ==, !=, in, notin; metadata.name, metadata.namespace, scope.kind,
// scope.name, scope.namespace, = and !=) and through names and namespaces in the URL. Each
// value matches exactly itself: never a value it would match as a LIKE pattern, a regular
// expression, a prefix or in another case.
func TestSelectorsMatchExactlyAtMaxLength(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
	hc, err := rest.HTTPClientFor(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	polr := kindNamed(t, "PolicyReport")
	all := client.Resource(polr.GroupVersionResource())

	// Each value of a set has a trap beside it: what it would match if it were a pattern.
	labelValues := []string{
		"a" + strings.Repeat("_", 61) + "b",
		"a" + strings.Repeat("x", 61) + "b", // "_" as LIKE's any character
		"a" + strings.Repeat(".", 61) + "b",
		"a" + strings.Repeat("-", 61) + "b",
		"A" + strings.Repeat("_", 61) + "B", // case
		"a" + strings.Repeat("_", 60) + "b", // 62 characters: a prefix
		strings.Repeat("z", 63),
	}
	emojiMix := []rune(strings.Repeat(`a%_\'"$$;🙂é `, 6))[:63]
	scopeValues := []string{
		strings.Repeat("%", 63),
		strings.Repeat("_", 63),
		strings.Repeat("x", 63), // matched by both above as LIKE patterns
		strings.Repeat("x", 62) + "%",
		strings.Repeat("x", 62) + "_",
		strings.Repeat(`\`, 63),
		strings.Repeat("'", 63),
		strings.Repeat(`"`, 63),
		"'" + strings.Repeat("$$", 31),
		strings.Repeat("$", 63),
		string(emojiMix),
		strings.Repeat("🙂", 63),
		strings.Repeat("é", 63),
		string([]rune(strings.Repeat("e\u0301", 32))[:63]), // combining accents
		"a" + strings.Repeat(" ", 61) + "b",
		strings.Repeat("X", 63), // case of the x's
	}
	for _, v := range append(slices.Clone(labelValues), scopeValues...) {
		if n := utf8.RuneCountInString(v); n != 63 && v != labelValues[5] {
			t.Fatalf("test value %q has %d characters, want 63", v, n)
		}
	}
	// Namespaces (DNS labels, 63 characters) and names (DNS subdomains, 253 characters).
	namespaces := []string{
		"n" + strings.Repeat("-", 61) + "1",
		strings.Repeat("a", 63),
		strings.Repeat("a", 62), // a prefix of the one above
	}
	nameValues := []string{
		"n" + strings.Repeat("-", 251) + "1",
		"n" + strings.Repeat(".x", 125) + "12",
		strings.Repeat("a", 253),
		strings.Repeat("a", 252),
		"n" + strings.Repeat("x", 251) + "1", // "-" and "." as any character
		"n" + strings.Repeat("-", 250) + "1", // 252 characters
	}

	// One report per (namespace, name); report i of a namespace carries label value i, and scope
	// kind, name and namespace i, i+1 and i+2, so each field is told apart from the others.
	type report struct{ ns, name string }
	var reportsMade []report
	label := func(i int) string { return labelValues[i%len(labelValues)] }
	scope := func(i int) string { return scopeValues[i%len(scopeValues)] }
	i := 0
	for _, ns := range namespaces {
		for _, name := range nameValues {
			u := sample(polr, ns, name, map[string]string{"v": label(i)}, "Pod", "pass")
			u.Object["scope"] = map[string]any{"apiVersion": "v1", "kind": scope(i), "name": scope(i + 1), "namespace": scope(i + 2)}
			if _, err := all.Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create %s/%s (label %q, scope %q): %v", ns, name, label(i), scope(i), err)
			}
			reportsMade = append(reportsMade, report{ns, name})
			i++
		}
	}
	if len(reportsMade) < len(scopeValues) {
		t.Fatalf("%d reports cannot tell %d scope values apart", len(reportsMade), len(scopeValues))
	}
	key := func(ns, name string) string { return ns + "/" + name }
	list := func(opts metav1.ListOptions) []string {
		t.Helper()
		l, err := all.List(ctx, opts)
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		var out []string
		for _, item := range l.Items {
			out = append(out, key(item.GetNamespace(), item.GetName()))
		}
		slices.Sort(out)
		return out
	}
	expect := func(what string, opts metav1.ListOptions, match func(i int, r report) bool) {
		t.Helper()
		var want []string
		for i, r := range reportsMade {
			if match(i, r) {
				want = append(want, key(r.ns, r.name))
			}
		}
		slices.Sort(want)
		if got := list(opts); !slices.Equal(got, want) {
			t.Errorf("%s matched %d reports %.200q, want %d %.200q", what, len(got), got, len(want), want)
		}
	}

	for _, v := range labelValues {
		for _, sel := range []string{"v=" + v, "v==" + v, "v in (" + v + ")", "v in (" + v + ",other)"} {
			expect("label selector "+sel, metav1.ListOptions{LabelSelector: sel}, func(i int, _ report) bool { return label(i) == v })
		}
		for _, sel := range []string{"v!=" + v, "v notin (" + v + ")", "v notin (" + v + ",other)"} {
			expect("label selector "+sel, metav1.ListOptions{LabelSelector: sel}, func(i int, _ report) bool { return label(i) != v })
		}
	}
	expect("label selector v in (two values)", metav1.ListOptions{LabelSelector: "v in (" + labelValues[0] + "," + labelValues[1] + ")"},
		func(i int, _ report) bool { return label(i) == labelValues[0] || label(i) == labelValues[1] })

	for _, f := range []struct {
		field string
		of    func(i int) string
	}{
		{"scope.kind", scope},
		{"scope.name", func(i int) string { return scope(i + 1) }},
		{"scope.namespace", func(i int) string { return scope(i + 2) }},
	} {
		for _, v := range scopeValues {
			expect(fmt.Sprintf("%s=%q", f.field, v), metav1.ListOptions{FieldSelector: f.field + "=" + escapeFieldValue(v)},
				func(i int, _ report) bool { return f.of(i) == v })
			expect(fmt.Sprintf("%s!=%q", f.field, v), metav1.ListOptions{FieldSelector: f.field + "!=" + escapeFieldValue(v)},
				func(i int, _ report) bool { return f.of(i) != v })
		}
	}
	// Two fields at once, with labels: the conjunction.
	expect("scope.kind and scope.name of report 0, label of report 0",
		metav1.ListOptions{FieldSelector: "scope.kind=" + escapeFieldValue(scope(0)) + ",scope.name=" + escapeFieldValue(scope(1)), LabelSelector: "v=" + label(0)},
		func(i int, _ report) bool {
			return scope(i) == scope(0) && scope(i+1) == scope(1) && label(i) == label(0)
		})

	for _, name := range nameValues {
		expect("metadata.name="+name, metav1.ListOptions{FieldSelector: "metadata.name=" + name}, func(_ int, r report) bool { return r.name == name })
		expect("metadata.name!="+name, metav1.ListOptions{FieldSelector: "metadata.name!=" + name}, func(_ int, r report) bool { return r.name != name })
	}
	for _, ns := range namespaces {
		expect("metadata.namespace="+ns, metav1.ListOptions{FieldSelector: "metadata.namespace=" + ns}, func(_ int, r report) bool { return r.ns == ns })
		expect("metadata.namespace!="+ns, metav1.ListOptions{FieldSelector: "metadata.namespace!=" + ns}, func(_ int, r report) bool { return r.ns != ns })
		// The namespace in the URL.
		l, err := all.Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != len(nameValues) {
			t.Errorf("list of namespace %s: %d reports, want %d", ns, len(l.Items), len(nameValues))
		}
		for _, item := range l.Items {
			if item.GetNamespace() != ns {
				t.Errorf("list of namespace %s has %s/%s", ns, item.GetNamespace(), item.GetName())
			}
		}
		// Names in the URL: each get finds exactly its report.
		for _, name := range nameValues {
			got, err := all.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("get %s/%s: %v", ns, name, err)
			} else if got.GetName() != name || got.GetNamespace() != ns {
				t.Errorf("get %s/%s answered %s/%s", ns, name, got.GetNamespace(), got.GetName())
			}
		}
	}
	// Names and namespaces that a pattern or a prefix would find: not found.
	for _, miss := range []report{
		{namespaces[1], strings.Repeat("a", 251)},
		{namespaces[1], "n" + strings.Repeat("-", 251) + "2"},
		{namespaces[1], strings.Repeat("a", 252) + "%"},
		{namespaces[1], strings.Repeat("_", 253)},
		{namespaces[1], "n" + strings.Repeat("_", 251) + "1"},
		{strings.Repeat("a", 61), strings.Repeat("a", 253)},
		{strings.Repeat("a", 62) + "%", strings.Repeat("a", 253)},
		{strings.Repeat("_", 63), strings.Repeat("a", 253)},
	} {
		// Raw requests: client-go refuses to send names with "%".
		path := "/apis/" + polr.GroupVersion.String() + "/namespaces/" + url.PathEscape(miss.ns) + "/" + polr.Resource + "/" + url.PathEscape(miss.name)
		resp, err := hc.Get(srv.Config.Host + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// 404, or 400 for a name or namespace that cannot exist.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("get %s: %d %.300s; want 404 (or 400)", path, resp.StatusCode, body)
		}
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
	client := srv.dynamicClient(t)
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
