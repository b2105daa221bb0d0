package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"

	fastgzip "github.com/klauspost/compress/gzip"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// TestListsCompressed: a list response larger than the API server's compression threshold (128
// KB) is gzip-compressed for a client that accepts gzip, as kube-apiserver compresses it, whichever
// way it is encoded: the stored JSON of full lists (package storedjson), the streaming encoder of
// metadata-only lists, the one-piece encoding of pretty output; and decompressed it is the
// response a client that does not accept gzip gets. A small list is sent as it is. Lists of
// plain JSON, of whole reports (with a label selector, in pages) or of their metadata, are
// compressed by the list handler of our own with a faster encoder (internal/apiserver,
// compress.go): byte for byte what that encoder makes of the plain response, not what the
// generic writer's standard library encoder makes of it, which pretty output still gets; and the
// headers are kube-apiserver's.
func TestListsCompressed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	client := srv.dynamicClient(t)
	res := client.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports"))
	// 320 reports: ~2.4 MB of full objects, ~160 KB of their metadata as JSON.
	createConcurrently(t, 8, 320, func(i int) error {
		u := benchPolicyReport(i)
		u.SetNamespace("compressed")
		if i%2 == 0 {
			u.SetLabels(map[string]string{"half": "yes"})
		}
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
		contentEncoding = resp.Header.Get("Content-Encoding")
		if contentEncoding == "gzip" && !slices.Contains(resp.Header.Values("Vary"), "Accept-Encoding") {
			t.Errorf("a compressed response with Vary %q", resp.Header.Values("Vary"))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		return body, contentEncoding
	}
	const metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	for _, tc := range []struct {
		name, query, accept string
		compressed          bool
		// ours: compressed by the list handler's encoder, not by the generic writer's
		ours bool
	}{
		{"full", "?limit=500", "application/json", true, true},
		{"full, label selected", "?limit=500&labelSelector=half%3Dyes", "application/json", true, true},
		{"full, pages of 100", "?limit=100", "application/json", true, true},
		{"full, pretty", "?limit=500&pretty=true", "application/json", true, false},
		{"metadata", "?limit=500", metadata, true, true},
		{"metadata, pretty", "?limit=500&pretty=true", metadata, true, false},
		{"full, one item", "?limit=1", "application/json", false, false},
		{"metadata, ten items", "?limit=10", metadata, false, false},
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
			if tc.compressed {
				// Both encoders' output depends on the bytes, not on how they were written.
				ours, generic := bytes.Equal(body, compressed(t, plain, fastGzip)), bytes.Equal(body, compressed(t, plain, standardGzip))
				if ours != tc.ours || generic == tc.ours {
					t.Errorf("compressed by the list handler's encoder: %v, by the generic writer's: %v; want the list handler's %v",
						ours, generic, tc.ours)
				}
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

// The gzip encoders at kube-apiserver's level for responses: the list handler's and the generic
// response writer's.
var (
	fastGzip     = func(w io.Writer) (io.WriteCloser, error) { return fastgzip.NewWriterLevel(w, fastgzip.BestSpeed) }
	standardGzip = func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriterLevel(w, gzip.BestSpeed) }
)

// compressed returns data as encoder compresses it, in one write.
func compressed(t *testing.T, data []byte, encoder func(io.Writer) (io.WriteCloser, error)) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := encoder(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
