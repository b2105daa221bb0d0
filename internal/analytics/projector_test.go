package analytics_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/analytics"
	"github.com/reports-server/reports-server/internal/db"
)

// loadAll writes the producer samples (when present) and the generated reports of both clusters.
func loadAll(t *testing.T, e *env) {
	t.Helper()
	files := sampleFiles()
	if len(files) == 0 {
		t.Logf("no sample reports in %s (the shared testdata beside the repository): testing generated reports only", samplesDir)
	} else {
		e.createAll("prod", uniqueNames(e, samples(t)))
	}
	e.createAll("prod", generated("prod"))
	e.createAll("staging", generated("staging"))
}

// uniqueNames renames objects whose key an earlier object has (the samples reuse names across
// files) by appending "-2", "-3", ….
func uniqueNames(e *env, objs []map[string]any) []map[string]any {
	seen := map[string]int{}
	for _, obj := range objs {
		k := e.key(obj)
		seen[k]++
		if n := seen[k]; n > 1 {
			md := asMap(obj["metadata"])
			md["name"] = fmt.Sprintf("%v-%d", md["name"], n)
		}
	}
	return objs
}

// wantResultsMatch fails unless reporting.results (read as the reader role) is exactly the Go
// flattening of the stored reports.
func wantResultsMatch(t *testing.T, e *env) []row {
	t.Helper()
	want := oracleResults(storedReports(e.ctx, t, e.pool))
	got := readResults(e.ctx, t, e.pool)
	if d := diffRows(want, got); d != "" {
		t.Fatalf("reporting.results disagrees with the stored reports:\n%s", d)
	}
	return got
}

// TestResultsMatchReports: after projection, reporting.results is exactly the flattening of the
// stored reports (computed independently in Go), for the producer samples and generated reports
// of every kind; and again after a burst of updates, deletions and creations projected
// incrementally.
func TestResultsMatchReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	loadAll(t, e)
	e.projectAndRefresh()
	got := wantResultsMatch(t, e)
	if len(got) < 100 {
		t.Fatalf("only %d results projected", len(got))
	}

	// The rules docs/sql.md states, on chosen rows.
	asReader(e.ctx, t, e.pool, func(tx pgx.Tx) {
		check := func(q, want string) {
			t.Helper()
			_, rows := queryRows(e.ctx, t, tx, q)
			var got []string
			for _, r := range rows {
				got = append(got, strings.Join(r, "|"))
			}
			if strings.Join(got, "\n") != want {
				t.Errorf("%s\n got: %q\nwant: %q", q, strings.Join(got, "\n"), want)
			}
		}
		// score: "score" when numeric, else the highest <vendor>.v3_score; "n/a" and " 10.0 ".
		check(`SELECT DISTINCT policy, score FROM reporting.results WHERE policy LIKE 'CVE-2024-%' ORDER BY 1`,
			"CVE-2024-1001|9.8\nCVE-2024-1002|8.1\nCVE-2024-1003|5.3\nCVE-2024-1004|3.1\nCVE-2024-1005|10")
		// Negative nanos are subtracted; the Trivy subject comes from the controller ownerReference.
		check(`SELECT DISTINCT "timestamp", resource_kind, resource_namespace FROM reporting.results
			WHERE cluster = 'staging' AND policy = 'CVE-2024-1001' AND resource_name = 'web-0'`,
			"2023-11-14T22:14:59.750000Z|Pod|team-a")
		// openreports: the report's source for results without one; the first of several resources.
		check(`SELECT source, resource_name, jsonb_array_length(resources) FROM reporting.results
			WHERE cluster = 'staging' AND policy = 'cis-5.2.1'`, "kube-bench|web-1|2")
		// Ephemeral reports: results under spec, subject from spec.owner in the report's namespace.
		check(`SELECT report_kind, resource_kind, resource_name, namespace, "timestamp" FROM reporting.results
			WHERE cluster = 'staging' AND report_kind = 'EphemeralReport' AND policy = 'require-labels'`,
			"EphemeralReport|Pod|web-0|team-a|2023-11-14T22:16:40.000005Z")
		// Kyverno's background-scan reports leave spec.owner empty: the subject comes from the
		// ownerReference (not the controller), else from the audit.kyverno.io labels and
		// annotations; for a cluster-wide report of a namespace, from the reference to it.
		check(`SELECT report_kind, resource_api_version, resource_kind, coalesce(resource_namespace, '-'), resource_name,
			resource_uid, namespace, ephemeral FROM reporting.results
			WHERE cluster = 'staging' AND report_api_group = 'reports.kyverno.io' AND policy IN ('disallow-privileged', 'require-ns-labels')
			ORDER BY 1, 5`,
			"ClusterEphemeralReport|v1|Namespace|-|team-a|ns-uid-team-a||true\n"+
				"ClusterEphemeralReport|v1|Namespace|-|team-b|ns-uid-team-b||true\n"+
				"EphemeralReport|v1|Pod|team-a|web-1|pod-uid-team-a-web-1|team-a|true\n"+
				"EphemeralReport|v1|Pod|team-a|web-2|pod-uid-team-a-web-2|team-a|true")
		// Severity from the properties, lower-cased, when the result has none.
		check(`SELECT severity, finding FROM reporting.results WHERE cluster = 'staging' AND rule = 'kubelet-read-only-port'`,
			"medium|true")
		if len(sampleFiles()) > 0 {
			check(`SELECT "timestamp", resource_kind, resource_name, namespace, finding, result IS NULL FROM reporting.results
				WHERE report_name = 'pod-zipkin-6b59cc5ddb-bp9h8-zipkin' AND result_index = 0`,
				"2021-08-09T22:40:13.120874Z|Pod|zipkin-6b59cc5ddb-bp9h8|default|true|true")
			check(`SELECT severity, resource_name FROM reporting.results WHERE report_name = 'falco-alerts-policy' AND report_kind = 'PolicyReport'`,
				"low|a-pod")
		}
	})

	var rebuiltBefore time.Time
	if err := e.pool.QueryRow(e.ctx, "SELECT rebuilt_at FROM analytics_checkpoints WHERE cluster = 'prod'").Scan(&rebuiltBefore); err != nil {
		t.Fatal(err)
	}
	burst(t, e)
	e.projectAndRefresh()
	wantResultsMatch(t, e)
	var rebuiltAfter time.Time
	if err := e.pool.QueryRow(e.ctx, "SELECT rebuilt_at FROM analytics_checkpoints WHERE cluster = 'prod'").Scan(&rebuiltAfter); err != nil {
		t.Fatal(err)
	}
	if !rebuiltAfter.Equal(rebuiltBefore) {
		t.Fatalf("the burst was projected by a rebuild (rebuilt_at %v → %v), not incrementally", rebuiltBefore, rebuiltAfter)
	}
}

