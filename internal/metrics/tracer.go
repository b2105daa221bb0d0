package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// QueryTracer returns a pgx tracer for the pool's config (pgxpool.Config.ConnConfig.Tracer) that
// records every query's duration under its sqlc name. nil on a nil *Metrics.
func (m *Metrics) QueryTracer() pgx.QueryTracer {
	if m == nil {
		return nil
	}
	return queryTracer{m.queryDuration}
}

type queryTracer struct {
	hist *prometheus.HistogramVec
}

type traceKey struct{}

type traceStart struct {
	name  string
	start time.Time
}

// TraceQueryStart implements pgx.QueryTracer.
func (t queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, traceStart{name: QueryName(data.SQL), start: time.Now()})
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if s, ok := ctx.Value(traceKey{}).(traceStart); ok {
		t.hist.WithLabelValues(s.name).Observe(time.Since(s.start).Seconds())
	}
}

// QueryName is the sqlc name of sql ("-- name: X :kind" on its first line), or "other": the
// label's values are the named queries, a bounded set.
func QueryName(sql string) string {
	const prefix = "-- name: "
	if !strings.HasPrefix(sql, prefix) {
		return "other"
	}
	rest := sql[len(prefix):]
	if i := strings.IndexAny(rest, " \n"); i > 0 {
		return rest[:i]
	}
	return "other"
}
