-- Queries of the analytics projector and summary refresher (internal/analytics). The tables and
-- views are in sql/schema/00002_reporting.sql and 00007_analytics_normalized.sql; the published
-- contract is docs/sql.md.

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

-- name: AnalyticsDeleteReports :one
-- Removes the projection of every key changed in (after_revision, upto_revision], or of every key
-- of the cluster when rebuild: their rows in analytics_reports and their results. Returns the
-- outcomes those results referred to, for AnalyticsDeleteUnusedOutcomes.
-- (The keys are a union of the two cases, one of them switched off, rather than an OR: the planner
-- turns the IN into a join only where no OR surrounds it, and the projector plans every statement
-- for its parameters, so the switched-off arm folds away.)
WITH keys AS (
    SELECT c.key FROM changes c
    WHERE NOT @rebuild::boolean
      AND c.cluster = @cluster AND c.resource_version > @after_revision AND c.resource_version <= @upto_revision
    UNION
    SELECT p.key FROM analytics_reports p WHERE @rebuild::boolean AND p.cluster = @cluster
), gone_reports AS (
    DELETE FROM analytics_reports p
    USING keys k
    -- (The key's collation, "C", would make the namespace comparison one the index cannot serve.)
    WHERE p.cluster = @cluster AND p.report_namespace = analytics_key_namespace(k.key COLLATE "default") AND p.key = k.key
    RETURNING p.id
), gone_results AS (
    DELETE FROM analytics_results r
    USING gone_reports g
    WHERE r.report_id = g.id
    RETURNING r.outcome_id
)
SELECT coalesce(array_agg(DISTINCT g.outcome_id), '{}')::bigint[] AS outcomes FROM gone_results g;

-- name: AnalyticsInsertReports :execrows
-- Projects the current rows in reports of every key changed in (after_revision, upto_revision], or
-- of every key of the cluster when rebuild (deleted keys have no row and get nothing): a row of
-- analytics_reports per report and subject, the outcomes not interned yet, and a row of
-- analytics_results per result. The projector is the only writer of these tables (db.Elector),
-- so the outcomes are those found before the statement and those it inserts; a result whose
-- outcome is in neither violates NOT NULL and fails the batch. (The keys as in AnalyticsDeleteReports.)
WITH keys AS (
    SELECT c.key FROM changes c
    WHERE NOT @rebuild::boolean
      AND c.cluster = @cluster AND c.resource_version > @after_revision AND c.resource_version <= @upto_revision
    UNION
    SELECT r.key FROM reports r WHERE @rebuild::boolean AND r.cluster = @cluster
),
flat AS MATERIALIZED (
    SELECT f.cluster, f.key, f.result_index, f.report_resource_version, f.report_api_group, f.report_api_version,
           f.report_kind, f.report_namespace, f.report_name, f.report_uid, f.source, f.policy, f.rule, f.category,
           f.severity, f.result, f.scored, f.message, f."timestamp", f.namespace, f.resource_api_version,
           f.resource_kind, f.resource_namespace, f.resource_name, f.resource_uid, f.resources, f.properties, f.score,
           analytics_subject(f.namespace, f.resource_api_version, f.resource_kind, f.resource_namespace, f.resource_name,
                             f.resource_uid, f.resources) AS subject,
           analytics_outcome_digest(f.source, f.policy, f.rule, f.category, f.scored, f.message, f.properties) AS digest
    FROM keys k
    JOIN reports r ON r.cluster = @cluster AND r.key = k.key
    CROSS JOIN LATERAL analytics_flatten(r.cluster, r.key, r.resource_version, r.object) AS f
),
-- One row of analytics_reports per report and subject, its id taken here so the results can refer to it.
report_rows AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('analytics_reports', 'id')) AS id, d.*
    FROM (SELECT DISTINCT ON (x.key, x.subject)
                 x.cluster, x.key, x.subject, x.report_resource_version, x.report_api_group, x.report_api_version,
                 x.report_kind, x.report_namespace, x.report_name, x.report_uid, x.namespace, x.resource_api_version,
                 x.resource_kind, x.resource_namespace, x.resource_name, x.resource_uid, x.resources
          FROM flat x
          ORDER BY x.key, x.subject) d
),
new_reports AS (
    INSERT INTO analytics_reports (id, cluster, key, report_resource_version, report_api_group, report_api_version,
                                   report_kind, report_namespace, report_name, report_uid, namespace,
                                   resource_api_version, resource_kind, resource_namespace, resource_name,
                                   resource_uid, resources)
    SELECT p.id, p.cluster, p.key, p.report_resource_version, p.report_api_group, p.report_api_version, p.report_kind,
           analytics_key_namespace(p.key), p.report_name, p.report_uid, p.namespace, p.resource_api_version, p.resource_kind,
           p.resource_namespace, p.resource_name, p.resource_uid, p.resources
    FROM report_rows p
),
new_outcomes AS (
    INSERT INTO analytics_outcomes (digest, source, policy, rule, category, scored, message, properties)
    SELECT DISTINCT ON (x.digest) x.digest, x.source, x.policy, x.rule, x.category, x.scored, x.message, x.properties
    FROM flat x
    WHERE NOT EXISTS (SELECT FROM analytics_outcomes o WHERE o.digest = x.digest)
    ORDER BY x.digest
    ON CONFLICT (digest) DO NOTHING
    RETURNING id, digest
)
INSERT INTO analytics_results (report_id, outcome_id, "timestamp", score, result_index, severity_code, result_code)
SELECT p.id, coalesce(n.id, o.id), x."timestamp", x.score, x.result_index, analytics_code(x.severity), analytics_code(x.result)
FROM flat x
JOIN report_rows p ON p.key = x.key AND p.subject = x.subject
LEFT JOIN new_outcomes n ON n.digest = x.digest
LEFT JOIN analytics_outcomes o ON o.digest = x.digest
ORDER BY p.id, x.result_index;

