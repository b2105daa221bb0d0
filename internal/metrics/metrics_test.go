package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestQueryName(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"-- name: LockRevision :one\nSELECT 1": "LockRevision",
		"-- name: Notify :exec\n":              "Notify",
		"SELECT 1":                             "other",
		"-- name: ":                            "other",
		"":                                     "other",
	} {
		if got := QueryName(sql); got != want {
			t.Errorf("QueryName(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.ObserveWriteBatch(1, time.Second)
	m.ObserveRefresh("x", time.Second)
	m.ObserveProjection(time.Second)
	m.SetSources(Sources{})
	if m.QueryTracer() != nil {
		t.Error("QueryTracer of nil metrics is not nil")
	}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if h := m.WithHandler(next); h == nil {
		t.Error("WithHandler of nil metrics is nil")
	}
}

// Two Metrics in one process are independent, and the stored counts are cached.
func TestSourcesPerServer(t *testing.T) {
	t.Parallel()
	a, b := New(), New()
	calls := 0
	a.SetSources(Sources{
		Watch:            func() WatchStats { return WatchStats{LagRevisions: 2, Watchers: map[string]int{"policyreports": 3}} },
		NotifyReconnects: func() int64 { return 1 },
		Stored: func(context.Context) ([]StoredCount, error) {
			calls++
			return []StoredCount{{Kind: "PolicyReport", Reports: 5, Results: 7}}, nil
		},
	})
	b.ObserveWriteBatch(4, time.Millisecond)
	want := `
# HELP reports_server_watchers Open watches, by resource.
# TYPE reports_server_watchers gauge
reports_server_watchers{resource="policyreports"} 3
# HELP reports_server_stored_reports Stored reports of this server's cluster, by kind (refreshed at most every 30 s).
# TYPE reports_server_stored_reports gauge
reports_server_stored_reports{kind="PolicyReport"} 5
`
	for range 2 {
		if err := testutil.GatherAndCompare(a.Registry(), strings.NewReader(want), "reports_server_watchers", "reports_server_stored_reports"); err != nil {
			t.Error(err)
		}
	}
	if calls != 1 {
		t.Errorf("stored counts queried %d times in two scrapes, want 1 (cached)", calls)
	}
	if n := testutil.CollectAndCount(b.Registry(), "reports_server_watchers", "reports_server_stored_reports", "reports_server_write_batch_size"); n != 1 {
		t.Errorf("b has %d of those series, want 1 (its batch histogram only)", n)
	}
	if n := testutil.CollectAndCount(a.Registry(), "reports_server_write_batch_size"); n != 1 {
		t.Errorf("a has %d batch histograms, want 1", n)
	}

	// The handler serves ours beside the legacy registry's.
	rec := httptest.NewRecorder()
	a.WithHandler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "reports_server_notify_reconnects_total 1") {
		t.Errorf("/metrics lacks reports_server_notify_reconnects_total 1:\n%s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	a.WithHandler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/other", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/other answered %d, want it passed on (404)", rec.Code)
	}
}