// burst changes reports concurrently: every prod Kyverno report gets other outcomes, the Trivy
// reports of team-c go away, a new namespace appears, and staging loses its openreports Report.
func burst(t *testing.T, e *env) {
	t.Helper()
	var wg sync.WaitGroup
	for _, np := range clusterLayout["prod"] {
		for i := range np.pods {
			wg.Go(func() { e.update("prod", kyvernoReport(np.ns, i, 1)) })
			if np.ns == "team-c" {
				wg.Go(func() { e.delete("prod", trivyReport(np.ns, i)) })
			}
		}
	}
	for i := range 3 {
		wg.Go(func() { e.create("prod", kyvernoReport("team-d", i, 0)) })
		wg.Go(func() { e.create("prod", trivyReport("team-d", i)) })
	}
	wg.Go(func() { e.delete("staging", openReport("team-a")) })
	wg.Wait()
}

// TestSummariesMatchRecount: after a burst of writes, one projection and one refresh, every
// materialized summary equals a recount from reporting.results, as the reader sees them.
func TestSummariesMatchRecount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	loadAll(t, e)
	e.projectAndRefresh()
	burst(t, e)
	e.projectAndRefresh()

	const counts = `count(*) AS results,
		count(*) FILTER (WHERE result = 'pass') AS pass, count(*) FILTER (WHERE result = 'fail') AS fail,
		count(*) FILTER (WHERE result = 'warn') AS warn, count(*) FILTER (WHERE result = 'error') AS error,
		count(*) FILTER (WHERE result = 'skip') AS skip, count(*) FILTER (WHERE finding) AS findings,
		count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
		count(*) FILTER (WHERE finding AND severity = 'high') AS high,
		count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
		count(*) FILTER (WHERE finding AND severity = 'low') AS low,
		count(*) FILTER (WHERE finding AND severity = 'info') AS info`
	recounts := map[string]string{
		"cluster_summary":   `SELECT cluster, ` + counts + ` FROM reporting.results WHERE NOT ephemeral GROUP BY 1`,
		"namespace_summary": `SELECT cluster, namespace, ` + counts + ` FROM reporting.results WHERE NOT ephemeral GROUP BY 1, 2`,
		"policy_summary":    `SELECT cluster, coalesce(source, ''), coalesce(policy, ''), ` + counts + ` FROM reporting.results WHERE NOT ephemeral GROUP BY 1, 2, 3`,
		"resource_summary":  `SELECT cluster, namespace, coalesce(resource_kind, ''), coalesce(resource_name, ''), ` + counts + ` FROM reporting.results WHERE NOT ephemeral GROUP BY 1, 2, 3, 4`,
	}
	asReader(e.ctx, t, e.pool, func(tx pgx.Tx) {
		for view, recount := range recounts {
			_, n := queryRows(e.ctx, t, tx, "SELECT count(*) FROM reporting."+view)
			if n[0][0] == "0" {
				t.Errorf("reporting.%s is empty", view)
			}
			for _, q := range []string{
				"(SELECT * FROM reporting." + view + ") EXCEPT ALL (" + recount + ")",
				"(" + recount + ") EXCEPT ALL (SELECT * FROM reporting." + view + ")",
			} {
				if _, rows := queryRows(e.ctx, t, tx, q); len(rows) > 0 {
					t.Errorf("reporting.%s disagrees with a recount from reporting.results (%s):\n%s", view, q, joinRows(rows))
				}
			}
		}
		// The history has the latest cluster summary.
		q := `(SELECT cluster, results, pass, fail, warn, error, skip, findings, critical, high, medium, low, info
		       FROM reporting.cluster_summary)
		      EXCEPT
		      (SELECT DISTINCT ON (cluster) cluster, results, pass, fail, warn, error, skip, findings, critical, high, medium, low, info
		       FROM reporting.cluster_history ORDER BY cluster, at DESC)`
		if _, rows := queryRows(e.ctx, t, tx, q); len(rows) > 0 {
			t.Errorf("reporting.cluster_history lacks the current summary:\n%s", joinRows(rows))
		}
		_, rows := queryRows(e.ctx, t, tx, `SELECT object, coalesce(cluster, ''), pending_revisions, lag_seconds, refreshed_at IS NOT NULL
			FROM reporting.refresh_status ORDER BY 1, 2`)
		for _, r := range rows {
			if r[2] != "0" || r[3] != "0" || r[4] != "true" {
				t.Errorf("refresh_status after projection and refresh: %v", r)
			}
		}
		if len(rows) != 2+4 {
			t.Errorf("refresh_status has %d rows, want 2 clusters + 4 summaries:\n%s", len(rows), joinRows(rows))
		}
	})
}

