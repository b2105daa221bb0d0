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
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, g.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s (%s): %d %v %s", path, accept, resp.StatusCode, err, body)
	}
	return body
}

// post POSTs body (JSON) to path with an Accept header and returns the body of a 201.
func (g getter) post(t *testing.T, path, accept string, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(g.ctx, http.MethodPost, g.host+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s (%s): %d %v %s", path, accept, resp.StatusCode, err, answer)
	}
	return answer
}
