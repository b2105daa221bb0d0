package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// TestMigrationsKeepReports rolls the newest migration back and applies it again on a database
// holding reports: every report stays, with its object unchanged, and the generated columns the
// migration rebuilds are recomputed from the objects.
func TestMigrationsKeepReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := dbtest.EmptyURL(t)
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m, err := db.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	const reports = 500
	if _, err := pool.Exec(ctx, `
		INSERT INTO reports (cluster, key, resource_version, object)
		SELECT 'c', '/wgpolicyk8s.io/policyreports/ns/r' || i, i,
		       jsonb_build_object('apiVersion', 'wgpolicyk8s.io/v1alpha2', 'kind', 'PolicyReport',
		           'metadata', jsonb_build_object('name', 'r' || i, 'namespace', 'ns'),
		           'summary', jsonb_build_object('pass', i, 'fail', i % 7))
		FROM generate_series(1, $1) AS i`, reports); err != nil {
		t.Fatal(err)
	}
	// A count only the newest migration can store (beyond 2^31-1) would make the rollback fail
	// by design; it is checked after the final up.
	var reference string // digest of the objects before any step
	check := func(step string) {
		t.Helper()
		var n, pass, fail int64
		var digest string
		if err := pool.QueryRow(ctx, `SELECT count(*), sum(summary_pass), sum(summary_fail), md5(string_agg(object::text, '' ORDER BY key))
			FROM reports WHERE cluster = 'c'`).Scan(&n, &pass, &fail, &digest); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		var wantFail int64
		for i := 1; i <= reports; i++ {
			wantFail += int64(i % 7)
		}
		if n != reports || pass != reports*(reports+1)/2 || fail != wantFail {
			t.Errorf("%s: %d reports, pass %d, fail %d; want %d, %d, %d", step, n, pass, fail, reports, reports*(reports+1)/2, wantFail)
		}
		if reference == "" {
			reference = digest
		} else if digest != reference {
			t.Errorf("%s: stored objects changed", step)
		}
	}
	check("before")
	if err := m.Down(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	check("after down")
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	check("after up")

	big := fmt.Sprintf(`{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{"name":"big","namespace":"ns"},"summary":{"pass":%d}}`, int64(1)<<40)
	if _, err := pool.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ('c', '/wgpolicyk8s.io/policyreports/ns/big', 9999, $1)`, big); err != nil {
		t.Fatalf("a summary count beyond 2^31-1: %v", err)
	}
	var pass int64
	if err := pool.QueryRow(ctx, `SELECT summary_pass FROM reports WHERE key = '/wgpolicyk8s.io/policyreports/ns/big'`).Scan(&pass); err != nil || pass != 2147483647 {
		t.Errorf("summary_pass of a count beyond 2^31-1 = %d (%v), want it clamped to 2147483647", pass, err)
	}
}

// TestLeanChangeLogMigration writes a history (creates, updates, deletes, a re-creation) through
// the storage's own statements, then rolls back 00008_lean_changes, which puts the written state
// back into every change row, and applies it again: the change log the watchers read (ReadChanges)
// is the same before, in between (as stored) and after, event for event.
func TestLeanChangeLogMigration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := dbtest.EmptyURL(t)
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	q := sqlc.New()
	const cluster = "c"
	if err := q.EnsureCluster(ctx, pool, cluster); err != nil {
		t.Fatal(err)
	}
	rv := int64(0)
	current := map[string]int64{}    // key -> resource version of its current row
	stateOf := map[string][]byte{}   // key -> its current object
	written := map[int64][2][]byte{} // resource version -> the object a write wrote and the one it replaced
	record := func(key string, obj []byte) {
		written[rv] = [2][]byte{obj, stateOf[key]}
		if obj == nil {
			delete(stateOf, key)
		} else {
			stateOf[key] = obj
		}
	}
	object := func(name string, gen int) []byte {
		return fmt.Appendf(nil, `{"kind":"PolicyReport","metadata":{"name":%q,"labels":{"gen":"%d"}},"results":[{"policy":"p","result":"pass","message":"version %d"}]}`, name, gen, gen)
	}
	write := func(what string, n int64, err error) {
		t.Helper()
		if err != nil || n != 1 {
			t.Fatalf("%s: %d rows, %v", what, n, err)
		}
	}
	for i := range 40 {
		key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
		rv++
		n, err := q.CreateObject(ctx, pool, sqlc.CreateObjectParams{Cluster: cluster, ResourceVersion: rv, Key: key, Object: object(key, 0)})
		write("create "+key, n, err)
		record(key, object(key, 0))
		current[key] = rv
	}
	for gen := 1; gen <= 2; gen++ {
		for i := 0; i < 40; i += 2 {
			key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
			rv++
			n, err := q.ReplaceObject(ctx, pool, sqlc.ReplaceObjectParams{Cluster: cluster, ResourceVersion: rv,
				ExpectedResourceVersion: current[key], Object: object(key, gen), Key: key})
			write("update "+key, n, err)
			record(key, object(key, gen))
			current[key] = rv
		}
	}
	for i := 0; i < 40; i += 4 {
		key := fmt.Sprintf("/wgpolicyk8s.io/policyreports/ns/r%02d", i)
		rv++
		n, err := q.RemoveObject(ctx, pool, sqlc.RemoveObjectParams{Cluster: cluster, ResourceVersion: rv,
			ExpectedResourceVersion: current[key], Key: key})
		write("delete "+key, n, err)
		record(key, nil)
		if i%8 == 0 {
			rv++
			n, err := q.CreateObject(ctx, pool, sqlc.CreateObjectParams{Cluster: cluster, ResourceVersion: rv, Key: key, Object: object(key, 9)})
			write("re-create "+key, n, err)
			record(key, object(key, 9))
		}
	}
	if err := q.SetRevision(ctx, pool, sqlc.SetRevisionParams{Current: rv, Cluster: cluster}); err != nil {
		t.Fatal(err)
	}

	type event struct{ object, prev string }
	asText := func(b []byte) string {
		if b == nil {
			return "<nil>"
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	readLog := func(step string) map[int64]event {
		t.Helper()
		rows, err := q.ReadChanges(ctx, pool, sqlc.ReadChangesParams{AfterRevision: 0, RowLimit: 10_000, Cluster: cluster})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		out := map[int64]event{}
		for _, r := range rows {
			out[r.ResourceVersion] = event{asText(r.Object), asText(r.PrevObject)}
		}
		if int64(len(out)) != rv {
			t.Fatalf("%s: %d changes, want %d", step, len(out), rv)
		}
		return out
	}
	before := readLog("before")
	for r, w := range written {
		if want := (event{asText(w[0]), asText(w[1])}); before[r] != want {
			t.Errorf("change %d = %+v, want what the write wrote and replaced: %+v", r, before[r], want)
		}
	}

	m, err := db.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.DownTo(ctx, 7); err != nil {
		t.Fatalf("down: %v", err)
	}
	stored := map[int64]event{}
	rows, err := pool.Query(ctx, `SELECT resource_version, object, prev_object FROM changes WHERE cluster = $1`, cluster)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r int64
		var obj, prev []byte
		if err := rows.Scan(&r, &obj, &prev); err != nil {
			t.Fatal(err)
		}
		stored[r] = event{asText(obj), asText(prev)}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	after := readLog("after")
	for r, want := range before {
		if got := stored[r]; got != want {
			t.Errorf("change %d as stored after the rollback = %+v, want %+v", r, got, want)
		}
		if got := after[r]; got != want {
			t.Errorf("change %d after down and up = %+v, want %+v", r, got, want)
		}
	}
}
