package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

// TestDefectRegressions replays, one request each, the defects an operator found by hand (issue
// "Production", the list at its top): every one was a 5xx or a request that spun until its
// timeout, and each now gets a quick, clear answer. None of them may leave a 5xx behind.
func TestDefectRegressions(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newRawClient(t, srv.Config)
	polr := kindNamed(t, "PolicyReport")
	const ns = "defects"
	collection := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	encode := func(u *unstructured.Unstructured) []byte { return encodeObject(t, u) }
	create := func(u *unstructured.Unstructured) *unstructured.Unstructured {
		t.Helper()
		r := c.do(http.MethodPost, collection, "application/json", encode(u))
		if r.code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", u.GetName(), r.code, r.body)
		}
		out := &unstructured.Unstructured{}
		if err := json.Unmarshal(r.body, &out.Object); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i, name := range []string{"a", "b", "c"} {
		create(sample(polr, ns, name, map[string]string{"i": string(rune('0' + i))}, "Pod", "pass"))
	}

	t.Run("HugeLimit", func(t *testing.T) {
		// limit=MaxInt64 overflowed the page size and spun until the request timeout, holding a
		// connection: four at once took the pool. Now each answers at once, and so does an
		// unrelated request beside them.
		quick := *c
		hc := *c.http
		hc.Timeout = 20 * time.Second
		quick.http = &hc
		quick.t = t
		paths := []string{
			collection + "?limit=9223372036854775807",
			"/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports?limit=9223372036854775807", // empty
			"/apis/wgpolicyk8s.io/v1alpha2/policyreports?limit=9223372036854775806",
			collection + "?limit=9223372036854775807&labelSelector=i%3D1",
		}
		var wg sync.WaitGroup
		for _, p := range paths {
			wg.Go(func() {
				r := quick.do(http.MethodGet, p, "", nil)
				if r.code != http.StatusOK {
					t.Errorf("GET %s: %d %s", p, r.code, r.body)
				}
			})
		}
		wg.Wait()
		if r := quick.do(http.MethodGet, collection+"/a", "", nil); r.code != http.StatusOK {
			t.Errorf("GET beside huge limits: %d %s", r.code, r.body)
		}
	})

	t.Run("NULInContent", func(t *testing.T) {
		// PostgreSQL's jsonb has no NUL, the API has: a report with one anywhere is stored and
		// read back exactly, also next to the escape character and the text "\u0000".
		u := sample(polr, ns, "nul", nil, "Pod", "fail")
		u.SetAnnotations(map[string]string{"note": "a\x00b", "escape": "x\uFDD0N\uFDD0\uFDD0y", "text": `lit\u0000eral`})
		res := u.Object["results"].([]any)[0].(map[string]any)
		res["message"] = "bad\x00byte \x00\x00 end\x00"
		res["properties"] = map[string]any{"k\x00": "v\x00", "plain": "\\\x00\\"}
		u.Object["scope"].(map[string]any)["name"] = "web\x000"
		got := create(u)
		want := u.DeepCopy()
		check := func(what string, got *unstructured.Unstructured) {
			t.Helper()
			if g, w := got.GetAnnotations(), want.GetAnnotations(); !equalJSON(t, g, w) {
				t.Errorf("%s: annotations %q, want %q", what, g, w)
			}
			g, w := got.Object["results"], want.Object["results"]
			if !equalJSON(t, g, w) {
				t.Errorf("%s: results %q, want %q", what, g, w)
			}
			if g, w := got.Object["scope"], want.Object["scope"]; !equalJSON(t, g, w) {
				t.Errorf("%s: scope %q, want %q", what, g, w)
			}
		}
		check("create", got)
		r := c.do(http.MethodGet, collection+"/nul", "", nil)
		if r.code != http.StatusOK {
			t.Fatalf("get: %d %s", r.code, r.body)
		}
		read := &unstructured.Unstructured{}
		if err := json.Unmarshal(r.body, &read.Object); err != nil {
			t.Fatal(err)
		}
		check("get", read)

		// A field selector with a NUL matches it.
		q := url.Values{"fieldSelector": {"scope.name=web\x000"}}
		var list unstructured.UnstructuredList
		r = c.do(http.MethodGet, collection+"?"+q.Encode(), "", nil)
		if err := list.UnmarshalJSON(r.body); err != nil {
			t.Fatalf("list: %d %v: %s", r.code, err, r.body)
		}
		if n := names(&list); strings.Join(n, ",") != "nul" {
			t.Errorf("fieldSelector scope.name with a NUL: %v, want [nul]", n)
		}

		// Updates of every kind carry NULs too.
		want.Object["metadata"].(map[string]any)["annotations"].(map[string]any)["merge"] = "m\x00"
		r = c.do(http.MethodPatch, collection+"/nul", "application/merge-patch+json", []byte(`{"metadata":{"annotations":{"merge":"m\u0000"}}}`))
		if r.code != http.StatusOK {
			t.Fatalf("merge patch: %d %s", r.code, r.body)
		}
		read.SetAnnotations(map[string]string{})
		if err := json.Unmarshal(r.body, &read.Object); err != nil {
			t.Fatal(err)
		}
		check("merge patch", read)
		read.Object["results"].([]any)[0].(map[string]any)["message"] = "put\x00"
		want.Object["results"].([]any)[0].(map[string]any)["message"] = "put\x00"
		r = c.do(http.MethodPut, collection+"/nul", "application/json", encode(read))
		if r.code != http.StatusOK {
			t.Fatalf("update: %d %s", r.code, r.body)
		}
		apply := `{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"applied","namespace":"` + ns +
			`","annotations":{"n":"x\u0000y"}},"results":[{"policy":"p\u0000","result":"pass"}]}`
		r = c.do(http.MethodPatch, collection+"/applied?fieldManager=test", "application/apply-patch+yaml", []byte(apply))
		if r.code != http.StatusCreated || !strings.Contains(string(r.body), `"p\u0000"`) {
			t.Errorf("apply with NULs: %d %s", r.code, r.body)
		}
	})

	t.Run("BadBytesInURL", func(t *testing.T) {
		// Names and namespaces with NUL or invalid UTF-8 cannot exist: 404 or an empty list,
		// never a database error.
		for _, p := range []string{
			collection + "/%FF%FE",
			collection + "/a%00b",
			"/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/%C3%28",
		} {
			for _, method := range []string{http.MethodGet, http.MethodDelete} {
				r := c.do(method, p, "", nil)
				expectStatus(t, method+" "+p, r, http.StatusNotFound, metav1.StatusReasonNotFound, "")
			}
			r := c.do(http.MethodPatch, p, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"a":"b"}}}`))
			if r.code >= 500 {
				t.Errorf("PATCH %s: %d %s", p, r.code, r.body)
			}
		}
		for _, p := range []string{
			"/apis/wgpolicyk8s.io/v1alpha2/namespaces/%00/policyreports",
			"/apis/wgpolicyk8s.io/v1alpha2/namespaces/%FF/policyreports",
			collection + "?" + url.Values{"fieldSelector": {"metadata.name=a\x00b"}}.Encode(),
			collection + "?" + url.Values{"fieldSelector": {"scope.name=\x00"}}.Encode(),
			collection + "?" + url.Values{"fieldSelector": {"scope.name!=\xff"}}.Encode(),
			collection + "?" + url.Values{"fieldSelector": {"metadata.name=\xff\xfe"}}.Encode() + "&watch=1&timeoutSeconds=1",
		} {
			r := c.do(http.MethodGet, p, "", nil)
			if r.code != http.StatusOK {
				t.Errorf("GET %s: %d %s", p, r.code, r.body)
			}
		}
		r := c.do(http.MethodDelete, collection+"?"+url.Values{"fieldSelector": {"scope.name=\x00x"}}.Encode(), "", nil)
		if r.code != http.StatusOK {
			t.Errorf("deletecollection with a NUL field selector: %d %s", r.code, r.body)
		}
		// A continue token whose key carries a NUL (tokens are not secret: anyone can make one).
		token := base64.RawURLEncoding.EncodeToString([]byte(`{"v":"meta.k8s.io/v1","rv":1,"start":"a\u0000b\u0000"}`))
		r = c.do(http.MethodGet, collection+"?limit=1&continue="+token, "", nil)
		if r.code >= 500 {
			t.Errorf("tampered continue token: %d %s", r.code, r.body)
		}
	})

	t.Run("SummaryBeyondInt32", func(t *testing.T) {
		// summary counts are Go ints: 2^31 is valid and stored as sent.
		u := sample(polr, ns, "big-summary", nil, "Pod", "pass")
		u.Object["summary"] = map[string]any{"pass": int64(2147483648), "fail": int64(9223372036854775807)}
		got := create(u)
		if p, _, _ := unstructured.NestedFieldNoCopy(got.Object, "summary", "pass"); p != float64(2147483648) {
			t.Errorf("summary.pass read back as %v", p)
		}
		conn, err := pgx.Connect(context.Background(), srv.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var pass, fail int64
		if err := conn.QueryRow(context.Background(),
			"SELECT pass, fail FROM reporting.reports WHERE name = 'big-summary'").Scan(&pass, &fail); err != nil {
			t.Fatal(err)
		}
		if pass != 2147483647 || fail != 2147483647 {
			t.Errorf("reporting.reports pass, fail = %d, %d; want both clamped to 2147483647", pass, fail)
		}
	})

	t.Run("ResourceVersionBeyondInt64", func(t *testing.T) {
		for _, p := range []string{
			collection + "?resourceVersion=9223372036854775808&resourceVersionMatch=Exact",
			collection + "?resourceVersion=9223372036854775808&resourceVersionMatch=NotOlderThan",
			collection + "?resourceVersion=9223372036854775808&limit=1",
			collection + "?resourceVersion=18446744073709551616",
			collection + "?resourceVersion=9223372036854775808&watch=1",
			collection + "/a?resourceVersion=9223372036854775808",
		} {
			r := c.do(http.MethodGet, p, "", nil)
			expectStatus(t, p, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
		}
	})

	t.Run("ResourceVersionInWrites", func(t *testing.T) {
		u := sample(polr, ns, "rv-on-create", nil, "Pod", "pass")
		u.SetResourceVersion("5")
		r := c.do(http.MethodPost, collection, "application/json", encode(u))
		expectStatus(t, "create with resourceVersion", r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
		if !strings.Contains(r.status.Message, "resourceVersion") {
			t.Errorf("create with resourceVersion: message %q does not name it", r.status.Message)
		}
		for _, rv := range []string{"abc", "-1", "9223372036854775808", "99999999999999999999"} {
			u := withRV(t, c, collection+"/a", sample(polr, ns, "a", nil, "Pod", "pass"), "a")
			u.SetResourceVersion(rv)
			r := c.do(http.MethodPut, collection+"/a", "application/json", encode(u))
			expectStatus(t, "update with resourceVersion "+rv, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
			patch := `[{"op":"replace","path":"/metadata/resourceVersion","value":"` + rv + `"}]`
			r = c.do(http.MethodPatch, collection+"/a", "application/json-patch+json", []byte(patch))
			expectStatus(t, "JSON patch with resourceVersion "+rv, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
		}
	})

	t.Run("ApplyWithWrongType", func(t *testing.T) {
		// properties is a map of strings: a string there cannot be applied. The client's mistake.
		apply := `{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"a","namespace":"` + ns +
			`"},"results":[{"policy":"p","result":"pass","properties":"not-a-map"}]}`
		r := c.do(http.MethodPatch, collection+"/a?fieldManager=test&force=true", "application/apply-patch+yaml", []byte(apply))
		if r.code < 400 || r.code >= 500 {
			t.Errorf("apply with a wrongly typed field: %d %s, want a 4xx Status", r.code, r.body)
		}
	})

	t.Run("ReadyAfterPooledConnectionsDie", func(t *testing.T) {
		// /readyz pinged an idle pooled connection that had died while PostgreSQL was up, and
		// failed until the pool noticed. It tells the database's health, not a connection's.
		conn, err := pgx.Connect(context.Background(), srv.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(),
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); err != nil {
			t.Fatal(err)
		}
		r := c.do(http.MethodGet, "/readyz?verbose=1", "", nil)
		if r.code != http.StatusOK {
			t.Errorf("/readyz after pooled connections died: %d %s", r.code, r.body)
		}
	})
}

