package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// response is an HTTP answer of the server, with the Status it carried when it failed.
type response struct {
	code        int
	contentType string
	body        []byte
	status      metav1.Status
	warnings    []string
	retryAfter  string
}

// rawClient sends hand-made requests, so bodies that client-go would refuse to build can be tested.
type rawClient struct {
	t    *testing.T
	host string
	http *http.Client
}

func newRawClient(t *testing.T, cfg *rest.Config) *rawClient {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, host: cfg.Host, http: hc}
}

func (c *rawClient) do(method, path, contentType string, body []byte) response {
	c.t.Helper()
	r := c.send(method, path, "application/json", contentType, body)
	if r.code >= 400 {
		if err := json.Unmarshal(r.body, &r.status); err != nil || r.status.Kind != "Status" {
			c.t.Errorf("%s %s: %d answer is not a metav1.Status: %s", method, path, r.code, r.body)
		}
	}
	return r
}

// send sends a request that accepts accept and returns the answer as it came (do also reads the
// Status of a JSON error answer).
func (c *rawClient) send(method, path, accept, contentType string, body []byte) response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, c.host+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	r := response{code: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		warnings: resp.Header.Values("Warning"), retryAfter: resp.Header.Get("Retry-After")}
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return r
}

// expectStatus checks an error answer: HTTP code, Status code and reason, and, when given, that a
// cause names field.
func expectStatus(t *testing.T, what string, r response, code int, reason metav1.StatusReason, field string) {
	t.Helper()
	if r.code != code || r.status.Code != int32(code) || r.status.Reason != reason || r.status.Status != metav1.StatusFailure {
		t.Errorf("%s: got HTTP %d, Status %d %q %q (%s); want %d %q", what, r.code, r.status.Code, r.status.Status,
			r.status.Reason, r.status.Message, code, reason)
		return
	}
	if field == "" {
		return
	}
	if r.status.Details != nil {
		for _, c := range r.status.Details.Causes {
			if c.Field == field {
				return
			}
		}
	}
	t.Errorf("%s: no cause names field %q: %+v", what, field, r.status.Details)
}

