-- The published analytics schema `reporting` (the contract for analysts and BI tools, described
-- column by column in docs/sql.md) and the private tables behind it.
--
-- reporting.results is one row per result of every stored report. Unnesting the JSONB of every
-- report at query time cannot use an index, so results are flattened into the private table
-- analytics_results by the projector (internal/analytics): it follows the change log in revision
-- order and, for the keys changed since its checkpoint, deletes their rows and inserts the new
-- ones, in one transaction with the checkpoint. The write path does not pay for it; the lag is
-- visible in reporting.refresh_status. Summaries are materialized views refreshed CONCURRENTLY by
-- one replica at a time. See docs/design.md ("Analytics") for the measurements behind this.
--
-- Published views read private tables with the privileges of their owner (the migrating user);
-- the NOLOGIN role reports_reader may read the views and nothing else.

-- +goose Up

-- analytics_number parses a property value as a number: plain decimal notation only, anything
-- else (empty, "n/a", "1e999", "9.8 (high)") is NULL. It never raises an error, so one odd value
-- cannot stop the projector.
-- +goose StatementBegin
CREATE FUNCTION analytics_number(v text) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v ~ '^\s*[0-9]{1,6}(\.[0-9]{1,20})?\s*$' THEN btrim(v)::double precision END $$;
-- +goose StatementEnd

-- One row per result of every stored report: maintained by the projector only.
CREATE TABLE analytics_results (
    cluster                 text    NOT NULL,
    key                     text    COLLATE "C" NOT NULL,
    result_index            integer NOT NULL,
    report_resource_version bigint  NOT NULL,
    report_api_group        text    NOT NULL,
    report_api_version      text,
    report_kind             text,
    report_namespace        text    NOT NULL,
    report_name             text,
    report_uid              text,
    source                  text,
    policy                  text,
    rule                    text,
    category                text,
    severity                text,
    result                  text,
    finding                 boolean NOT NULL,
    scored                  boolean,
    message                 text,
    "timestamp"             timestamptz,
    namespace               text    NOT NULL,
    resource_api_version    text,
    resource_kind           text,
    resource_namespace      text,
    resource_name           text,
    resource_uid            text,
    resources               jsonb,
    properties              jsonb,
    score                   double precision,
    PRIMARY KEY (cluster, key, result_index)
);
-- The filters of reporting.results. The projector is their only writer, so they cost the API
-- write path nothing.
CREATE INDEX analytics_results_severity_idx ON analytics_results (severity, result, namespace);
CREATE INDEX analytics_results_result_idx ON analytics_results (result, severity);
CREATE INDEX analytics_results_policy_idx ON analytics_results (policy, result);
CREATE INDEX analytics_results_namespace_idx ON analytics_results (namespace, severity);
CREATE INDEX analytics_results_resource_idx ON analytics_results (resource_kind, resource_name);
CREATE INDEX analytics_results_resource_name_idx ON analytics_results (resource_name);
CREATE INDEX analytics_results_score_idx ON analytics_results (score) WHERE score IS NOT NULL;

