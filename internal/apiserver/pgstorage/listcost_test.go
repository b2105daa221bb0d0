package pgstorage_test

// What a list page costs the database, measured without a clock: auto_explain reports the plan of
// every statement a GetList call runs, with the buffers and rows each plan node touched
// (EXPLAIN (ANALYZE, BUFFERS) of the executions themselves, generic plans included). Buffer and
// row counts do not depend on the machine's load, so they can prove that a page costs the same at
// any table size (TestListPageCostIsBounded) where a timing could only hint at it.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// planLog collects the plans auto_explain reports for the statements of a connection, as notices
// (client_min_messages = log): the plans the list queries really ran with, generic or custom.
type planLog struct {
	on    atomic.Bool
	mu    sync.Mutex
	plans []string
}

func (l *planLog) notice(_ *pgconn.PgConn, n *pgconn.Notice) {
	if !l.on.Load() {
		return
	}
	if _, plan, ok := strings.Cut(n.Message, "plan:\n"); ok {
		l.mu.Lock()
		l.plans = append(l.plans, plan)
		l.mu.Unlock()
	}
}

// record returns the plans of the statements fn sends.
func (l *planLog) record(fn func()) []string {
	l.mu.Lock()
	l.plans = nil
	l.mu.Unlock()
	l.on.Store(true)
	fn()
	l.on.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.plans
}

// listEnv is a pod store over n objects loaded in bulk (loadPods), with its pool's query log.
type listEnv struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	store *pgstorage.Store
	// probe is a second store on one connection that reports the plans of its statements.
	probe *pgstorage.Store
	plans *planLog
	n     int
	// pageSize is the limit of every list (500 unless changed).
	pageSize int64
	// rev is the revision right after the load; past is an older revision still in the change
	// log, at which the continuation pages of a list that started before the last writes run.
	rev, past int64
}