// TestUnpagedListBound checks that a list without a limit beyond --max-unpaged-list-bytes is
// refused with a 400 that tells the client to page, and that paging still returns everything.
func TestUnpagedListBound(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, dbtest.URL(t), func(o *server.Options, _ *server.Hooks) { o.MaxUnpagedListBytes = 4000 })
	c := newRawClient(t, srv.Config)
	polr := kindNamed(t, "PolicyReport")
	const ns = "unpaged"
	collection := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	for i := range 10 {
		b := encodeObject(t, sample(polr, ns, "r"+string(rune('0'+i)), nil, "Pod", "pass"))
		if r := c.do(http.MethodPost, collection, "application/json", b); r.code != http.StatusCreated {
			t.Fatalf("create: %d %s", r.code, r.body)
		}
	}
	r := c.do(http.MethodGet, collection, "", nil)
	expectStatus(t, "unpaged list over the bound", r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	if !strings.Contains(r.status.Message, "--max-unpaged-list-bytes") || !strings.Contains(r.status.Message, "limit and continue") {
		t.Errorf("message %q does not say how to page", r.status.Message)
	}
	// A selective unpaged list under the bound still works.
	if r := c.do(http.MethodGet, collection+"?fieldSelector=metadata.name%3Dr1", "", nil); r.code != http.StatusOK {
		t.Errorf("small unpaged list: %d %s", r.code, r.body)
	}
	var got []string
	cont := ""
	for {
		r := c.do(http.MethodGet, collection+"?limit=3&continue="+url.QueryEscape(cont), "", nil)
		var list unstructured.UnstructuredList
		if err := list.UnmarshalJSON(r.body); err != nil {
			t.Fatalf("page: %d %v: %s", r.code, err, r.body)
		}
		got = append(got, names(&list)...)
		if cont = list.GetContinue(); cont == "" {
			break
		}
	}
	if len(got) != 10 {
		t.Errorf("paged list returned %d objects, want 10: %v", len(got), got)
	}
}

