package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestAnswerAhead: a page answered ahead is kept, headers, status and body, only when its answer
// is a whole 200: not an error, not a body over aheadMaxBody.
func TestAnswerAhead(t *testing.T) {
	answer := func(status int, body string) func(context.Context, http.ResponseWriter) (pageInfo, bool) {
		return func(_ context.Context, w http.ResponseWriter) (pageInfo, bool) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return pageInfo{rev: 7, next: "more"}, status == http.StatusOK
		}
	}
	a, err := answerAhead(context.Background(), answer(http.StatusOK, `{"items":[]}`))
	if err != nil || a.page.rev != 7 || a.page.next != "more" {
		t.Fatalf("a 200: %v %+v", err, a)
	}
	rec := httptest.NewRecorder()
	if err := a.resp.writeTo(rec); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != `{"items":[]}` {
		t.Errorf("written as %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
	if _, err := answerAhead(context.Background(), answer(http.StatusGone, `{"kind":"Status"}`)); err == nil {
		t.Error("an error was kept")
	}
	if _, err := answerAhead(context.Background(), answer(http.StatusOK, strings.Repeat("x", aheadMaxBody+1))); err == nil {
		t.Error("a body over the limit was kept")
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