// TestRebuildAfterCompaction: a projector whose checkpoint is older than the compacted revision
// (the changes it would need are gone) rebuilds the cluster from the reports.
func TestRebuildAfterCompaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAll("staging", generated("staging"))
	e.projectAndRefresh()
	rebuilt := func() time.Time {
		var at time.Time
		if err := e.pool.QueryRow(e.ctx, "SELECT rebuilt_at FROM analytics_checkpoints WHERE cluster = 'staging'").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	first := rebuilt()

	e.update("staging", kyvernoReport("team-a", 0, 1))
	e.delete("staging", trivyReport("team-a", 1))
	obj := kyvernoReport("team-a", 0, 1)
	st := e.store("staging", e.kind(obj))
	rev, err := st.GetCurrentResourceVersion(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(e.ctx, int64(rev)); err != nil {
		t.Fatalf("compact: %v", err)
	}
	e.projectAndRefresh()
	if second := rebuilt(); !second.After(first) {
		t.Fatalf("no rebuild after compaction past the checkpoint (rebuilt_at %v, then %v)", first, second)
	}
	wantResultsMatch(t, e)
}

// TestProjectorFollowsWrites: a running service, woken by NOTIFY only (its poll is an hour),
// brings reporting.results in line with new writes within a second or so, and refreshes the
// summaries after the debounce interval.
func TestProjectorFollowsWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	notifier := db.NewNotifier(e.pool, nil)
	go notifier.Run(ctx)
	svc := analytics.New(e.pool, notifier, analytics.Config{
		PollInterval: time.Hour, SummaryRefreshInterval: 300 * time.Millisecond, LeaderRetryInterval: 100 * time.Millisecond,
	})
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e.createAll("staging", generated("staging")) // before and while the service starts
	waitMatch(t, e, 30*time.Second)              // first leadership: the initial rebuild

	for round := range 3 {
		start := time.Now()
		e.update("staging", kyvernoReport("team-a", 1, round+1))
		e.create("staging", kyvernoReport("team-x", round, 0))
		lag := waitMatch(t, e, 15*time.Second)
		t.Logf("round %d: results matched the reports %v after the writes (%v after the first write)", round, lag, time.Since(start))
	}
	// Summaries follow after the debounce.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var pending int64
		if err := e.pool.QueryRow(e.ctx, "SELECT sum(pending_revisions)::bigint FROM reporting.refresh_status").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summaries still %d revisions behind", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMatch waits until reporting.results equals the Go flattening of the stored reports and
// returns how long that took.
func waitMatch(t *testing.T, e *env, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		want := oracleResults(storedReports(e.ctx, t, e.pool))
		if last = diffRows(want, readResults(e.ctx, t, e.pool)); last == "" {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("reporting.results still disagrees with the reports after %v:\n%s", timeout, last)
	return 0
}

// TestOneLeaderAtATime: four services (as four replicas would) run the projector and the
// refresher while reports change, and one-shot runs compete too. At every moment at most one of
// them projects and at most one refreshes: an in-process counter of the critical sections never
// exceeds one, and PostgreSQL shows exactly one holder of the lock inside each. Afterwards the
// results and summaries are right.
func TestOneLeaderAtATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAll("staging", generated("staging"))

	var (
		active  = map[string]*atomic.Int32{analytics.Projector: {}, analytics.Refresher: {}}
		entered = map[string]*atomic.Int32{analytics.Projector: {}, analytics.Refresher: {}}
		locks   = map[string]db.Lock{analytics.Projector: analytics.ProjectorLock, analytics.Refresher: analytics.RefresherLock}
		errMu   sync.Mutex
		errs    []string
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		errs = append(errs, fmt.Sprintf(format, args...))
	}
	hook := func(component string) {
		entered[component].Add(1)
		if n := active[component].Add(1); n != 1 {
			fail("%d %ss in their critical section at once", n, component)
		}
		defer active[component].Add(-1)
		var holders int
		lock := locks[component]
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND objsubid = 2 AND classid::bigint = $1 AND objid::bigint = (hashtext($2)::bigint & 4294967295)`,
			lock.Class, lock.Scope).Scan(&holders)
		if err != nil {
			fail("read pg_locks: %v", err)
		} else if holders != 1 {
			fail("%d sessions hold the %s lock", holders, component)
		}
		time.Sleep(5 * time.Millisecond) // widen the window for an overlap to show
	}

	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for range 4 {
		svc := analytics.New(e.pool, nil, analytics.Config{
			PollInterval: 20 * time.Millisecond, SummaryRefreshInterval: 20 * time.Millisecond, LeaderRetryInterval: 10 * time.Millisecond,
		})
		analytics.SetHook(svc, hook)
		wg.Go(func() { svc.Run(ctx) })
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := svc.ProjectOnce(ctx); err != nil && ctx.Err() == nil {
					fail("ProjectOnce: %v", err)
				}
				if _, err := svc.RefreshOnce(ctx); err != nil && ctx.Err() == nil {
					fail("RefreshOnce: %v", err)
				}
			}
		})
	}
	for round := range 10 {
		e.update("staging", kyvernoReport("team-a", round%3, round+1))
		e.create("staging", trivyReport("team-z", round))
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	for _, msg := range errs {
		t.Error(msg)
	}
	for c, n := range entered {
		if n.Load() == 0 {
			t.Errorf("the %s never ran", c)
		}
		t.Logf("%s: %d critical sections, never two at once", c, n.Load())
	}
	e.projectAndRefresh()
	wantResultsMatch(t, e)
}

// TestLeaderFailover: when the projecting replica stops, a waiting one takes over.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := analytics.Config{PollInterval: 50 * time.Millisecond, LeaderRetryInterval: 50 * time.Millisecond}
	ctxA, stopA := context.WithCancel(e.ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); analytics.New(e.pool, nil, cfg).Run(ctxA) }()
	e.createAll("staging", generated("staging"))
	waitMatch(t, e, 30*time.Second)

	ctxB, stopB := context.WithCancel(e.ctx)
	doneB := make(chan struct{})
	go func() { defer close(doneB); analytics.New(e.pool, nil, cfg).Run(ctxB) }()
	defer func() { stopB(); <-doneB }()
	time.Sleep(100 * time.Millisecond) // B is waiting for the lock
	stopA()
	<-doneA
	e.update("staging", kyvernoReport("team-a", 2, 7))
	e.delete("staging", trivyReport("team-a", 2))
	lag := waitMatch(t, e, 15*time.Second)
	t.Logf("the second replica caught up %v after the writes", lag)
}
