-- The SQL contract counts each finding once. Kyverno writes ephemeral reports
-- (reports.kyverno.io) with the same results as the PolicyReports it is about to merge them into,
-- and deletes them seconds later: counting them doubled every finding while a scan was in
-- flight. From here on:
--
--   * the summaries (and so cluster_history, findingsummaries and the dashboard) count the final
--     reports only (wgpolicyk8s.io, openreports.io);
--   * reporting.results keeps every result and says which are ephemeral (a new last column,
--     `ephemeral`); analysts filter `WHERE NOT ephemeral` to count findings (docs/sql.md);
--   * the subject of a result comes from what Kyverno writes: a spec.owner with a name (Kyverno
--     leaves it empty in background-scan reports), else an ownerReference (the controller one
--     first), else its audit.kyverno.io/resource.* labels and annotations.
--
-- Every cluster is re-projected with the new rules: the projector rebuilds a cluster without a
-- checkpoint from its reports (internal/analytics), so the checkpoints are removed.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION analytics_flatten(p_cluster text, p_key text, p_resource_version bigint, obj jsonb)
    RETURNS SETOF analytics_results
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT p_cluster,
       p_key,
       (e.ord - 1)::integer,
       p_resource_version,
       split_part(p_key, '/', 2),
       rep.api_version,
       rep.kind,
       rep.namespace,
       rep.name,
       rep.uid,
       coalesce(nullif(e.r->>'source', ''), rep.source),
       e.r->>'policy',
       e.r->>'rule',
       e.r->>'category',
       lower(coalesce(e.r->>'severity', x.props->>'severity')),
       e.r->>'result',
       coalesce(e.r->>'result', 'fail') IN ('fail', 'warn', 'error'),
       CASE WHEN jsonb_typeof(e.r->'scored') = 'boolean' THEN (e.r->'scored')::boolean END,
       e.r->>'message',
       x.ts,
       coalesce(nullif(x.subject->>'namespace', ''), rep.namespace),
       x.subject->>'apiVersion',
       x.subject->>'kind',
       x.subject->>'namespace',
       x.subject->>'name',
       x.subject->>'uid',
       CASE WHEN jsonb_typeof(e.r->'resources') = 'array' THEN e.r->'resources' END,
       x.props,
       -- The CVSS-like score: "score" when it is a number, else the highest numeric
       -- "<vendor>.v3_score" (the Trivy adapter writes e.g. "nvd.v3_score", "redhat.v3_score").
       -- (The LIKE on the text form is a cheap test that such a key may exist: most results
       -- have none, and the subquery costs several times more.)
       coalesce(analytics_number(x.props->>'score'),
                CASE WHEN x.props::text LIKE '%.v3\_score"%' THEN
                    (SELECT max(analytics_number(p.value)) FROM jsonb_each_text(x.props) AS p
                     WHERE p.key LIKE '%.v3\_score')
                END)