// equalJSON compares two values as JSON documents.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var x, y any
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// TestRequestBodyLimit: a body over --max-request-body-bytes gets 413 with a Status, one under it
// is stored, and at the default a report of 10^5 results (about 10 MB) is refused the same way.
func TestRequestBodyLimit(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, dbtest.URL(t), func(o *server.Options, _ *server.Hooks) { o.MaxRequestBodyBytes = 64 << 10 })
	c := newRawClient(t, srv.Config)
	polr := kindNamed(t, "PolicyReport")
	const ns = "body-limit"
	collection := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	withResults := func(name string, n int) []byte {
		u := sample(polr, ns, name, nil, "Pod", "pass")
		one := u.Object["results"].([]any)[0]
		results := make([]any, n)
		for i := range results {
			results[i] = one
		}
		u.Object["results"] = results
		return encodeObject(t, u)
	}
	small, large := withResults("small", 10), withResults("large", 1000)
	if len(small) >= 64<<10 || len(large) <= 64<<10 {
		t.Fatalf("bodies of %d and %d bytes do not straddle the limit", len(small), len(large))
	}
	if r := c.do(http.MethodPost, collection, "application/json", small); r.code != http.StatusCreated {
		t.Errorf("body under the limit: %d %s", r.code, r.body)
	}
	r := c.do(http.MethodPost, collection, "application/json", large)
	expectStatus(t, "body over the limit", r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "")

	dflt := startServer(t)
	c = newRawClient(t, dflt.Config)
	r = c.do(http.MethodPost, collection, "application/json", withResults("huge", 100_000))
	expectStatus(t, "10^5 results at the default limit", r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "")
}
