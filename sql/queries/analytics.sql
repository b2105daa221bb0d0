-- Queries of the analytics projector and summary refresher (internal/analytics). The tables and
-- views are in sql/schema/00002_reporting.sql; the published contract is docs/sql.md.

-- name: AnalyticsClusters :many
-- Every cluster with reports, and how far the projector is behind it.
SELECT v.cluster, v.current, v.compacted, coalesce(k.revision, -1)::bigint AS checkpoint
FROM revisions v
LEFT JOIN analytics_checkpoints k ON k.cluster = v.cluster
ORDER BY v.cluster;

-- name: AnalyticsClusterState :one
-- The first statement of a projection transaction: its snapshot holds exactly the changes up to
-- `current` (revisions are commit-ordered), so the rows it flattens are the state at `current`.
SELECT v.current, v.compacted, coalesce(k.revision, -1)::bigint AS checkpoint
FROM revisions v
LEFT JOIN analytics_checkpoints k ON k.cluster = v.cluster
WHERE v.cluster = @cluster;

-- name: AnalyticsDeleteChanged :execrows
-- The result rows of every key changed in (after_revision, upto_revision].
DELETE FROM analytics_results r
WHERE r.cluster = @cluster
  AND r.key IN (
    SELECT c.key FROM changes c
    WHERE c.cluster = @cluster AND c.resource_version > @after_revision AND c.resource_version <= @upto_revision);

-- name: AnalyticsInsertChanged :execrows
-- The current result rows of every key changed in (after_revision, upto_revision]; deleted keys
-- have no row in reports and get none.
INSERT INTO analytics_results
SELECT f.*
FROM reports r
CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f
WHERE r.cluster = @cluster
  AND r.key IN (
    SELECT c.key FROM changes c
    WHERE c.cluster = @cluster AND c.resource_version > @after_revision AND c.resource_version <= @upto_revision);

-- name: AnalyticsDeleteCluster :execrows
DELETE FROM analytics_results WHERE cluster = @cluster;

-- name: AnalyticsInsertCluster :execrows
INSERT INTO analytics_results
SELECT f.*
FROM reports r
CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f
WHERE r.cluster = @cluster;

-- name: AnalyticsSetCheckpoint :exec
INSERT INTO analytics_checkpoints (cluster, revision, projected_at, duration_ms, rebuilt_at)
VALUES (@cluster, @revision, clock_timestamp(), @duration_ms,
        CASE WHEN @rebuilt::boolean THEN clock_timestamp() END)
ON CONFLICT (cluster) DO UPDATE SET
    revision = excluded.revision,
    projected_at = excluded.projected_at,
    duration_ms = excluded.duration_ms,
    rebuilt_at = coalesce(excluded.rebuilt_at, analytics_checkpoints.rebuilt_at);

-- name: AnalyticsGeneration :one
-- The projection generation: grows whenever the projector moves a checkpoint.
SELECT coalesce(sum(revision), 0)::bigint AS generation FROM analytics_checkpoints;

-- name: AnalyticsRefreshes :many
SELECT name, generation FROM analytics_refreshes ORDER BY name;

-- name: AnalyticsRefreshClusterSummary :exec
REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_cluster_summary;

-- name: AnalyticsRefreshNamespaceSummary :exec
REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_namespace_summary;

-- name: AnalyticsRefreshPolicySummary :exec
REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_policy_summary;

-- name: AnalyticsRefreshResourceSummary :exec
REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_resource_summary;

-- name: AnalyticsRecordRefresh :exec
UPDATE analytics_refreshes
SET refreshed_at = clock_timestamp(), duration_ms = @duration_ms::double precision, generation = @generation
WHERE name = @name;

-- name: AnalyticsRecordHistory :execrows
-- Appends the cluster summary to the history when a cluster's counts changed or its latest
-- history row is at least an hour old.
INSERT INTO analytics_cluster_history
    (cluster, at, results, pass, fail, warn, error, skip, findings, critical, high, medium, low, info)
SELECT s.cluster, clock_timestamp(), s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings,
       s.critical, s.high, s.medium, s.low, s.info
FROM analytics_cluster_summary s
LEFT JOIN LATERAL (
    SELECT h.* FROM analytics_cluster_history h WHERE h.cluster = s.cluster ORDER BY h.at DESC LIMIT 1
) l ON true
WHERE l.cluster IS NULL
   OR l.at < clock_timestamp() - interval '1 hour'
   OR (l.results, l.pass, l.fail, l.warn, l.error, l.skip, l.findings, l.critical, l.high, l.medium, l.low, l.info)
      IS DISTINCT FROM
      (s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings, s.critical, s.high, s.medium, s.low, s.info);

-- name: AnalyticsPruneHistory :execrows
DELETE FROM analytics_cluster_history WHERE at < clock_timestamp() - interval '400 days';
