package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
)

// TestListPagesAnsweredAhead: after a page of a paged JSON list asked by a client that accepts
// gzip, the server answers the request that continues it ahead of time (internal/apiserver,
// pagesahead.go), and the request gets exactly the response it would have got otherwise: for
// lists of whole reports and of their metadata, pages compressed or small, label-selected, every
// page after the first is served from the answer made ahead (the metric counts each), and its
// body, decompressed, is byte for byte the one a client that does not accept gzip (which gets no
// pages ahead) reads at the same revision. A continuation whose revision was compacted after its
// page was answered ahead is 410 Gone, as without a page ahead.
func TestListPagesAnsweredAhead(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := srv.dynamicClient(t)
	const ns = "ahead"
	res := client.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports")).Namespace(ns)
	// 300 reports: ~2.2 MB of full objects, ~150 KB of their metadata as JSON.
	createConcurrently(t, 8, 300, func(i int) error {
		u := benchPolicyReport(i)
		u.SetNamespace(ns)
		if i%2 == 0 {
			u.SetLabels(map[string]string{"half": "yes"})
		}
		_, err := res.Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	g := newGetter(t, ctx, srv.Config)
	const path = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	const metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	const used = "reports_server_list_answered_ahead_pages_total"

	for _, tc := range []struct {
		name, query, accept string
		// compressed: the first page is over the compression threshold
		compressed bool
	}{
		{"full, pages of 100", "limit=100", "application/json", true},
		{"full, pages of 7", "limit=7", "application/json", false},
		{"full, label selected", "limit=60&labelSelector=half%3Dyes", "application/json", true},
		{"metadata, pages of 280", "limit=280", metadata, true},
		{"metadata, pages of 50", "limit=50", metadata, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := value(scrape(t, ctx, srv), used, "outcome", "used")
			zipped := pageThrough(t, g, path, tc.query, tc.accept, "gzip")
			after := value(scrape(t, ctx, srv), used, "outcome", "used")
			plain := pageThrough(t, g, path, tc.query, tc.accept, "identity")
			if len(zipped) != len(plain) || len(plain) < 2 {
				t.Fatalf("%d pages with gzip, %d without; want the same, at least 2", len(zipped), len(plain))
			}
			if got := int(after - before); got != len(plain)-1 {
				t.Errorf("%d pages served from answers made ahead, want %d (every page but the first)", got, len(plain)-1)
			}
			if zipped[0].compressed != tc.compressed {
				t.Errorf("first page (%d bytes) compressed: %v, want %v", len(zipped[0].body), zipped[0].compressed, tc.compressed)
			}
			for i := range zipped {
				if zipped[i].contentType != "application/json" || plain[i].contentType != "application/json" {
					t.Errorf("page %d: Content-Type %q and %q", i, zipped[i].contentType, plain[i].contentType)
				}
				if !bytes.Equal(zipped[i].body, plain[i].body) {
					t.Fatalf("page %d (%d bytes) differs from the page read without gzip (%d bytes)",
						i, len(zipped[i].body), len(plain[i].body))
				}
			}
		})
	}

	t.Run("compacted", func(t *testing.T) {
		families := scrape(t, ctx, srv)
		usedBefore, unusedBefore := value(families, used, "outcome", "used"), value(families, used, "outcome", "unused")
		first := getPage(t, g, path+"?limit=7", "application/json", "gzip")
		if first.status != http.StatusOK || first.next == "" {
			t.Fatalf("first page: %d, continue %q", first.status, first.next)
		}
		// A write moves the revision on; compaction to it cuts the list's revision off.
		u := benchPolicyReport(1000)
		u.SetNamespace(ns)
		created, err := res.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rev, err := strconv.ParseInt(created.GetResourceVersion(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		compactor(t, srv.DatabaseURL)(rev)
		second := getPage(t, g, path+"?limit=7&continue="+url.QueryEscape(first.next), "application/json", "gzip")
		if second.status != http.StatusGone {
			t.Fatalf("continuation after compaction: %d %.300s, want 410 Gone", second.status, second.body)
		}
		families = scrape(t, ctx, srv)
		if d := value(families, used, "outcome", "used") - usedBefore; d != 0 {
			t.Errorf("%v pages served from answers made ahead, want none", d)
		}
		if d := value(families, used, "outcome", "unused") - unusedBefore; d != 1 {
			t.Errorf("%v pages answered ahead and not served, want 1 (the compacted one)", d)
		}
	})
}

// listPage is one page of a list as a client read it: its body (decompressed), whether it came
// compressed, its Content-Type and status, and its continue token.
type listPage struct {
	body        []byte
	compressed  bool
	contentType string
	status      int
	next        string
}

// pageThrough reads every page of the list at path with query, as client-go's pager does (the
// same query and the last page's continue token), accepting encoding.
func pageThrough(t *testing.T, g getter, path, query, accept, encoding string) []listPage {
	t.Helper()
	var pages []listPage
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := getPage(t, g, path+"?"+q.Encode(), accept, encoding)
		if p.status != http.StatusOK {
			t.Fatalf("page %d: %d %.300s", len(pages), p.status, p.body)
		}
		pages = append(pages, p)
		if p.next == "" {
			return pages
		}
		q.Set("continue", p.next)
	}
}

// getPage GETs a page of a list.
func getPage(t *testing.T, g getter, url, accept, encoding string) listPage {
	t.Helper()
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, g.host+url, nil)
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
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := listPage{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		compressed: resp.Header.Get("Content-Encoding") == "gzip"}
	if p.compressed {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	p.body = body
	if p.status == http.StatusOK {
		var list struct {
			Metadata metav1.ListMeta `json:"metadata"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("decode a page: %v", err)
		}
		p.next = list.Metadata.Continue
	}
	return p
}