-- analytics_flatten turns one stored report into its analytics_results rows. Results live at the
-- top level (wgpolicyk8s.io, openreports.io) or under spec (reports.kyverno.io). The subject of a
-- result is its first resources[] entry (all of them are kept in `resources`), else the report's
-- scope, else an ephemeral report's spec.owner, else the report's controller ownerReference (the
-- Trivy adapter's only link to the pod); owners take the report's namespace. Every expression is
-- total: malformed values become NULL instead of errors.
-- +goose StatementBegin
CREATE FUNCTION analytics_flatten(p_cluster text, p_key text, p_resource_version bigint, obj jsonb)
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

-- The projector's checkpoint: every change of the cluster up to `revision` is in analytics_results.
CREATE TABLE analytics_checkpoints (
    cluster      text             NOT NULL PRIMARY KEY,
    revision     bigint           NOT NULL,
    projected_at timestamptz      NOT NULL,
    duration_ms  double precision NOT NULL,
    rebuilt_at   timestamptz
);

-- Summaries: counts by result, and findings (fail, warn, error, or no result at all, as
-- vulnerability scanners write them) by severity.
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

-- When each summary was last refreshed, and the projection generation (sum of the checkpoints'
-- revisions) it reflects: a summary is stale while the generation has moved past it.
CREATE TABLE analytics_refreshes (
    name         text             NOT NULL PRIMARY KEY,
    refreshed_at timestamptz,
    duration_ms  double precision,
    generation   bigint           NOT NULL DEFAULT 0
);
INSERT INTO analytics_refreshes (name) VALUES
    ('cluster_summary'), ('namespace_summary'), ('policy_summary'), ('resource_summary');

-- The cluster summary over time: the refresher appends a row when the counts changed or the
-- latest row is an hour old, and keeps 400 days.
CREATE TABLE analytics_cluster_history (
    cluster  text        NOT NULL,
    at       timestamptz NOT NULL,
    results  bigint      NOT NULL,
    pass     bigint      NOT NULL,
    fail     bigint      NOT NULL,
    warn     bigint      NOT NULL,
    error    bigint      NOT NULL,
    skip     bigint      NOT NULL,
    findings bigint      NOT NULL,
    critical bigint      NOT NULL,
    high     bigint      NOT NULL,
    medium   bigint      NOT NULL,
    low      bigint      NOT NULL,
    info     bigint      NOT NULL,
    PRIMARY KEY (cluster, at)
);

-- Optional row-level restriction of readers to clusters: a role that is a member of a listed
-- role_name sees only the listed clusters of those roles in every reporting view. Readers with no
-- applicable row (and superusers) see every cluster. Managed by the database owner, e.g.
--   INSERT INTO analytics_reader_clusters VALUES ('team_a', 'prod');
CREATE TABLE analytics_reader_clusters (
    role_name text NOT NULL,
    cluster   text NOT NULL,
    PRIMARY KEY (role_name, cluster)
);

-- The clusters the current user may see: NULL means all. Views do not change current_user, so
-- the published views below evaluate it for the querying role.
-- (to_regrole is NULL for a role that no longer exists; is_superuser follows SET ROLE.)
CREATE VIEW analytics_reader_scope AS
SELECT array_agg(DISTINCT m.cluster) AS clusters
FROM analytics_reader_clusters m
WHERE pg_has_role(to_regrole(m.role_name)::oid, 'MEMBER')
  AND current_setting('is_superuser') <> 'on';

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'Published analytics views of reports-server; the contract is docs/sql.md.';

-- Every published view is a security barrier: a reader's own functions in WHERE cannot see rows
-- of clusters the reader is not allowed to see. Comparisons on text, float8, integers and
-- timestamps are leakproof, so the filters still use the indexes.
CREATE VIEW reporting.results WITH (security_barrier) AS
SELECT r.cluster, r.report_api_group, r.report_api_version, r.report_kind, r.report_namespace, r.report_name,
       r.report_uid, r.result_index, r.source, r.policy, r.rule, r.category, r.severity, r.result, r.finding,
       r.scored, r.message, r."timestamp", r.namespace, r.resource_api_version, r.resource_kind,
       r.resource_namespace, r.resource_name, r.resource_uid, r.resources, r.properties, r.score
FROM analytics_results r
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR r.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.reports WITH (security_barrier) AS
SELECT r.cluster, r.api_group, r.api_version, r.kind, r.namespace, r.name, r.uid,
       r.resource_version,
       coalesce(r.object->>'source', '') AS source,
       coalesce(r.scope_api_version, r.object->'spec'->'owner'->>'apiVersion') AS scope_api_version,
       coalesce(r.scope_kind, r.object->'spec'->'owner'->>'kind') AS scope_kind,
       coalesce(r.scope_namespace, CASE WHEN r.object->'spec'->'owner' IS NOT NULL THEN nullif(r.namespace, '') END) AS scope_namespace,
       coalesce(r.scope_name, r.object->'spec'->'owner'->>'name') AS scope_name,
       coalesce(r.scope_uid, r.object->'spec'->'owner'->>'uid') AS scope_uid,
       r.labels,
       coalesce(jsonb_array_length(CASE
           WHEN jsonb_typeof(r.object->'results') = 'array' THEN r.object->'results'
           WHEN jsonb_typeof(r.object->'spec'->'results') = 'array' THEN r.object->'spec'->'results' END), 0) AS results,
       r.summary_pass AS pass, r.summary_fail AS fail, r.summary_warn AS warn, r.summary_error AS error,
       r.summary_skip AS skip,
       r.created_at AS created,
       coalesce(c.recorded_at, r.created_at) AS updated
FROM reports r
LEFT JOIN changes c ON c.cluster = r.cluster AND c.resource_version = r.resource_version
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR r.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.cluster_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_cluster_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.namespace_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_namespace_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.policy_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_policy_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.resource_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_resource_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

CREATE VIEW reporting.cluster_history WITH (security_barrier) AS
SELECT h.* FROM analytics_cluster_history h
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR h.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

-- Freshness: one row per cluster for the projection of results, one row per summary.
CREATE VIEW reporting.refresh_status WITH (security_barrier) AS
SELECT o.object, o.cluster, o.refreshed_at, o.duration_seconds, o.revision, o.pending_revisions, o.lag_seconds
FROM (
    SELECT 'results'::text AS object,
           v.cluster,
           k.projected_at AS refreshed_at,
           k.duration_ms / 1000 AS duration_seconds,
           coalesce(k.revision, 0) AS revision,
           v.current - coalesce(k.revision, 0) AS pending_revisions,
           coalesce(extract(epoch FROM clock_timestamp() - (
               SELECT c.recorded_at FROM changes c
               WHERE c.cluster = v.cluster AND c.resource_version > coalesce(k.revision, 0)
               ORDER BY c.resource_version LIMIT 1))::double precision, 0) AS lag_seconds
    FROM revisions v
    LEFT JOIN analytics_checkpoints k ON k.cluster = v.cluster
    UNION ALL
    SELECT f.name,
           NULL,
           f.refreshed_at,
           f.duration_ms / 1000,
           NULL,
           g.generation - f.generation,
           CASE WHEN g.generation > f.generation
                THEN coalesce(extract(epoch FROM clock_timestamp() - f.refreshed_at)::double precision, 0)
                ELSE 0 END
    FROM analytics_refreshes f
    CROSS JOIN (SELECT coalesce(sum(revision), 0)::bigint AS generation FROM analytics_checkpoints) g
) o
WHERE o.cluster IS NULL
   OR (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR o.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);

-- The reader role. Roles belong to the whole PostgreSQL server, not to this database: create it
-- only if missing (another database, or a concurrent migration of one, may have created it).
-- The migrating user needs CREATEROLE unless an administrator created the role beforehand.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reports_reader') THEN
        BEGIN
            CREATE ROLE reports_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently
        END;
    END IF;
END
$$;
-- +goose StatementEnd
GRANT USAGE ON SCHEMA reporting TO reports_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO reports_reader;
-- Views added by later migrations (run as the same user) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO reports_reader;

-- +goose Down
-- The role reports_reader is left in place: roles are shared by every database of the server, and
-- other databases (or login roles granted it) may still use it. Its privileges in this database
-- go with the objects; the default privileges are revoked explicitly. Drop the role by hand once
-- no database uses it: DROP ROLE reports_reader.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'reports_reader') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA reporting REVOKE SELECT ON TABLES FROM reports_reader;
        REVOKE USAGE ON SCHEMA reporting FROM reports_reader;
    END IF;
END
$$;
-- +goose StatementEnd
DROP VIEW reporting.refresh_status;
DROP VIEW reporting.cluster_history;
DROP VIEW reporting.resource_summary;
DROP VIEW reporting.policy_summary;
DROP VIEW reporting.namespace_summary;
DROP VIEW reporting.cluster_summary;
DROP VIEW reporting.reports;
DROP VIEW reporting.results;
DROP SCHEMA reporting;
DROP VIEW analytics_reader_scope;
DROP TABLE analytics_reader_clusters;
DROP TABLE analytics_cluster_history;
DROP TABLE analytics_refreshes;
DROP MATERIALIZED VIEW analytics_resource_summary;
DROP MATERIALIZED VIEW analytics_policy_summary;
DROP MATERIALIZED VIEW analytics_namespace_summary;
DROP MATERIALIZED VIEW analytics_cluster_summary;
DROP TABLE analytics_checkpoints;
DROP FUNCTION analytics_flatten(text, text, bigint, jsonb);
DROP TABLE analytics_results;
DROP FUNCTION analytics_number(text);