// TestBadInput checks that malformed, invalid, conflicting and missing-object requests get the
// answer a Kubernetes API gives (a metav1.Status with the right code and reason) and that none of
// them leaves anything behind.
func TestBadInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newRawClient(t, srv.Config)

	polr := kindNamed(t, "PolicyReport")
	const ns = "bad-input"
	collection := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	encode := func(u *unstructured.Unstructured) []byte { return encodeObject(t, u) }

	// Malformed JSON.
	r := c.do(http.MethodPost, collection, "application/json", []byte(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"broken"`))
	expectStatus(t, "malformed JSON", r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")

	// Invalid name.
	r = c.do(http.MethodPost, collection, "application/json", encode(sample(polr, ns, "Not_A_DNS_Name", nil, "Pod", "pass")))
	expectStatus(t, "invalid name", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "metadata.name")

	// Unknown field: Strict rejects it (400, like every Kubernetes API: it is a decoding error),
	// Warn accepts the object and warns, and the default (Warn for clients that say nothing
	// since 1.27) drops it.
	unknown := sample(polr, ns, "with-unknown-field", nil, "Pod", "pass")
	unknown.Object["spec"] = map[string]any{"foo": "bar"}
	r = c.do(http.MethodPost, collection+"?fieldValidation=Strict", "application/json", encode(unknown))
	expectStatus(t, "unknown field, Strict", r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	if !strings.Contains(r.status.Message, `unknown field "spec"`) {
		t.Errorf("strict decoding message %q does not name the unknown field", r.status.Message)
	}
	r = c.do(http.MethodPost, collection+"?fieldValidation=Warn", "application/json", encode(unknown))
	if r.code != http.StatusCreated {
		t.Errorf("unknown field, Warn: got %d %s, want 201", r.code, r.body)
	}
	if w := strings.Join(r.warnings, ";"); !strings.Contains(w, "unknown field") || !strings.Contains(w, "spec") {
		t.Errorf("unknown field, Warn: warnings %q do not name the field", r.warnings)
	}
	if strings.Contains(string(r.body), `"foo"`) {
		t.Errorf("unknown field was stored: %s", r.body)
	}

	// Invalid enum value in a result.
	badEnum := sample(polr, ns, "bad-result", nil, "Pod", "pass")
	badEnum.Object["results"].([]any)[0].(map[string]any)["result"] = "maybe"
	r = c.do(http.MethodPost, collection, "application/json", encode(badEnum))
	expectStatus(t, "invalid result enum", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "results[0].result")
	if !strings.Contains(r.status.Message, "results[0].result") {
		t.Errorf("invalid enum message %q does not name the field", r.status.Message)
	}
	// The same check applies to updates.
	r = c.do(http.MethodPut, collection+"/with-unknown-field", "application/json", encode(withRV(t, c, collection+"/with-unknown-field", badEnum, "with-unknown-field")))
	expectStatus(t, "invalid result enum on update", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "results[0].result")

	// A result without the required policy key is refused, naming the field; an empty policy,
	// which real producers send and the CRD accepts, is stored as is.
	noPolicy := sample(polr, ns, "no-policy", nil, "Pod", "pass")
	delete(noPolicy.Object["results"].([]any)[0].(map[string]any), "policy")
	r = c.do(http.MethodPost, collection, "application/json", encode(noPolicy))
	expectStatus(t, "missing results[].policy", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "results[0].policy")
	emptyPolicy := sample(polr, ns, "empty-policy", nil, "Pod", "pass")
	emptyPolicy.Object["results"].([]any)[0].(map[string]any)["policy"] = ""
	r = c.do(http.MethodPost, collection+"?dryRun=All", "application/json", encode(emptyPolicy))
	if r.code != http.StatusCreated || !strings.Contains(string(r.body), `"policy":""`) {
		t.Errorf("empty results[].policy: got %d %s, want 201 with the empty policy kept", r.code, r.body)
	}

	// Stale resourceVersion.
	base := sample(polr, ns, "base", nil, "Pod", "pass")
	r = c.do(http.MethodPost, collection, "application/json", encode(base))
	if r.code != http.StatusCreated {
		t.Fatalf("create base: %d %s", r.code, r.body)
	}
	var created unstructured.Unstructured
	if err := json.Unmarshal(r.body, &created.Object); err != nil {
		t.Fatal(err)
	}
	first := created.GetResourceVersion()
	created.SetLabels(map[string]string{"v": "2"})
	if r = c.do(http.MethodPut, collection+"/base", "application/json", encode(&created)); r.code != http.StatusOK {
		t.Fatalf("update base: %d %s", r.code, r.body)
	}
	created.SetResourceVersion(first)
	created.SetLabels(map[string]string{"v": "stale"})
	r = c.do(http.MethodPut, collection+"/base", "application/json", encode(&created))
	expectStatus(t, "stale resourceVersion", r, http.StatusConflict, metav1.StatusReasonConflict, "")

	// An update without resourceVersion: 422 naming it, as with the CRDs (no blind overwrite).
	blind := sample(polr, ns, "base", map[string]string{"v": "blind"}, "Pod", "pass")
	r = c.do(http.MethodPut, collection+"/base", "application/json", encode(blind))
	expectStatus(t, "update without resourceVersion", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "metadata.resourceVersion")

	// Missing objects: get, update, patch and delete.
	missing := collection + "/does-not-exist"
	for _, req := range []struct {
		method, contentType string
		body                []byte
	}{
		{http.MethodGet, "", nil},
		{http.MethodPut, "application/json", encode(sample(polr, ns, "does-not-exist", nil, "Pod", "pass"))},
		{http.MethodPatch, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"a":"b"}}}`)},
		{http.MethodDelete, "", nil},
	} {
		r = c.do(req.method, missing, req.contentType, req.body)
		expectStatus(t, req.method+" missing object", r, http.StatusNotFound, metav1.StatusReasonNotFound, "")
		if d := r.status.Details; d == nil || d.Name != "does-not-exist" || d.Group != "wgpolicyk8s.io" || d.Kind != "policyreports" {
			t.Errorf("%s missing object: details %+v, want name does-not-exist, group wgpolicyk8s.io, kind policyreports", req.method, d)
		}
	}

	// Anonymous requests are refused.
	anon, err := http.NewRequest(http.MethodGet, srv.Config.Host+collection, nil)
	if err != nil {
		t.Fatal(err)
	}
	anonClient, err := rest.HTTPClientFor(&rest.Config{Host: srv.Config.Host, TLSClientConfig: srv.Config.TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := anonClient.Do(anon)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous request: got %d, want 401", resp.StatusCode)
	}

	// Nothing half-written: only the objects that were accepted exist.
	r = c.do(http.MethodGet, collection, "", nil)
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(r.body); err != nil {
		t.Fatalf("list: %v: %s", err, r.body)
	}
	if got := names(&list); strings.Join(got, ",") != "base,with-unknown-field" {
		t.Errorf("objects after bad input: %v, want [base with-unknown-field]", got)
	}
}

