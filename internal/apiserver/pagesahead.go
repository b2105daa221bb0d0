package apiserver

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/reports-server/reports-server/internal/ahead"
)

// Paged lists are answered one page ahead.
//
// The store reads the rows of a paged list's next page ahead of its request (pgstorage's
// Prefetcher), which takes PostgreSQL out of the wait between pages; but the server still makes
// the next page's response (its items, their JSON, the compression) only once asked, while the
// client, done with parsing the page before, waits: the client's and the server's CPU take turns
// on each page instead of overlapping. So after answering a page of a compressed JSON list (of
// whole reports or of their metadata) that has more, the list handler answers the request that
// continues it in the background, into memory, and the request, when it comes, gets those bytes.
// kube-apiserver's watch cache serves pages from memory; this is the same overlap, at the cost of
// one response per paging client kept for seconds.
//
// The answer kept is exactly what the request would get: the handler runs on the same request
// (its query with the continue token the page returned, as client-go's pager sends it), and a
// page at a fixed revision has fixed contents. A request that finds its page is still
// authenticated, authorized, admitted by priority and fairness and audited as every request is;
// only the list itself is not made again. A page is served only if the change log still reaches
// its revision, so a continuation after compaction is 410 Gone with or without a page ahead.

const (
	// aheadMaxBytes bounds the response bytes kept, all resources together: beyond it no page
	// is answered ahead until some are taken or expire. Compressed, a page of 500 reports is
	// ~0.5 MB, of their metadata ~70 KB.
	aheadMaxBytes = 16 << 20
	// aheadMaxBody: a response larger than this is not kept (an uncompressed page, which a
	// client that accepts gzip gets only when it is small, cannot be).
	aheadMaxBody = 4 << 20
	// aheadMaxPageJSON: after a page of more JSON than this (uncompressed), the next is not
	// answered ahead. A page of 500 reports of 20 results is ~5 MB.
	aheadMaxPageJSON = 32 << 20
	// aheadMaxPages bounds the pages kept, however small.
	aheadMaxPages = 128
	// aheadMaxInFlight bounds the pages being answered ahead at once: their CPU is taken from
	// the requests themselves.
	aheadMaxInFlight = 2
	// aheadTTL is how long a page answered ahead waits to be taken: a client that stopped
	// paging (or went to another replica) leaves it behind.
	aheadTTL = 30 * time.Second
	// aheadTimeout bounds the answer of a page ahead.
	aheadTimeout = 30 * time.Second
)

// pageInfo is what a list handler tells about the page it answered: the list's revision, the
// token that continues it ("" for the last page), and the size of its JSON (-1: not known).
type pageInfo struct {
	rev  int64
	next string
	size int
}

// aheadKey is everything that decides a page's response besides the request's authorization,
// which every request gets anyway: the resource and namespace, whether it lists metadata or whole
// reports, and the list options (the query, canonical: see canonicalQuery).
type aheadKey struct {
	resource  schema.GroupVersionResource
	namespace string
	metadata  bool
	query     string
}

// aheadAnswer is a page answered ahead: the response, and what it tells about its page.
type aheadAnswer struct {
	resp *recordedResponse
	page pageInfo
}

// pagesAhead keeps the pages answered ahead for every resource of a process.
type pagesAhead = ahead.Cache[aheadKey, *aheadAnswer]

func newPagesAhead() *pagesAhead {
	return ahead.New[aheadKey](ahead.Limits{
		MaxBytes: aheadMaxBytes, MaxEntries: aheadMaxPages, MaxInFlight: aheadMaxInFlight,
		TTL: aheadTTL, Timeout: aheadTimeout,
	}, func(a *aheadAnswer) int64 { return int64(a.resp.body.Len()) })
}

// errNotKept is the answer of a page ahead that is not a whole 200: the request answers itself.
var errNotKept = errors.New("not a whole 200 response")

// answerAhead makes the answer of a page ahead with answer, as a response kept in memory.
func answerAhead(ctx context.Context, answer func(context.Context, http.ResponseWriter) (pageInfo, bool)) (*aheadAnswer, error) {
	rec := newRecordedResponse(aheadMaxBody)
	page, ok := answer(ctx, rec)
	if !ok || !rec.complete() {
		return nil, errNotKept
	}
	return &aheadAnswer{resp: rec, page: page}, nil
}

// canonicalQuery is q as a key: its parameters sorted (url.Values.Encode), those with only empty
// values left out, as the list options parsed from it leave them unset.
func canonicalQuery(q url.Values) string {
	c := url.Values{}
	for k, vs := range q {
		for _, v := range vs {
			if v != "" {
				c[k] = append(c[k], v)
			}
		}
	}
	return c.Encode()
}

// continuationQuery is the query of the request that continues a list asked with q at token
// next: as client-go's pager sends it, the same options with the continue token and no
// resourceVersion (a continuation reads at the token's revision).
func continuationQuery(q url.Values, next string) url.Values {
	c := url.Values{}
	for k, vs := range q {
		c[k] = append([]string(nil), vs...)
	}
	c.Set("continue", next)
	c.Del("resourceVersion")
	c.Del("resourceVersionMatch")
	return c
}

// recordedResponse is an http.ResponseWriter that keeps the response in memory, up to a limit
// of body bytes (beyond it the body is incomplete and the response is not kept).
type recordedResponse struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int
	overflow bool
}

func newRecordedResponse(limit int) *recordedResponse {
	return &recordedResponse{header: http.Header{}, limit: limit}
}

func (r *recordedResponse) Header() http.Header { return r.header }

func (r *recordedResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// Write keeps p while the body is within the limit. It never fails: a writer that saw an error
// would log it as a failed response, and this one is only not kept.
func (r *recordedResponse) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.overflow || r.body.Len()+len(p) > r.limit {
		r.overflow = true
		return len(p), nil
	}
	return r.body.Write(p)
}

// complete tells whether r holds a whole 200 response.
func (r *recordedResponse) complete() bool { return r.status == http.StatusOK && !r.overflow }

// writeTo sends the kept response on w.
func (r *recordedResponse) writeTo(w http.ResponseWriter) error {
	header := w.Header()
	for k, vs := range r.header {
		header[k] = append([]string(nil), vs...)
	}
	w.WriteHeader(r.status)
	_, err := w.Write(r.body.Bytes())
	return err
}
