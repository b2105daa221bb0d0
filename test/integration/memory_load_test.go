package integration

// The bulk load of BenchmarkServerMemory: policy reports written straight into the storage tables
// with SQL, as the storage writes them (creating 10^6 reports through the API would take hours).

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	// memNamespaces: reports are spread over this many namespaces (ns-0000..).
	memNamespaces = 1000
	// memTemplates reports are created through the API and copied by the load.
	memTemplates         = 10
	memTemplateNamespace = "membench-templates"
	memTierLabel         = "bench.reports-server.io/tier"
	memUIDLabel          = "audit.kyverno.io/resource.uid"
	memCluster           = "default"
	// memChangeLog: the newest loaded creations also get change-log rows (the compacted revision
	// is set just below them), as a server that has been running a while has.
	memChangeLog = 10_000
	// memLoadChunk rows are inserted per statement, by memLoadWorkers connections.
	memLoadChunk   = 10_000
	memLoadWorkers = 2
)

// memPrefixEnd is the first key after every key that starts with prefix (which ends in "/").
func memPrefixEnd(prefix string) string { return prefix[:len(prefix)-1] + "0" }

func memNamespace(i int) string { return fmt.Sprintf("ns-%04d", i%memNamespaces) }

// memReport is a Kyverno-style policy report of one pod: 20 results of the Pod Security Standards
// policies (~10 KB of JSON), the report named after the pod's UID, labelled and owned as Kyverno
// labels and owns them.
func memReport(i int, name, namespace string) *unstructured.Unstructured {
	podUID := fmt.Sprintf("7f3c9e2a-0000-4000-8000-%012d", i)
	pod := fmt.Sprintf("app-%d-7d9f8c6b5-x%04d", i%97, i%10_000)
	var results []any
	summary := map[string]int64{}
	for j := range 20 {
		result := "pass"
		if (i+j)%7 == 0 {
			result = "fail"
		} else if (i+j)%19 == 0 {
			result = "warn"
		}
		summary[result]++
		policy := memPolicies[j%len(memPolicies)]
		results = append(results, map[string]any{
			"policy":   policy,
			"rule":     fmt.Sprintf("%s-rule-%d", policy, j),
			"result":   result,
			"scored":   true,
			"source":   "kyverno",
			"category": "Pod Security Standards (Restricted)",
			"severity": []string{"low", "medium", "high"}[j%3],
			"message": fmt.Sprintf("validation rule %d: spec.containers[*].securityContext of %s/%s must satisfy %s",
				j, namespace, pod, policy),
			"timestamp":  map[string]any{"seconds": int64(1_732_000_000 + i%86_400), "nanos": int64(0)},
			"properties": map[string]any{"process": "background scan", "policyVersion": fmt.Sprintf("v1.%d.%d", j%4, i%9)},
		})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2",
		"kind":       "PolicyReport",
		"metadata": map[string]any{
			"name":      name,
			"namespace": namespace,
			"labels": map[string]any{
				"app.kubernetes.io/managed-by": "kyverno",
				memUIDLabel:                    podUID,
				memTierLabel:                   fmt.Sprintf("t%d", i%10),
			},
			"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": podUID}},
		},
		"scope": map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace, "uid": podUID},
		"summary": map[string]any{
			"pass": summary["pass"], "fail": summary["fail"], "warn": summary["warn"], "error": int64(0), "skip": int64(0),
		},
		"results": results,
	}}
}

var memPolicies = []string{
	"disallow-capabilities-strict", "disallow-privilege-escalation", "require-run-as-nonroot",
	"restrict-seccomp-strict", "restrict-volume-types", "disallow-host-namespaces", "disallow-host-path",
}