// TestBadInputOtherKind sends each kind's resource a body of the other kind of its group (a
// ClusterPolicyReport to policyreports, a PolicyReport to clusterpolicyreports, ...), created,
// replaced and patched into: create and update get what kube-apiserver gives for a CRD, 422
// Invalid on `kind` ("must be PolicyReport"), a patch a 422 too, and nothing is stored or changed.
func TestBadInputOtherKind(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newRawClient(t, srv.Config)
	const ns = "other-kind"
	all := reports.All()
	for _, k := range all {
		other := otherKindOfGroup(t, k, all)
		collection := "/apis/" + k.GroupVersion.String() + "/"
		if k.Namespaced {
			collection += "namespaces/" + ns + "/"
		}
		collection += k.Resource
		want := fmt.Sprintf(`kind: Invalid value: %q: must be %s`, other.Kind, k.Kind)
		check := func(what string, r response) {
			t.Helper()
			expectStatus(t, k.Kind+": "+what, r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "kind")
			if !strings.Contains(r.status.Message, want) {
				t.Errorf("%s: %s: message %q does not say %q", k.Kind, what, r.status.Message, want)
			}
			// As kube-apiserver's, the Status names the kind sent.
			if d := r.status.Details; d == nil || d.Kind != other.Kind || d.Group != k.GroupVersion.Group {
				t.Errorf("%s: %s: details %+v, want kind %s of group %s", k.Kind, what, d, other.Kind, k.GroupVersion.Group)
			}
		}

		wrong := sample(k, ns, "wrong-kind", nil, "Pod", "pass")
		wrong.SetKind(other.Kind)
		check("create", c.do(http.MethodPost, collection, "application/json", encodeObject(t, wrong)))
		if r := c.do(http.MethodGet, collection+"/wrong-kind", "", nil); r.code != http.StatusNotFound {
			t.Errorf("%s: the report sent as %s was stored: get answers %d", k.Kind, other.Kind, r.code)
		}

		base := sample(k, ns, "base", nil, "Pod", "pass")
		if r := c.do(http.MethodPost, collection, "application/json", encodeObject(t, base)); r.code != http.StatusCreated {
			t.Fatalf("%s: create base: %d %s", k.Kind, r.code, r.body)
		}
		replaced := withRV(t, c, collection+"/base", sample(k, ns, "base", nil, "Pod", "fail"), "base")
		replaced.SetKind(other.Kind)
		check("update", c.do(http.MethodPut, collection+"/base", "application/json", encodeObject(t, replaced)))
		// A patch that changes the kind is refused too, on the patched object as a whole (see
		// docs/design.md, "Where we answer differently from the report CRDs").
		r := c.do(http.MethodPatch, collection+"/base", "application/merge-patch+json",
			[]byte(`{"kind":"`+other.Kind+`","metadata":{"labels":{"patched":"yes"}}}`))
		expectStatus(t, k.Kind+": merge patch", r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "patch")
		r = c.do(http.MethodGet, collection+"/base", "", nil)
		var got unstructured.Unstructured
		if err := got.UnmarshalJSON(r.body); err != nil {
			t.Fatalf("%s: get base: %v: %s", k.Kind, err, r.body)
		}
		if got.GetKind() != k.Kind || got.GetLabels()["patched"] != "" || got.GetGeneration() != 1 {
			t.Errorf("%s: base changed by refused requests: kind %s, labels %v, generation %d", k.Kind, got.GetKind(), got.GetLabels(), got.GetGeneration())
		}
	}
}

// otherKindOfGroup is the kind of k's group version with the other scope (ClusterPolicyReport for
// PolicyReport and back).
func otherKindOfGroup(t *testing.T, k reports.Kind, all []reports.Kind) reports.Kind {
	t.Helper()
	for _, o := range all {
		if o.GroupVersion == k.GroupVersion && o.Kind != k.Kind {
			return o
		}
	}
	t.Fatalf("no other kind in %s", k.GroupVersion)
	return reports.Kind{}
}

// encodeObject is u as a JSON request body.
func encodeObject(t testing.TB, u *unstructured.Unstructured) []byte {
	t.Helper()
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withRV returns obj with the name and current resourceVersion of the object at path.
func withRV(t *testing.T, c *rawClient, path string, obj *unstructured.Unstructured, name string) *unstructured.Unstructured {
	t.Helper()
	r := c.do(http.MethodGet, path, "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("get %s: %d %s", path, r.code, r.body)
	}
	var cur unstructured.Unstructured
	if err := json.Unmarshal(r.body, &cur.Object); err != nil {
		t.Fatal(err)
	}
	out := obj.DeepCopy()
	out.SetName(name)
	out.SetResourceVersion(cur.GetResourceVersion())
	return out
}
