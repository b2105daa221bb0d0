// Package benchreport is the report the write and read benchmarks create (make bench-compare,
// BenchmarkWrites, BenchmarkCreateCPU), in one place so that they measure the same object, the
// wait for the analytics projection to have their results, the PostgreSQL server whose CPU they
// count, and the sizes of its relations they compare with etcd's.
package benchreport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/procstat"
)

// Results is the number of results of a report New makes.
const Results = 20

// New is a PolicyReport (of apiVersion: a report group's or a CRD's) of Results results, about
// 10 KB of JSON, like a Kyverno report of a workload with many rules.
func New(apiVersion, namespace, name string) *unstructured.Unstructured {
	results := make([]any, Results)
	for i := range results {
		results[i] = map[string]any{
			"policy":   fmt.Sprintf("policy-%02d", i),
			"rule":     fmt.Sprintf("rule-%02d-check-something-long", i),
			"result":   []string{"pass", "fail", "warn"}[i%3],
			"severity": []string{"low", "medium", "high", "critical"}[i%4],
			"category": "Pod Security Standards (Restricted)",
			"source":   "kyverno",
			"scored":   true,
			"message":  "validation error: " + strings.Repeat("the container must set a field to a value; ", 6),
			"timestamp": map[string]any{
				"seconds": int64(1764000000 + i), "nanos": int64(0),
			},
			"properties": map[string]any{"process": "background scan", "index": fmt.Sprint(i)},
		}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       "PolicyReport",
		"metadata": map[string]any{
			"name":      name,
			"namespace": namespace,
			"labels": map[string]any{
				"app.kubernetes.io/managed-by":  "kyverno",
				"audit.kyverno.io/resource.uid": "0b5f5a0e-2c1d-4a47-9d55-" + fmt.Sprintf("%012d", len(name)),
			},
		},
		"scope":   map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "name": name},
		"summary": map[string]any{"pass": int64(7), "fail": int64(7), "warn": int64(6), "error": int64(0), "skip": int64(0)},
		"results": results,
	}}
}

// WaitProjected waits until the analytics projection of the database at url holds at least
// results result rows, or timeout passes.
func WaitProjected(ctx context.Context, url string, results int, timeout time.Duration) error {
	return poll(ctx, url, "SELECT count(*) FROM analytics_results", timeout,
		func(got int) bool { return got >= results },
		func(got int) error {
			return fmt.Errorf("the analytics projection holds %d results after %s, want %d", got, timeout, results)
		})
}

// WaitCaughtUp waits until the analytics projection of the database at url has reached every
// cluster's current revision (rewrites change no count of results, so WaitProjected cannot tell),
// or timeout passes.
func WaitCaughtUp(ctx context.Context, url string, timeout time.Duration) error {
	return poll(ctx, url, `SELECT count(*) FROM revisions v
		LEFT JOIN analytics_checkpoints k ON k.cluster = v.cluster
		WHERE coalesce(k.revision, -1) < v.current`, timeout,
		func(behind int) bool { return behind == 0 },
		func(behind int) error {
			return fmt.Errorf("the analytics projection is behind in %d clusters after %s", behind, timeout)
		})
}

// poll runs query, which returns one count, on a connection to url every 100 ms until done
// accepts the count, or timeout passes (the error is then late's).
func poll(ctx context.Context, url, query string, timeout time.Duration, done func(int) bool, late func(int) error) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(timeout)
	for {
		var n int
		if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
			return fmt.Errorf("poll the analytics projection: %w", err)
		}
		if done(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return late(n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ErrNotVisible is Postmaster's error when the server is no process this one can see.
var ErrNotVisible = errors.New("PostgreSQL's server is no process this one can see (a server on another machine, or in another PID namespace), so its CPU cannot be counted")

// Postmaster is the process ID of the PostgreSQL server at url: the parent of the backend that
// answers a connection to it. The CPU of that process and its descendants
// (procstat.TreeCPUTime) is that server's alone; counting every process named postgres, as the
// benchmarks did before, also counts any other server of the machine, and goes backwards when
// one stops. ErrNotVisible when the server is no process this one can see.
func Postmaster(ctx context.Context, url string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, fmt.Errorf("find PostgreSQL's server process: %w", err)
	}
	notVisible := func(err error) error { return fmt.Errorf("%w: backend %d: %v", ErrNotVisible, backend, err) }
	p, err := procstat.Lookup(backend)
	if err != nil || p.Comm != "postgres" {
		return 0, notVisible(fmt.Errorf("process %d is %+v (%v)", backend, p, err))
	}
	postmaster, err := procstat.Lookup(p.PPID)
	if err != nil || postmaster.Comm != "postgres" {
		return 0, notVisible(fmt.Errorf("its parent %d is %+v (%v)", p.PPID, postmaster, err))
	}
	return p.PPID, nil
}

// Relation is the size of one table or materialized view: its heap (the main fork), its TOAST
// (the TOAST table and its index), its indexes, and the whole (pg_total_relation_size).
type Relation struct{ Heap, TOAST, Indexes, Total int64 }

// Relations runs VACUUM on the database at url and returns the size of each of its tables and
// materialized views, by schema-qualified name.
func Relations(ctx context.Context, url string) (map[string]Relation, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "VACUUM"); err != nil {
		return nil, fmt.Errorf("VACUUM: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname, pg_relation_size(c.oid),
		       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`)
	if err != nil {
		return nil, fmt.Errorf("relation sizes: %w", err)
	}
	out := map[string]Relation{}
	for rows.Next() {
		var name string
		var r Relation
		if err := rows.Scan(&name, &r.Heap, &r.TOAST, &r.Indexes, &r.Total); err != nil {
			return nil, fmt.Errorf("relation sizes: %w", err)
		}
		out[name] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("relation sizes: %w", err)
	}
	return out, nil
}
