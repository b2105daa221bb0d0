package integration

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

// barrageRequest is one hand-made request of the barrage and the answer class it must get.
type barrageRequest struct {
	what, method, path, contentType string
	body                            []byte
	// want is the expected HTTP code; 0 accepts any answer below 500 (the case is about never
	// failing, not about one exact code).
	want int
}

// TestBarrage sends every kind of bad input a client can produce (issue "Production", item 2:
// malformed JSON, YAML and protobuf bodies, wrong apiVersion/kind, invalid names and labels,
// unknown fields, garbage selectors, continue tokens, resourceVersions, limits and timeouts, deep
// or huge properties) to every served kind, and checks that none gets a 5xx, that every error is
// a Kubernetes Status with a message, that none takes longer than a few seconds, and that nothing
// but the valid objects is left behind. TestDefectRegressions and TestBadInput check exact codes
// for the cases an operator reported; this test is the net under all of them.
func TestBarrage(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newRawClient(t, srv.Config)
	// A request that spins is a defect of its own (see HugeLimit in TestDefectRegressions).
	hc := *c.http
	hc.Timeout = 30 * time.Second
	c.http = &hc

	const ns = "barrage"
	for _, k := range reports.All() {
		t.Run(k.Kind, func(t *testing.T) {
			c := *c
			c.t = t
			collection := collectionPath(k, ns)
			// One valid object, so reads, patches and continue tokens have something to act on.
			valid := sample(k, ns, "valid", map[string]string{"app": "web"}, "Pod", "pass")
			if r := c.do(http.MethodPost, collection, "application/json", encodeObject(t, valid)); r.code != http.StatusCreated {
				t.Fatalf("create the valid object: %d %s", r.code, r.body)
			}
			kept := map[string]bool{"valid": true}
			for _, req := range barrageRequests(t, k, collection) {
				start := time.Now()
				r := c.do(req.method, req.path, req.contentType, req.body)
				took := time.Since(start)
				if req.method == http.MethodPost && r.code == http.StatusCreated && !strings.Contains(req.path, "dryRun") {
					// Accepted as it is valid (or as lenient decoding reads it, as with the CRDs).
					var created unstructured.Unstructured
					if err := created.UnmarshalJSON(r.body); err != nil {
						t.Fatalf("%s: 201 with an unreadable object: %v", req.what, err)
					}
					kept[created.GetName()] = true
					t.Logf("%s: accepted as %s", req.what, created.GetName())
				}
				switch {
				case r.code >= 500:
					t.Errorf("%s (%s %s): %d %s", req.what, req.method, req.path, r.code, r.body)
				case req.want != 0 && r.code != req.want:
					t.Errorf("%s: got %d, want %d: %s", req.what, r.code, req.want, r.body)
				case r.code >= 400 && r.status.Message == "":
					t.Errorf("%s: %d without a message: %s", req.what, r.code, r.body)
				case took > 10*time.Second:
					t.Errorf("%s: answered after %s", req.what, took)
				}
			}
			// Nothing but the accepted objects is left.
			r := c.do(http.MethodGet, collection, "", nil)
			var list unstructured.UnstructuredList
			if err := list.UnmarshalJSON(r.body); err != nil {
				t.Fatalf("list after the barrage: %d %v: %s", r.code, err, r.body)
			}
			if got, want := strings.Join(names(&list), ","), strings.Join(slices.Sorted(maps.Keys(kept)), ","); got != want {
				t.Errorf("objects after the barrage: %s, want %s", got, want)
			}
		})
	}
}

// collectionPath is the URL path of kind's collection, in namespace for namespaced kinds.
func collectionPath(k reports.Kind, namespace string) string {
	p := "/apis/" + k.GroupVersion.String()
	if k.Namespaced {
		p += "/namespaces/" + namespace
	}
	return p + "/" + k.Resource
}

