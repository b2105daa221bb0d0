package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"k8s.io/client-go/rest"
)

// getter GETs (and POSTs to) paths of a test server with an Accept header and returns the
// body of a 200 (201).
type getter struct {
	ctx  context.Context
	hc   *http.Client
	host string
}

func newGetter(t *testing.T, ctx context.Context, cfg *rest.Config) getter {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return getter{ctx: ctx, hc: hc, host: cfg.Host}
}

func (g getter) get(t *testing.T, path, accept string) []byte {
	t.Helper()
	return g.do(t, http.MethodGet, path, accept, nil, http.StatusOK)
}

// post POSTs body (JSON) to path with an Accept header and returns the body of a 201.
func (g getter) post(t *testing.T, path, accept string, body []byte) []byte {
	t.Helper()
	return g.do(t, http.MethodPost, path, accept, body, http.StatusCreated)
}

// do sends a request with an Accept header (and body, as JSON, unless nil) and returns the body of
// the answer, failing t unless its status is want.
func (g getter) do(t *testing.T, method, path, accept string, body []byte, want int) []byte {
	t.Helper()
	var content io.Reader
	if body != nil {
		content = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(g.ctx, method, g.host+path, content)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		t.Fatalf("%s %s (%s): %d %v %s", method, path, accept, resp.StatusCode, err, answer)
	}
	return answer
}
