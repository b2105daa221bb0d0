package integration

import (
	"context"
	"io"
	"net/http"
	"testing"

	"k8s.io/client-go/rest"
)

// getter GETs paths of a test server with an Accept header and returns the body of a 200.
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