-- name: AnalyticsDeleteUnusedOutcomes :execrows
-- Deletes the outcomes among the given ones that no result refers to any more (after the results
-- of a batch were replaced), so the interned values do not outlive the results that said them.
DELETE FROM analytics_outcomes o
WHERE o.id = ANY (@outcomes::bigint[])
  AND NOT EXISTS (SELECT FROM analytics_results r WHERE r.outcome_id = o.id);

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
-- The summaries are refreshed (and the projection analyzed) through SECURITY DEFINER functions
-- (migration 00011): both statements are the owner's alone, and the server need not own anything.
SELECT analytics_refresh('cluster_summary')::text;

-- name: AnalyticsRefreshNamespaceSummary :exec
SELECT analytics_refresh('namespace_summary')::text;

-- name: AnalyticsRefreshPolicySummary :exec
SELECT analytics_refresh('policy_summary')::text;

-- name: AnalyticsRefreshResourceSummary :exec
SELECT analytics_refresh('resource_summary')::text;

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

-- name: AnalyticsAnalyze :exec
-- Planner statistics of the projection, after a rebuild replaced a cluster's rows: the summaries'
-- and readers' joins are planned from them, and autovacuum would take about a minute.
SELECT analytics_analyze()::text;

-- name: MetricsAnalyticsLag :one
-- How far the projection of a cluster is behind its committed revision, in revisions and in
-- seconds since the checkpoint last moved (0 when caught up), for the analytics lag gauges.
SELECT (r.current - coalesce(c.revision, 0))::bigint AS lag_revisions,
       (CASE WHEN r.current > coalesce(c.revision, 0) AND c.projected_at IS NOT NULL
             THEN extract(epoch FROM now() - c.projected_at) ELSE 0 END)::double precision AS lag_seconds
FROM revisions r
LEFT JOIN analytics_checkpoints c ON c.cluster = r.cluster
WHERE r.cluster = $1;
