package metrics

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Every metric of ours is listed in docs/operations.md ("Metrics").
func TestMetricsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none") // never connects: Stat only
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m.SetSources(Sources{
		Pool:             pool,
		Watch:            func() WatchStats { return WatchStats{Watchers: map[string]int{"x": 1}} },
		NotifyReconnects: func() int64 { return 0 },
		ReplicaReads:     func() (int64, int64) { return 0, 0 },
		ListPrefetch:     func() (int64, int64, int64) { return 0, 0, 0 },
		ListAhead:        func() (int64, int64, int64) { return 0, 0, 0 },
		ObjectCache:      func() (int64, int64, int64) { return 0, 0, 0 },
		Stored:           func(context.Context) ([]StoredCount, error) { return []StoredCount{{Kind: "K"}}, nil },
		AnalyticsLag:     func(context.Context) (AnalyticsLag, error) { return AnalyticsLag{}, nil },
	})
	m.QueryTracer().(queryTracer).hist.WithLabelValues("Q").Observe(1)
	m.ObserveRefresh("s", time.Second)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) < len(allDescs)+5 {
		t.Errorf("gathered %d families, want %d", len(families), len(allDescs)+5)
	}
	for _, f := range families {
		if !strings.Contains(string(doc), "| `"+f.GetName()+"` |") {
			t.Errorf("%s is not in the table of docs/operations.md", f.GetName())
		}
	}
}