FROM (
    -- Once per report. OFFSET 0 keeps this a separate step, so the stored (compressed) object is
    -- decompressed once (o is an in-memory copy) instead of once per expression and result.
    SELECT d.o->>'apiVersion' AS api_version,
           d.o->>'kind' AS kind,
           coalesce(d.o->'metadata'->>'namespace', '') AS namespace,
           d.o->'metadata'->>'name' AS name,
           d.o->'metadata'->>'uid' AS uid,
           d.o->>'source' AS source,
           CASE
               WHEN jsonb_typeof(d.o->'results') = 'array' THEN d.o->'results'
               WHEN jsonb_typeof(d.o->'spec'->'results') = 'array' THEN d.o->'spec'->'results'
               ELSE '[]'::jsonb
           END AS results,
           coalesce(
               CASE WHEN jsonb_typeof(d.o->'scope') = 'object' THEN d.o->'scope' END,
               -- Kyverno leaves spec.owner as its zero value (every field empty) in the reports
               -- of a background scan: only an owner with a name names the subject.
               CASE WHEN jsonb_typeof(d.o->'spec'->'owner') = 'object' AND coalesce(d.o->'spec'->'owner'->>'name', '') <> ''
                   THEN d.o->'spec'->'owner' || jsonb_build_object('namespace', d.o->'metadata'->'namespace') END,
               -- The owner reference, the controller one first.
               CASE WHEN jsonb_typeof(d.o->'metadata'->'ownerReferences') = 'array'
                   THEN (SELECT ref.value || jsonb_build_object('namespace', d.o->'metadata'->'namespace')
                         FROM jsonb_array_elements(d.o->'metadata'->'ownerReferences') AS ref(value)
                         WHERE jsonb_typeof(ref.value) = 'object'
                         ORDER BY (ref.value->'controller' = 'true'::jsonb) IS TRUE DESC
                         LIMIT 1) END,
               -- Kyverno's labels and annotations naming the resource (pkg/utils/report).
               CASE WHEN coalesce(d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.uid',
                                  d.o->'metadata'->'annotations'->>'audit.kyverno.io/resource.name') IS NOT NULL
                   THEN jsonb_strip_nulls(jsonb_build_object(
                       'apiVersion', CASE WHEN coalesce(d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.group', '') = ''
                                          THEN d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.version'
                                          ELSE (d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.group') || '/' ||
                                               (d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.version') END,
                       'kind', d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.kind',
                       'name', d.o->'metadata'->'annotations'->>'audit.kyverno.io/resource.name',
                       'uid', d.o->'metadata'->'labels'->>'audit.kyverno.io/resource.uid',
                       'namespace', coalesce(d.o->'metadata'->'annotations'->>'audit.kyverno.io/resource.namespace',
                                             nullif(d.o->'metadata'->>'namespace', '')))) END
           ) AS subject
    FROM (SELECT obj || '{}'::jsonb AS o OFFSET 0) AS d
    OFFSET 0
) AS rep
CROSS JOIN LATERAL jsonb_array_elements(rep.results) WITH ORDINALITY AS e(r, ord)
CROSS JOIN LATERAL (SELECT
        CASE WHEN jsonb_typeof(e.r->'properties') = 'object' THEN e.r->'properties' END AS props,
        CASE WHEN jsonb_typeof(e.r->'resources'->0) = 'object' THEN e.r->'resources'->0 ELSE rep.subject END AS subject,
        -- timestamp {seconds, nanos}: nanos is added with its sign (some producers write negative
        -- nanos), rounded to microseconds; seconds outside years 1..9999 give NULL.
        CASE WHEN jsonb_typeof(e.r->'timestamp'->'seconds') = 'number' THEN
            CASE WHEN (e.r->'timestamp'->'seconds')::numeric BETWEEN -62135596800 AND 253402300799 THEN
                to_timestamp(trunc((e.r->'timestamp'->'seconds')::numeric)::double precision)
                + CASE WHEN jsonb_typeof(e.r->'timestamp'->'nanos') = 'number' THEN
                      CASE WHEN (e.r->'timestamp'->'nanos')::numeric BETWEEN -999999999 AND 999999999
                           THEN round((e.r->'timestamp'->'nanos')::numeric / 1000) * interval '1 microsecond'
                           ELSE interval '0' END
                      ELSE interval '0' END
            END
        END AS ts
    ) AS x
$$;
-- +goose StatementEnd
DROP VIEW reporting.cluster_summary;
DROP MATERIALIZED VIEW analytics_cluster_summary;
DROP VIEW reporting.namespace_summary;
DROP MATERIALIZED VIEW analytics_namespace_summary;
DROP VIEW reporting.policy_summary;
DROP MATERIALIZED VIEW analytics_policy_summary;
DROP VIEW reporting.resource_summary;
DROP MATERIALIZED VIEW analytics_resource_summary;
CREATE MATERIALIZED VIEW analytics_cluster_summary AS
SELECT cluster,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
WHERE report_api_group <> 'reports.kyverno.io'
GROUP BY cluster;
CREATE UNIQUE INDEX analytics_cluster_summary_key ON analytics_cluster_summary (cluster);
CREATE VIEW reporting.cluster_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_cluster_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_namespace_summary AS
SELECT cluster, namespace,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
WHERE report_api_group <> 'reports.kyverno.io'
GROUP BY cluster, namespace;
CREATE UNIQUE INDEX analytics_namespace_summary_key ON analytics_namespace_summary (cluster, namespace);
CREATE VIEW reporting.namespace_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_namespace_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_policy_summary AS
SELECT cluster, coalesce(source, '') AS source, coalesce(policy, '') AS policy,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
WHERE report_api_group <> 'reports.kyverno.io'
GROUP BY cluster, coalesce(source, ''), coalesce(policy, '');
CREATE UNIQUE INDEX analytics_policy_summary_key ON analytics_policy_summary (cluster, source, policy);
CREATE VIEW reporting.policy_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_policy_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_resource_summary AS
SELECT cluster, namespace, coalesce(resource_kind, '') AS resource_kind, coalesce(resource_name, '') AS resource_name,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
WHERE report_api_group <> 'reports.kyverno.io'
GROUP BY cluster, namespace, coalesce(resource_kind, ''), coalesce(resource_name, '');
CREATE UNIQUE INDEX analytics_resource_summary_key ON analytics_resource_summary (cluster, namespace, resource_kind, resource_name);
CREATE VIEW reporting.resource_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_resource_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
-- +goose StatementBegin
CREATE OR REPLACE VIEW reporting.results WITH (security_barrier) AS
SELECT r.cluster, r.report_api_group, r.report_api_version, r.report_kind, r.report_namespace, r.report_name,
       r.report_uid, r.result_index, r.source, r.policy, r.rule, r.category, r.severity, r.result, r.finding,
       r.scored, r.message, r."timestamp", r.namespace, r.resource_api_version, r.resource_kind,
       r.resource_namespace, r.resource_name, r.resource_uid, r.resources, r.properties, r.score,
       r.report_api_group = 'reports.kyverno.io' AS ephemeral
FROM analytics_results r
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR r.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
-- +goose StatementEnd
DELETE FROM analytics_checkpoints;

-- +goose Down
DROP VIEW reporting.results;
-- +goose StatementBegin
CREATE VIEW reporting.results WITH (security_barrier) AS
SELECT r.cluster, r.report_api_group, r.report_api_version, r.report_kind, r.report_namespace, r.report_name,
       r.report_uid, r.result_index, r.source, r.policy, r.rule, r.category, r.severity, r.result, r.finding,
       r.scored, r.message, r."timestamp", r.namespace, r.resource_api_version, r.resource_kind,
       r.resource_namespace, r.resource_name, r.resource_uid, r.resources, r.properties, r.score
FROM analytics_results r
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR r.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION analytics_flatten(p_cluster text, p_key text, p_resource_version bigint, obj jsonb)
    RETURNS SETOF analytics_results
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT p_cluster,
       p_key,
       (e.ord - 1)::integer,
       p_resource_version,
       split_part(p_key, '/', 2),
       rep.api_version,
       rep.kind,
       rep.namespace,
       rep.name,
       rep.uid,
       coalesce(nullif(e.r->>'source', ''), rep.source),
       e.r->>'policy',
       e.r->>'rule',
       e.r->>'category',
       lower(coalesce(e.r->>'severity', x.props->>'severity')),
       e.r->>'result',
       coalesce(e.r->>'result', 'fail') IN ('fail', 'warn', 'error'),
       CASE WHEN jsonb_typeof(e.r->'scored') = 'boolean' THEN (e.r->'scored')::boolean END,
       e.r->>'message',
       x.ts,
       coalesce(nullif(x.subject->>'namespace', ''), rep.namespace),
       x.subject->>'apiVersion',
       x.subject->>'kind',
       x.subject->>'namespace',
       x.subject->>'name',
       x.subject->>'uid',
       CASE WHEN jsonb_typeof(e.r->'resources') = 'array' THEN e.r->'resources' END,
       x.props,
       -- The CVSS-like score: "score" when it is a number, else the highest numeric
       -- "<vendor>.v3_score" (the Trivy adapter writes e.g. "nvd.v3_score", "redhat.v3_score").
       -- (The LIKE on the text form is a cheap test that such a key may exist: most results
       -- have none, and the subquery costs several times more.)
       coalesce(analytics_number(x.props->>'score'),
                CASE WHEN x.props::text LIKE '%.v3\_score"%' THEN
                    (SELECT max(analytics_number(p.value)) FROM jsonb_each_text(x.props) AS p
                     WHERE p.key LIKE '%.v3\_score')
                END)
FROM (
    -- Once per report. OFFSET 0 keeps this a separate step, so the stored (compressed) object is
    -- decompressed once (o is an in-memory copy) instead of once per expression and result.
    SELECT d.o->>'apiVersion' AS api_version,
           d.o->>'kind' AS kind,
           coalesce(d.o->'metadata'->>'namespace', '') AS namespace,
           d.o->'metadata'->>'name' AS name,
           d.o->'metadata'->>'uid' AS uid,
           d.o->>'source' AS source,
           CASE
               WHEN jsonb_typeof(d.o->'results') = 'array' THEN d.o->'results'
               WHEN jsonb_typeof(d.o->'spec'->'results') = 'array' THEN d.o->'spec'->'results'
               ELSE '[]'::jsonb
           END AS results,
           CASE
               WHEN jsonb_typeof(d.o->'scope') = 'object' THEN d.o->'scope'
               WHEN jsonb_typeof(d.o->'spec'->'owner') = 'object'
                   THEN d.o->'spec'->'owner' || jsonb_build_object('namespace', d.o->'metadata'->'namespace')
               WHEN jsonb_typeof(d.o->'metadata'->'ownerReferences') = 'array'
                   THEN (SELECT ref.value || jsonb_build_object('namespace', d.o->'metadata'->'namespace')
                         FROM jsonb_array_elements(d.o->'metadata'->'ownerReferences') AS ref(value)
                         WHERE jsonb_typeof(ref.value) = 'object' AND ref.value->'controller' = 'true'::jsonb
                         LIMIT 1)
           END AS subject
    FROM (SELECT obj || '{}'::jsonb AS o OFFSET 0) AS d
    OFFSET 0
) AS rep
CROSS JOIN LATERAL jsonb_array_elements(rep.results) WITH ORDINALITY AS e(r, ord)
CROSS JOIN LATERAL (SELECT
        CASE WHEN jsonb_typeof(e.r->'properties') = 'object' THEN e.r->'properties' END AS props,
        CASE WHEN jsonb_typeof(e.r->'resources'->0) = 'object' THEN e.r->'resources'->0 ELSE rep.subject END AS subject,
        -- timestamp {seconds, nanos}: nanos is added with its sign (some producers write negative
        -- nanos), rounded to microseconds; seconds outside years 1..9999 give NULL.
        CASE WHEN jsonb_typeof(e.r->'timestamp'->'seconds') = 'number' THEN
            CASE WHEN (e.r->'timestamp'->'seconds')::numeric BETWEEN -62135596800 AND 253402300799 THEN
                to_timestamp(trunc((e.r->'timestamp'->'seconds')::numeric)::double precision)
                + CASE WHEN jsonb_typeof(e.r->'timestamp'->'nanos') = 'number' THEN
                      CASE WHEN (e.r->'timestamp'->'nanos')::numeric BETWEEN -999999999 AND 999999999
                           THEN round((e.r->'timestamp'->'nanos')::numeric / 1000) * interval '1 microsecond'
                           ELSE interval '0' END
                      ELSE interval '0' END
            END
        END AS ts
    ) AS x
$$;
-- +goose StatementEnd
DROP VIEW reporting.cluster_summary;
DROP MATERIALIZED VIEW analytics_cluster_summary;
DROP VIEW reporting.namespace_summary;
DROP MATERIALIZED VIEW analytics_namespace_summary;
DROP VIEW reporting.policy_summary;
DROP MATERIALIZED VIEW analytics_policy_summary;
DROP VIEW reporting.resource_summary;
DROP MATERIALIZED VIEW analytics_resource_summary;
CREATE MATERIALIZED VIEW analytics_cluster_summary AS
SELECT cluster,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
GROUP BY cluster;
CREATE UNIQUE INDEX analytics_cluster_summary_key ON analytics_cluster_summary (cluster);
CREATE VIEW reporting.cluster_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_cluster_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_namespace_summary AS
SELECT cluster, namespace,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
GROUP BY cluster, namespace;
CREATE UNIQUE INDEX analytics_namespace_summary_key ON analytics_namespace_summary (cluster, namespace);
CREATE VIEW reporting.namespace_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_namespace_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_policy_summary AS
SELECT cluster, coalesce(source, '') AS source, coalesce(policy, '') AS policy,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
GROUP BY cluster, coalesce(source, ''), coalesce(policy, '');
CREATE UNIQUE INDEX analytics_policy_summary_key ON analytics_policy_summary (cluster, source, policy);
CREATE VIEW reporting.policy_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_policy_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_resource_summary AS
SELECT cluster, namespace, coalesce(resource_kind, '') AS resource_kind, coalesce(resource_name, '') AS resource_name,
       count(*) AS results,
       count(*) FILTER (WHERE result = 'pass') AS pass,
       count(*) FILTER (WHERE result = 'fail') AS fail,
       count(*) FILTER (WHERE result = 'warn') AS warn,
       count(*) FILTER (WHERE result = 'error') AS error,
       count(*) FILTER (WHERE result = 'skip') AS skip,
       count(*) FILTER (WHERE finding) AS findings,
       count(*) FILTER (WHERE finding AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE finding AND severity = 'high') AS high,
       count(*) FILTER (WHERE finding AND severity = 'medium') AS medium,
       count(*) FILTER (WHERE finding AND severity = 'low') AS low,
       count(*) FILTER (WHERE finding AND severity = 'info') AS info
FROM analytics_results
GROUP BY cluster, namespace, coalesce(resource_kind, ''), coalesce(resource_name, '');
CREATE UNIQUE INDEX analytics_resource_summary_key ON analytics_resource_summary (cluster, namespace, resource_kind, resource_name);
CREATE VIEW reporting.resource_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_resource_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
DELETE FROM analytics_checkpoints;
