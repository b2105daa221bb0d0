package apiserver

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPagesAheadBounds: pages are answered ahead at most aheadMaxInFlight at a time (the others
// are skipped), a page is served once and only when its answer is a whole 200, and a request
// that comes while its page is being answered waits for it.
func TestPagesAheadBounds(t *testing.T) {
	p := newPagesAhead()
	ctx := context.Background()
	release := make(chan struct{})
	answer := func(status int, body string) func(context.Context, http.ResponseWriter) (pageInfo, bool) {
		return func(_ context.Context, w http.ResponseWriter) (pageInfo, bool) {
			<-release
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return pageInfo{rev: 7, next: "more"}, status == http.StatusOK
		}
	}
	key := func(q string) aheadKey { return aheadKey{namespace: "ns", query: q} }
	for i, q := range []string{"a", "b", "c"} {
		p.start(key(q), answer(http.StatusOK, q))
		if want := int64(max(0, i+1-aheadMaxInFlight)); p.stats().Skipped != want {
			t.Fatalf("after %d starts: %d skipped, want %d", i+1, p.stats().Skipped, want)
		}
	}
	p.start(key("a"), answer(http.StatusOK, "again")) // being answered already: nothing new
	if p.stats().Skipped != 1 {
		t.Fatalf("a page being answered started again: %+v", p.stats())
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	// Taken while being answered: the taker waits.
	page, ok := p.take(ctx, key("a"))
	if !ok || page.page.next != "more" || page.page.rev != 7 || page.resp.body.String() != "a" {
		t.Fatalf("take a: %v %+v", ok, page)
	}
	if _, ok := p.take(ctx, key("a")); ok {
		t.Fatal("a page was served twice")
	}
	if _, ok := p.take(ctx, key("c")); ok {
		t.Fatal("a skipped page was served")
	}
	if page, ok := p.take(ctx, key("b")); !ok || page.resp.body.String() != "b" {
		t.Fatalf("take b: %v", ok)
	}
	// Errors and bodies over the limit are not kept.
	p.start(key("gone"), answer(http.StatusGone, `{"kind":"Status"}`))
	p.start(key("big"), answer(http.StatusOK, strings.Repeat("x", aheadMaxBody+1)))
	if _, ok := p.take(ctx, key("gone")); ok {
		t.Error("an error was served as a page")
	}
	if _, ok := p.take(ctx, key("big")); ok {
		t.Error("a body over the limit was served")
	}
	if st := p.stats(); st.Unused != 2 || p.bytes != 0 || len(p.pages) != 0 {
		t.Errorf("after the failures: %+v, %d bytes kept, %d pages", st, p.bytes, len(p.pages))
	}
}

// TestContinuationQuery: the query of a continuation is the list's with the continue token and
// without resourceVersion, as client-go's pager sends it, and equal as a key to what such a pager
// sends whatever the order of its parameters or empty ones.
func TestContinuationQuery(t *testing.T) {
	first, err := url.ParseQuery("limit=500&resourceVersion=0&resourceVersionMatch=NotOlderThan&labelSelector=a%3Db")
	if err != nil {
		t.Fatal(err)
	}
	got := canonicalQuery(continuationQuery(first, "tok/en"))
	sent, err := url.ParseQuery("continue=tok%2Fen&labelSelector=a%3Db&limit=500&resourceVersion=")
	if err != nil {
		t.Fatal(err)
	}
	if want := canonicalQuery(sent); got != want {
		t.Errorf("continuation key %q, the pager's request %q", got, want)
	}
	if first.Get("continue") != "" || first.Get("resourceVersion") != "0" {
		t.Errorf("the first page's query changed: %v", first)
	}
}