// memLoad stores n reports (plus the memTemplates templates) in the database at url, unless it
// holds them already.
//
// The templates are created through the API by a server process (so their rows are exactly what
// the storage writes: metadata filled in by the API server, managedFields, the JSON the codec
// emits); the n reports are copies of them with their own name, namespace, UIDs, labels and
// scope, inserted by SQL: the generated columns follow. Their revisions are a permutation of the
// next n (creation order is not key order); the newest memChangeLog of them get their ADDED
// change-log rows and the compacted revision is set just below, as after compaction; the
// revision row is advanced to the last one. The analytics projector's checkpoint is moved to that
// revision too: the loaded reports are not projected (the analytics tables hold only the
// templates), which a memory measurement of the API paths does not need, and a server started
// afterwards does not rebuild the projection of 2*10^7 results.
func memLoad(b *testing.B, bin, url string, n int) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	p := memStart(b, bin, url) // migrates the database
	for i := range memTemplates {
		r := memReport(i, fmt.Sprintf("tmpl-%d", i), memTemplateNamespace)
		_, err := p.dynamic.Resource(memGVR).Namespace(memTemplateNamespace).Create(ctx, r, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatalf("create template: %v", err)
		}
	}
	p.stop(b)

	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	prefix := "/" + memGVR.Group + "/" + memGVR.Resource + "/"
	tmplPrefix := prefix + memTemplateNamespace + "/"
	var have int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM reports WHERE cluster = $1 AND key >= $2 AND key < $3`,
		memCluster, prefix, memPrefixEnd(prefix)).Scan(&have); err != nil {
		b.Fatal(err)
	}
	switch {
	case have >= n+memTemplates:
		// Earlier runs on a kept database (MEMORY_BENCH_DATABASE_URL) may have created more.
		b.Logf("database already holds %d reports", have)
		return
	case have != memTemplates:
		b.Fatalf("database holds %d policy reports, want %d (empty) or at least %d (loaded)", have, memTemplates, n+memTemplates)
	}
	var base int64
	if err := pool.QueryRow(ctx, `SELECT current FROM revisions WHERE cluster = $1`, memCluster).Scan(&base); err != nil {
		b.Fatal(err)
	}
	// Revision of report i: base + 1 + (i*step mod n), a permutation when step and n are coprime.
	step := 7919
	for n%step == 0 {
		step += 2
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, memLoadWorkers)
	for range memLoadWorkers {
		wg.Go(func() {
			for {
				lo := int(next.Add(memLoadChunk)) - memLoadChunk
				if lo >= n {
					return
				}
				hi := min(lo+memLoadChunk, n)
				if _, err := pool.Exec(ctx, memInsertSQL, memCluster, prefix, tmplPrefix, lo, hi, n, base, step, memNamespaces, memPrefixEnd(tmplPrefix)); err != nil {
					errs <- fmt.Errorf("insert reports %d..%d: %w", lo, hi, err)
					return
				}
				if hi%(memLoadChunk*20) == 0 {
					b.Logf("loaded %d reports (%v)", hi, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	current := base + int64(n)
	compacted := max(base, current-memChangeLog)
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT current FROM revisions WHERE cluster = $1 FOR UPDATE`, memCluster); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM changes WHERE cluster = $1 AND resource_version <= $2`, memCluster, compacted); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO changes (cluster, resource_version, key, event)
			SELECT cluster, resource_version, key, 'ADDED' FROM reports
			WHERE cluster = $1 AND resource_version > $2`, memCluster, compacted); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE revisions SET current = $2, compacted = $3 WHERE cluster = $1`,
			memCluster, current, compacted); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO analytics_checkpoints (cluster, revision, projected_at, duration_ms)
			VALUES ($1, $2, now(), 0)
			ON CONFLICT (cluster) DO UPDATE SET revision = excluded.revision, projected_at = excluded.projected_at`,
			memCluster, current)
		return err
	})
	if err != nil {
		b.Fatalf("load: change log and revisions: %v", err)
	}
	for _, table := range []string{"reports", "changes"} {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			b.Fatal(err)
		}
	}
	var avgJSON, avgStored float64
	var total string
	if err := pool.QueryRow(ctx, `SELECT avg(octet_length(object::text)), avg(pg_column_size(object)),
			pg_size_pretty(pg_total_relation_size('reports'))
		FROM reports WHERE cluster = $1 AND key >= $2 AND key < $3`, memCluster, tmplPrefix, memPrefixEnd(tmplPrefix)).
		Scan(&avgJSON, &avgStored, &total); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d reports in %v: %.0f bytes of JSON each (%.0f stored), table with indexes %s",
		n, time.Since(start).Round(time.Second), avgJSON, avgStored, total)
}

// memInsertSQL inserts reports lo..hi-1 of n ($4, $5, $6): copies of the templates (keys in
// [$3, $10))
// with the identity of report i as memReport gives it (name, namespace, UIDs, labels, scope,
// owner), at revision base + 1 + (i*step mod n) ($7, $8) in one of $9 namespaces.
const memInsertSQL = `
WITH t AS (
    SELECT array_agg(object ORDER BY key) AS objs FROM reports
    WHERE cluster = $1 AND key >= $3 AND key < $10
), s AS (
    SELECT i, 'ns-' || lpad((i % $9)::text, 4, '0') AS ns,
           '7f3c9e2a-0000-4000-8000-' || lpad(i::text, 12, '0') AS pod_uid,
           'app-' || (i % 97) || '-7d9f8c6b5-x' || lpad((i % 10000)::text, 4, '0') AS pod,
           $7::bigint + 1 + (i::bigint * $8) % $6 AS rv
    FROM generate_series($4::int, $5::int - 1) AS i
)
INSERT INTO reports (cluster, key, resource_version, object)
SELECT $1, $2 || s.ns || '/' || s.pod_uid, s.rv,
       o || jsonb_build_object(
           'metadata', (o -> 'metadata') || jsonb_build_object(
               'name', s.pod_uid,
               'namespace', s.ns,
               'uid', md5('report/' || s.i)::uuid::text,
               'labels', (o -> 'metadata' -> 'labels') || jsonb_build_object(
                   'audit.kyverno.io/resource.uid', s.pod_uid,
                   'bench.reports-server.io/tier', 't' || (s.i % 10)),
               'ownerReferences', jsonb_build_array((o -> 'metadata' -> 'ownerReferences' -> 0) ||
                   jsonb_build_object('name', s.pod, 'uid', s.pod_uid))),
           'scope', (o -> 'scope') || jsonb_build_object('name', s.pod, 'namespace', s.ns, 'uid', s.pod_uid))
FROM s, t, LATERAL (SELECT t.objs[1 + s.i % array_length(t.objs, 1)] AS o) x`