func newListEnv(t testing.TB, n int) *listEnv {
	t.Helper()
	ctx := context.Background()
	url := dbtest.URL(t)
	e := &listEnv{ctx: ctx, plans: &planLog{}, n: n, pageSize: 500}
	var err error
	if e.pool, err = db.Open(ctx, url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if e.store, err = pgstorage.New(podConfig(e.pool, testCluster)); err != nil {
		t.Fatal(err)
	}
	cfg, err := db.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // one connection, so its plan cache is warmed by the probe's own lists
	cfg.ConnConfig.OnNotice = e.plans.notice
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain';
			SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
			SET auto_explain.log_buffers = on; SET auto_explain.log_timing = off;
			SET auto_explain.log_format = json; SET client_min_messages = log`)
		return err
	}
	probePool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probePool.Close)
	if e.probe, err = pgstorage.New(podConfig(probePool, testCluster)); err != nil {
		t.Fatal(err)
	}
	e.loadPods(t)
	return e
}

// Shape of the loaded data: pod i is in namespace i%listNamespaces, labelled app=bench,
// tier=t<i/listNamespaces%10> (a tenth of the pods, spread evenly over every namespace's keys)
// and uid=u<i> (one pod).
const (
	listNamespaces = 100
	// listChangeLog is how many of the newest writes are still in the change log: the
	// compactor's default cap (DefaultWatchHistoryMaxEvents).
	listChangeLog = pgstorage.DefaultWatchHistoryMaxEvents
)

func listNamespace(i int) string { return fmt.Sprintf("ns-%03d", i%listNamespaces) }
func listName(i int) string      { return fmt.Sprintf("p-%07d", i) }

// loadPods writes e.n pods straight into the tables in one SQL statement per table (creating
// 10^6 objects through the API would take over an hour): the rows are what the store writes,
// their revisions a permutation of 2..n+1 (creation order is not key order), and the change log
// holds the newest listChangeLog creations, compacted before them. Then one more write through
// the store (so lists at e.past read history) and VACUUM ANALYZE (the steady state autovacuum
// reaches; see docs/benchmarks.md for a store that was never vacuumed).
func (e *listEnv) loadPods(t testing.TB) {
	t.Helper()
	ctx := e.ctx
	// A stored object as the store writes it, of about the size of a policy report (~2 KB of
	// JSON that does not compress to nothing).
	tmpl := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "tmpl", Name: "tmpl"}}
	if err := e.store.Create(ctx, "/pods/tmpl/tmpl", tmpl, nil, 0); err != nil {
		t.Fatal(err)
	}
	raw, err := e.store.RawObject(ctx, "/pods/tmpl/tmpl")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		sql  string
		args []any
	}{
		{"clear", `DELETE FROM reports WHERE cluster = $1`, []any{testCluster}},
		{"clear log", `DELETE FROM changes WHERE cluster = $1`, []any{testCluster}},
		{"objects", `
INSERT INTO reports (cluster, key, resource_version, object)
SELECT $1, '/pods/' || s.ns || '/' || s.name, s.rv,
       $2::jsonb || jsonb_build_object('metadata', ($2::jsonb -> 'metadata') || jsonb_build_object(
           'name', s.name, 'namespace', s.ns,
           'uid', md5(s.i::text)::uuid::text,
           'labels', jsonb_build_object('app', 'bench', 'tier', 't' || (s.i / $4 % 10), 'uid', 'u' || s.i),
           'annotations', jsonb_build_object('payload',
               (SELECT string_agg(md5(s.i::text || '/' || j), ' ') FROM generate_series(1, 48) j))))
FROM (SELECT i, format('ns-%s', lpad((i % $4)::text, 3, '0')) AS ns,
             format('p-%s', lpad(i::text, 7, '0')) AS name,
             2 + (i::bigint * 7919) % $3 AS rv
      FROM generate_series(0, $3 - 1) i) s`, []any{testCluster, raw, e.n, listNamespaces}},
		{"change log", `
INSERT INTO changes (cluster, resource_version, key, event)
SELECT cluster, resource_version, key, 'ADDED' FROM reports
WHERE cluster = $1 AND resource_version > $2`, []any{testCluster, max(1, e.n+1-listChangeLog)}},
		{"revisions", `UPDATE revisions SET current = $2, compacted = $3 WHERE cluster = $1`,
			[]any{testCluster, e.n + 1, max(0, e.n+1-listChangeLog)}},
	}
	for _, s := range steps {
		if _, err := e.pool.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("load %d pods: %s: %v", e.n, s.what, err)
		}
	}
	e.past = int64(e.n + 1)
	// One write after the snapshot the continuation pages read (any write of the cluster moves
	// the revision; this one changes a pod in the middle of the key range).
	k := e.n / 2
	out := &example.Pod{}
	err = e.store.GuaranteedUpdate(ctx, "/pods/"+listNamespace(k)+"/"+listName(k), out, false, nil,
		func(obj runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
			p := obj.(*example.Pod)
			p.Labels["touched"] = "yes"
			return p, nil, nil
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := e.store.GetCurrentResourceVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.rev = int64(rv)
	for _, table := range []string{"reports", "changes"} {
		if _, err := e.pool.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			t.Fatal(err)
		}
	}
}

// listCase is one kind of page.
type listCase struct {
	name string
	// key is the list's key ("/pods/" or "/pods/<ns>"), label its selector ("" for none).
	key, label string
	// after, when set, makes the page a continuation after that key (at revision rev, or the
	// current one when 0).
	after string
	past  bool
}

// listCases are the pages BenchmarkListPage and TestListPageCostIsBounded read: the first page
// and a page halfway through, of every pod, of one namespace's pods, and of a label selection,
// continuations both at the current revision and at one the store has since moved past.
func listCases(n int) []listCase {
	mid := n / 2
	// Halfway through the namespace list: in ns-042, after about half of its pods.
	ns := 42
	nsMid := (n/listNamespaces/2)*listNamespaces + ns
	var cs []listCase
	for _, c := range []listCase{
		{name: "all", key: "/pods/", after: "/pods/" + listNamespace(mid) + "/" + listName(mid)},
		{name: "namespace", key: "/pods/" + listNamespace(ns), after: "/pods/" + listNamespace(ns) + "/" + listName(nsMid)},
		{name: "label", key: "/pods/", label: "tier=t3", after: "/pods/" + listNamespace(mid) + "/" + listName(mid)},
		{name: "label-one", key: "/pods/", label: fmt.Sprintf("uid=u%d", n/3)},
	} {
		first := c
		first.name += "/first"
		first.after = ""
		cs = append(cs, first)
		if c.after == "" {
			continue
		}
		deep := c
		deep.name += "/deep"
		cs = append(cs, deep)
		old := c
		old.name += "/deep-past-rv"
		old.past = true
		cs = append(cs, old)
	}
	return cs
}

// list reads one page of c and returns how many items it had.
func (e *listEnv) list(t testing.TB, c listCase) int { return e.listWith(t, e.store, c) }

func (e *listEnv) listWith(t testing.TB, s *pgstorage.Store, c listCase) int {
	t.Helper()
	pred := storage.Everything
	if c.label != "" {
		pred = selector(t, c.label, "")
	}
	pred.Limit = e.pageSize
	if c.after != "" {
		rev := e.rev
		if c.past {
			rev = e.past
		}
		prefix := c.key
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		token, err := storage.EncodeContinue(c.after+"\x00", prefix, rev)
		if err != nil {
			t.Fatal(err)
		}
		pred.Continue = token
	}
	list := &example.PodList{}
	opts := storage.ListOptions{Recursive: true, Predicate: pred}
	if err := s.GetList(e.ctx, c.key, opts, list); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return len(list.Items)
}

// pageCost is what the queries of one page touched, from EXPLAIN (ANALYZE, BUFFERS).
type pageCost struct {
	queries int
	// buffers are the shared buffers the queries hit or read (planning excluded).
	buffers int64
	// rows are the rows the scans produced or removed with a filter, over all loops: the rows
	// the queries touched.
	rows int64
	// plans are the plans, for messages.
	plans []string
}

// cost reads one page of c through the probe and sums the plans of its queries. The probe's
// connection first reads the page a few times: PostgreSQL plans a prepared statement for its
// parameters five times, then may switch to one generic plan, and that is the plan that lasts.
func (e *listEnv) cost(t testing.TB, c listCase) pageCost {
	t.Helper()
	for range 6 {
		e.listWith(t, e.probe, c)
	}
	var pc pageCost
	for _, out := range e.plans.record(func() { e.listWith(t, e.probe, c) }) {
		var plan struct {
			Query string   `json:"Query Text"`
			Plan  planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(out), &plan); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(plan.Query, "reports") || strings.Contains(plan.Query, "name: CurrentRevision") {
			continue
		}
		p := plan.Plan
		pc.queries++
		pc.buffers += p.SharedHit + p.SharedRead
		pc.rows += p.rowsTouched()
		pc.plans = append(pc.plans, firstLine(plan.Query)+"\n"+p.String(""))
	}
	return pc
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// planNode is the part of EXPLAIN's JSON plan used here.
type planNode struct {
	NodeType       string     `json:"Node Type"`
	Relation       string     `json:"Relation Name"`
	Index          string     `json:"Index Name"`
	ActualRows     float64    `json:"Actual Rows"`
	Loops          float64    `json:"Actual Loops"`
	RemovedFilter  float64    `json:"Rows Removed by Filter"`
	RemovedRecheck float64    `json:"Rows Removed by Index Recheck"`
	HeapFetches    float64    `json:"Heap Fetches"`
	SharedHit      int64      `json:"Shared Hit Blocks"`
	SharedRead     int64      `json:"Shared Read Blocks"`
	Plans          []planNode `json:"Plans"`
}

func (p planNode) rowsTouched() int64 {
	var n float64
	if strings.Contains(p.NodeType, "Scan") && p.NodeType != "Subquery Scan" && p.NodeType != "Function Scan" {
		n = (p.ActualRows + p.RemovedFilter + p.RemovedRecheck) * max(p.Loops, 1)
	}
	total := int64(n)
	for _, c := range p.Plans {
		total += c.rowsTouched()
	}
	return total
}

func (p planNode) String(indent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s", indent, p.NodeType)
	if p.Index != "" {
		fmt.Fprintf(&b, " using %s", p.Index)
	}
	if p.Relation != "" {
		fmt.Fprintf(&b, " on %s", p.Relation)
	}
	fmt.Fprintf(&b, " (rows=%.0f loops=%.0f removed=%.0f heap fetches=%.0f buffers=%d)\n",
		p.ActualRows, p.Loops, p.RemovedFilter+p.RemovedRecheck, p.HeapFetches, p.SharedHit+p.SharedRead)
	for _, c := range p.Plans {
		b.WriteString(c.String(indent + "  "))
	}
	return b.String()
}

// TestListPageCostIsBounded proves, without a clock, that a list page costs the database the same
// whatever the number of stored objects: every kind of page BenchmarkListPage reads is read from
// stores of 2,000 and 20,000 pods (pages of 20, remainingItemCount counted up to 200), and the
// rows and buffers its queries touched, from the plans they ran with, stay under a bound that
// depends on the page size alone. The bound is well under the 20,000 pods, so a plan that walks
// the whole key range, sorts every match of a selector, or counts every remaining key fails.
func TestListPageCostIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 22,000 objects")
	}
	const page, count = 20, 200
	for _, n := range []int{2_000, 20_000} {
		e := newListEnv(t, n)
		e.probe.SetRemainingCountLimit(count)
		e.pageSize = page
		for _, c := range listCases(n) {
			// A page reads its rows plus one; a tenth of the pods match "tier", so a walk reads
			// ten rows for each. Counting reads at most count keys, and the change log adds
			// what changed since the page's revision (one write).
			maxRows := int64(2*(page+1) + count + 10)
			if c.label == "tier=t3" {
				maxRows = 2 * 10 * (page + 1)
			}
			pc := e.cost(t, c)
			if pc.queries == 0 {
				t.Fatalf("%d pods, %s: no plans captured", n, c.name)
			}
			// Buffers: a few per row (heap, index, change log) and the index descents.
			maxBuffers := 4*maxRows + 100
			if pc.rows > maxRows || pc.buffers > maxBuffers {
				t.Errorf("%d pods, %s: the page's queries touched %d rows and %d buffers, want at most %d and %d:\n%s",
					n, c.name, pc.rows, pc.buffers, maxRows, maxBuffers, strings.Join(pc.plans, "\n"))
			} else {
				t.Logf("%d pods, %s: %d queries, %d rows, %d buffers", n, c.name, pc.queries, pc.rows, pc.buffers)
			}
		}
	}
}

// TestLabelListCostAfterWrites proves that a label selection costs the same right after many
// writes as after a VACUUM: the selector indexes keep no pending list (00013), which every
// search would read whole until a VACUUM merged it. After 2,000 updates that change every pod's
// labels (not vacuumed, only analyzed, as a busy table between autovacuum runs is), the page that
// selects one pod by label touches a handful of buffers, where the pending list made it read all
// of the updates' index entries.
func TestLabelListCostAfterWrites(t *testing.T) {
	const n = 2_000
	e := newListEnv(t, n)
	if _, err := e.pool.Exec(e.ctx, `UPDATE reports SET object = jsonb_set(object, '{metadata,labels,touched}', '"again"')
		WHERE cluster = $1 AND key LIKE '/pods/%'`, testCluster); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(e.ctx, "ANALYZE reports"); err != nil {
		t.Fatal(err)
	}
	c := listCase{name: "label-one", key: "/pods/", label: fmt.Sprintf("uid=u%d", n/3)}
	if got := e.list(t, c); got != 1 {
		t.Fatalf("%s: %d pods, want 1", c.name, got)
	}
	pc := e.cost(t, c)
	// One row: an index descent, its heap page, the revision; a pending list of 2,000 updates
	// alone is several times this.
	const maxBuffers = 30
	if pc.buffers > maxBuffers {
		t.Errorf("after %d updates the one-pod label page touched %d buffers, want at most %d:\n%s",
			n, pc.buffers, maxBuffers, strings.Join(pc.plans, "\n"))
	} else {
		t.Logf("after %d updates, the one-pod label page: %d queries, %d rows, %d buffers", n, pc.queries, pc.rows, pc.buffers)
	}
}