// barrageRequests are the requests of the barrage for kind, whose collection is at collection
// and holds the object "valid".
func barrageRequests(t *testing.T, k reports.Kind, collection string) []barrageRequest {
	t.Helper()
	const (
		jsonType  = "application/json"
		yamlType  = "application/yaml"
		protoType = "application/vnd.kubernetes.protobuf"
		mergeType = "application/merge-patch+json"
	)
	n := 0
	object := func(mutate func(u *unstructured.Unstructured)) []byte {
		n++
		u := sample(k, "barrage", fmt.Sprintf("bad-%d", n), nil, "Pod", "fail")
		mutate(u)
		return encodeObject(t, u)
	}
	var reqs []barrageRequest
	post := func(what, contentType string, body []byte, want int) {
		reqs = append(reqs, barrageRequest{what: "create: " + what, method: http.MethodPost, path: collection, contentType: contentType, body: body, want: want})
	}
	get := func(what, query string, want int) {
		reqs = append(reqs, barrageRequest{what: "list: " + what, method: http.MethodGet, path: collection + "?" + query, want: want})
	}

	// Bodies that are not an object of this kind.
	for what, body := range map[string]string{
		"truncated JSON":       `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":{"name":"bad"`,
		"JSON array":           `[]`,
		"JSON null":            `null`,
		"JSON number":          `42`,
		"empty body":           ``,
		"invalid UTF-8":        "{\"apiVersion\":\"" + k.GroupVersion.String() + "\",\"kind\":\"" + k.Kind + "\",\"metadata\":{\"name\":\"\xff\xfe\"}}",
		"duplicate keys":       `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":{"name":"bad","name":"bad2"}}`,
		"deep nesting":         `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":{"name":"bad"},"x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`,
		"no kind":              `{"apiVersion":"` + k.GroupVersion.String() + `","metadata":{"name":"bad"}}`,
		"no apiVersion":        `{"kind":"` + k.Kind + `","metadata":{"name":"bad"}}`,
		"other group":          `{"apiVersion":"apps/v1","kind":"` + k.Kind + `","metadata":{"name":"bad"}}`,
		"unknown version":      `{"apiVersion":"` + k.GroupVersion.Group + `/v9","kind":"` + k.Kind + `","metadata":{"name":"bad"}}`,
		"core kind":            `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad"}}`,
		"metadata not object":  `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":"bad"}`,
		"results not an array": `{"apiVersion":"` + k.GroupVersion.String() + `","kind":"` + k.Kind + `","metadata":{"name":"bad"},"results":{"a":1}}`,
	} {
		post(what, jsonType, []byte(body), 0)
	}
	for what, body := range map[string]string{
		"malformed YAML": "apiVersion: " + k.GroupVersion.String() + "\nkind: " + k.Kind + "\nmetadata:\n\tname: bad\n  : :",
		"YAML list":      "- a\n- b\n",
		"YAML anchors": "apiVersion: " + k.GroupVersion.String() + "\nkind: " + k.Kind + "\nmetadata: {name: bad}\n" +
			"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
			"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n",
		"YAML of another kind": "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\n",
	} {
		post(what, yamlType, []byte(body), 0)
	}
	// Report kinds have no protobuf encoding: a protobuf body is a 400 that says so (the CRD path
	// answers 415; both are the client's error).
	post("protobuf body", protoType, []byte("k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x00"), http.StatusBadRequest)
	post("protobuf garbage", protoType, []byte{0xff, 0x00, 0x13, 0x37}, http.StatusBadRequest)
	post("unknown media type", "text/plain", []byte("hello"), http.StatusUnsupportedMediaType)

	// Objects of this kind that fail validation.
	for what, mutate := range map[string]func(u *unstructured.Unstructured){
		"name too long":     func(u *unstructured.Unstructured) { u.SetName(strings.Repeat("a", 254)) },
		"name with slash":   func(u *unstructured.Unstructured) { u.SetName("a/b") },
		"name upper case":   func(u *unstructured.Unstructured) { u.SetName("Bad") },
		"no name":           func(u *unstructured.Unstructured) { u.SetName("") },
		"label key invalid": func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"a b": "c"}) },
		"label value too long": func(u *unstructured.Unstructured) {
			u.SetLabels(map[string]string{"a": strings.Repeat("v", 64)})
		},
		"label value invalid": func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"a": "-x-"}) },
		"annotations too big": func(u *unstructured.Unstructured) {
			u.SetAnnotations(map[string]string{"big": strings.Repeat("x", 300<<10)})
		},
		"finalizer invalid":         func(u *unstructured.Unstructured) { u.SetFinalizers([]string{"not a finalizer"}) },
		"resourceVersion on create": func(u *unstructured.Unstructured) { u.SetResourceVersion("42") },
		"properties of wrong type": func(u *unstructured.Unstructured) {
			setResultField(t, k, u, "properties", map[string]any{"deep": map[string]any{"deeper": []any{int64(1), int64(2)}}})
		},
		"result not in enum":   func(u *unstructured.Unstructured) { setResultField(t, k, u, "result", "maybe") },
		"summary negative":     func(u *unstructured.Unstructured) { setContent(t, k, u, map[string]any{"pass": int64(-1)}, "summary") },
		"summary not a number": func(u *unstructured.Unstructured) { setContent(t, k, u, map[string]any{"pass": "many"}, "summary") },
		"summary overflow":     func(u *unstructured.Unstructured) { setContent(t, k, u, map[string]any{"pass": 1e300}, "summary") },
	} {
		post(what, jsonType, object(mutate), 0)
	}
	// Unknown fields are refused under Strict validation, at any depth.
	strict := object(func(u *unstructured.Unstructured) { setResultField(t, k, u, "bogus", "x") })
	reqs = append(reqs, barrageRequest{what: "create: nested unknown field, Strict", method: http.MethodPost,
		path: collection + "?fieldValidation=Strict", contentType: jsonType, body: strict, want: http.StatusBadRequest})
	reqs = append(reqs, barrageRequest{what: "create: unknown fieldValidation", method: http.MethodPost,
		path: collection + "?fieldValidation=Sometimes", contentType: jsonType, body: object(func(*unstructured.Unstructured) {}), want: http.StatusUnprocessableEntity})
	reqs = append(reqs, barrageRequest{what: "create: unknown dryRun", method: http.MethodPost,
		path: collection + "?dryRun=Maybe", contentType: jsonType, body: object(func(*unstructured.Unstructured) {}), want: http.StatusUnprocessableEntity})

	// Huge properties are stored (they are data), but not here: the test keeps only "valid". A
	// dry run goes through decoding, defaulting and validation and writes nothing.
	huge := object(func(u *unstructured.Unstructured) {
		props := map[string]any{}
		for i := range 2000 {
			props[fmt.Sprintf("key-%04d", i)] = strings.Repeat("v", 512)
		}
		setResultField(t, k, u, "properties", props)
	})
	reqs = append(reqs, barrageRequest{what: "create: huge properties, dry run", method: http.MethodPost,
		path: collection + "?dryRun=All", contentType: jsonType, body: huge, want: http.StatusCreated})

	// Patches that cannot apply.
	for what, p := range map[string]struct {
		contentType, body string
	}{
		"merge patch not JSON":             {mergeType, `{"metadata":`},
		"merge patch changing kind":        {mergeType, `{"kind":"Secret"}`},
		"merge patch bad labels":           {mergeType, `{"metadata":{"labels":{"a b":"c"}}}`},
		"merge patch resourceVersion abc":  {mergeType, `{"metadata":{"resourceVersion":"abc"}}`},
		"merge patch resourceVersion -1":   {mergeType, `{"metadata":{"resourceVersion":"-1"}}`},
		"merge patch resourceVersion huge": {mergeType, `{"metadata":{"resourceVersion":"99999999999999999999999"}}`},
		"JSON patch not a list":            {"application/json-patch+json", `{"op":"add"}`},
		"JSON patch unknown op":            {"application/json-patch+json", `[{"op":"frobnicate","path":"/x"}]`},
		"JSON patch missing path":          {"application/json-patch+json", `[{"op":"remove","path":"/nope/nope"}]`},
		"JSON patch failed test":           {"application/json-patch+json", `[{"op":"test","path":"/metadata/name","value":"other"}]`},
		"apply without fieldManager":       {"application/apply-patch+yaml", "apiVersion: " + k.GroupVersion.String() + "\nkind: " + k.Kind + "\nmetadata: {name: valid}\n"},
		"apply malformed YAML":             {"application/apply-patch+yaml", "metadata: {name: valid\n\t:"},
		"apply of another name":            {"application/apply-patch+yaml", "apiVersion: " + k.GroupVersion.String() + "\nkind: " + k.Kind + "\nmetadata: {name: other}\n"},
		"unknown patch type":               {"application/frobnicate-patch+json", `{}`},
	} {
		path := collection + "/valid"
		if strings.HasPrefix(what, "apply") && what != "apply without fieldManager" {
			path += "?fieldManager=barrage"
		}
		reqs = append(reqs, barrageRequest{what: "patch: " + what, method: http.MethodPatch, path: path, contentType: p.contentType, body: []byte(p.body)})
	}

	// Garbage in the query string of lists, watches and deletecollection.
	goodToken := wellFormedToken()
	for what, query := range map[string]string{
		"label selector garbage":          "labelSelector=" + url.QueryEscape("====="),
		"label selector open set":         "labelSelector=" + url.QueryEscape("a in ("),
		"label selector bare not":         "labelSelector=" + url.QueryEscape("!"),
		"label selector long":             "labelSelector=" + url.QueryEscape("a="+strings.Repeat("b", 70_000)),
		"label selector NUL":              "labelSelector=" + url.QueryEscape("a=b\x00c"),
		"field selector unknown":          "fieldSelector=" + url.QueryEscape("spec.nothing=1"),
		"field selector garbage":          "fieldSelector=" + url.QueryEscape("metadata.name=="),
		"field selector set":              "fieldSelector=" + url.QueryEscape("metadata.name in (a)"),
		"field selector invalid UTF-8":    "fieldSelector=" + url.QueryEscape("metadata.name=\xff"),
		"continue garbage":                "limit=1&continue=" + url.QueryEscape("not a token"),
		"continue bad base64 JSON":        "limit=1&continue=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":"meta.k8s.io/v1","rv":-5,"start":"\u0000"}`)),
		"continue tampered":               "limit=1&continue=" + url.QueryEscape(tamper(goodToken)),
		"continue with resourceVersion":   "limit=1&resourceVersion=1&continue=" + url.QueryEscape(goodToken),
		"resourceVersion abc":             "resourceVersion=abc",
		"resourceVersion -1":              "resourceVersion=-1",
		"resourceVersion overflow":        "resourceVersion=9223372036854775808&resourceVersionMatch=Exact",
		"resourceVersionMatch alone":      "resourceVersionMatch=Exact",
		"resourceVersionMatch bogus":      "resourceVersion=1&resourceVersionMatch=Sometimes",
		"limit -1":                        "limit=-1",
		"limit abc":                       "limit=abc",
		"limit 1e3":                       "limit=1e3",
		"limit overflow":                  "limit=99999999999999999999999",
		"timeoutSeconds abc":              "watch=1&timeoutSeconds=abc",
		"timeoutSeconds -1":               "watch=1&timeoutSeconds=-1&resourceVersion=abc",
		"sendInitialEvents without watch": "sendInitialEvents=true",
		"sendInitialEvents bad match":     "watch=1&sendInitialEvents=true&resourceVersionMatch=Exact",
		"watch bad resourceVersion":       "watch=1&timeoutSeconds=1&resourceVersion=abc",
		"watch overflow resourceVersion":  "watch=1&timeoutSeconds=1&resourceVersion=9223372036854775808",
		"watch future resourceVersion":    "watch=1&timeoutSeconds=1&resourceVersion=9223372036854775000",
		"as unknown":                      "as=Nothing",
	} {
		get(what, query, 0)
		if !strings.Contains(query, "watch=") {
			reqs = append(reqs, barrageRequest{what: "deletecollection: " + what, method: http.MethodDelete, path: collection + "?" + query + "&dryRun=All"})
		}
	}
	// Odd names in the path.
	for what, name := range map[string]string{
		"name invalid UTF-8": "%FF%FE",
		"name NUL":           "a%00b",
		"name too long":      strings.Repeat("a", 300),
		"name dot":           "..",
	} {
		reqs = append(reqs, barrageRequest{what: "get: " + what, method: http.MethodGet, path: collection + "/" + name})
		reqs = append(reqs, barrageRequest{what: "delete: " + what, method: http.MethodDelete, path: collection + "/" + name})
	}
	// Deletes whose options cannot hold. With a body, the options come from the body alone (the
	// query is ignored, as in every Kubernetes API), so the body asks for the dry run.
	const dryRun = `{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],`
	for what, body := range map[string]string{
		"delete options garbage":   `{"kind":"DeleteOptions"`,
		"delete precondition uid":  dryRun + `"preconditions":{"uid":"nope"}}`,
		"delete precondition rv":   dryRun + `"preconditions":{"resourceVersion":"abc"}}`,
		"delete propagation bogus": dryRun + `"propagationPolicy":"Sideways"}`,
		"delete grace negative":    dryRun + `"gracePeriodSeconds":-5}`,
		"delete dryRun bogus":      `{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["Maybe"]}`,
	} {
		reqs = append(reqs, barrageRequest{what: what, method: http.MethodDelete, path: collection + "/valid", contentType: jsonType, body: []byte(body)})
	}
	return reqs
}

// setContent sets a content field (under spec for the ephemeral kinds) of u.
func setContent(t *testing.T, k reports.Kind, u *unstructured.Unstructured, value any, field ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, value, contentPath(k, field...)...); err != nil {
		t.Fatal(err)
	}
}

// setResultField sets field of u's first result.
func setResultField(t *testing.T, k reports.Kind, u *unstructured.Unstructured, field string, value any) {
	t.Helper()
	results, _, err := unstructured.NestedSlice(u.Object, contentPath(k, "results")...)
	if err != nil || len(results) == 0 {
		t.Fatalf("no results in the sample: %v", err)
	}
	results[0].(map[string]any)[field] = value
	setContent(t, k, u, results, "results")
}

// wellFormedToken is a continue token of the form the server issues (storage.EncodeContinue's),
// made by hand: the collection holds one object, so a real list issues none.
func wellFormedToken() string {
	return base64.RawURLEncoding.EncodeToString([]byte(`{"v":"meta.k8s.io/v1","rv":1,"start":"valid\u0000"}`))
}

// tamper flips one character in the middle of a token.
func tamper(token string) string {
	b := []byte(token)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestHugeReport stores, reads, lists, watches and deletes one report of 10^5 results (accepted
// under a raised body limit; the default refuses it with a 413, see TestRequestBodyLimit).
//
// Under the race detector it has 2.5*10^4: the write handlers end every create, update and patch
// after at most 34 s whatever ?timeout= says (k8s.io/apiserver's requestTimeoutUpperBound, as in
// kube-apiserver), and a patch of 10 MB (read, decoded, patched, validated, encoded and written)
// took longer than that under the race detector on a busy machine.
func TestHugeReport(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, dbtest.URL(t), func(o *server.Options, _ *server.Hooks) {
		o.MaxRequestBodyBytes = 64 << 20
		// Each request moves ~10 MB of JSON through decoding, PostgreSQL and encoding: under the
		// race detector on a busy machine that takes longer than the default minute.
		o.RequestTimeout = 5 * time.Minute
	})
	c := newRawClient(t, srv.Config)
	polr := kindNamed(t, "PolicyReport")
	const ns = "huge"
	collection := collectionPath(polr, ns)
	u := sample(polr, ns, "huge", nil, "Pod", "fail")
	one := u.Object["results"].([]any)[0].(map[string]any)
	n := 100_000
	if raceDetector {
		n = 25_000
	}
	results := make([]any, n)
	for i := range results {
		r := make(map[string]any, len(one)+1)
		for k, v := range one {
			r[k] = v
		}
		r["rule"] = fmt.Sprintf("rule-%06d", i)
		results[i] = r
	}
	u.Object["results"] = results
	u.Object["summary"] = map[string]any{"fail": int64(len(results))}
	if r := c.do(http.MethodPost, collection, "application/json", encodeObject(t, u)); r.code != http.StatusCreated {
		t.Fatalf("create: %d %.300s", r.code, r.body)
	}
	r := c.do(http.MethodGet, collection+"/huge", "", nil)
	var got unstructured.Unstructured
	if err := got.UnmarshalJSON(r.body); err != nil {
		t.Fatalf("get: %d %v", r.code, err)
	}
	if n := len(got.Object["results"].([]any)); n != len(results) {
		t.Errorf("read back %d results, want %d", n, len(results))
	}
	r = c.do(http.MethodGet, collection+"?limit=1", "", nil)
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(r.body); err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %d %v (%d items)", r.code, err, len(list.Items))
	}
	r = c.do(http.MethodPatch, collection+"/huge", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"patched":"yes"}}}`))
	if r.code != http.StatusOK {
		t.Errorf("merge patch: %d %.300s", r.code, r.body)
	}
	if r = c.do(http.MethodDelete, collection+"/huge", "", nil); r.code != http.StatusOK {
		t.Errorf("delete: %d %.300s", r.code, r.body)
	}
}
