package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// TestListsCompressed: a list response larger than the API server's compression threshold (128
// KB) is gzip-compressed for a client that accepts gzip, as kube-apiserver compresses it, whichever
// way it is encoded: the stored JSON of full lists (package storedjson), the streaming encoder of
// metadata-only lists, the one-piece encoding of pretty output; and decompressed it is the
// response a client that does not accept gzip gets. A small list is sent as it is.
func TestListsCompressed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	res := client.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports"))
	// 320 reports: ~2.4 MB of full objects, ~160 KB of their metadata as JSON.
	createConcurrently(t, 8, 320, func(i int) error {
		u := benchPolicyReport(i)
		u.SetNamespace("compressed")
		_, err := res.Namespace("compressed").Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	g := newGetter(t, ctx, srv.Config)
	const path = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/compressed/policyreports"
	get := func(t *testing.T, url, accept, encoding string) (body []byte, contentEncoding string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.host+url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		// Set explicitly, the transport leaves the response as it comes.
		req.Header.Set("Accept-Encoding", encoding)
		resp, err := g.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s (%s): %d %v %.300s", url, accept, resp.StatusCode, err, body)
		}
		return body, resp.Header.Get("Content-Encoding")
	}
	for _, tc := range []struct {
		name, query, accept string
		compressed          bool
	}{
		{"full", "?limit=500", "application/json", true},
		{"full, pretty", "?limit=500&pretty=true", "application/json", true},
		{"metadata", "?limit=500", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", true},
		{"full, one item", "?limit=1", "application/json", false},
		{"metadata, ten items", "?limit=10", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, enc := get(t, path+tc.query, tc.accept, "identity")
			if enc != "" {
				t.Fatalf("Content-Encoding %q for a client that accepts none", enc)
			}
			body, enc := get(t, path+tc.query, tc.accept, "gzip")
			if want := map[bool]string{true: "gzip", false: ""}[tc.compressed]; enc != want {
				t.Fatalf("Content-Encoding %q for %d bytes, want %q", enc, len(plain), want)
			}
			if enc == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, plain) {
				t.Fatalf("decompressed response (%d bytes) differs from the plain one (%d bytes)", len(body), len(plain))
			}
			if tc.compressed && len(plain) <= 128<<10 || !tc.compressed && len(plain) > 128<<10 {
				t.Fatalf("the test's premise: a %d-byte response", len(plain))
			}
		})
	}
}
