-- The analytics projection, normalized (issue "Scale": a footprint smaller than etcd's). Until now
-- analytics_results held one wide row per result, repeating the report's metadata, the subject and
-- the policy, rule, message and properties strings in every row: 1 KB per result with its nine
-- indexes, more than the report itself. From here on a result row holds only what is its own and
-- refers to the rest, which is stored once:
--
--   * analytics_reports: one row per projected report and subject. The report's metadata and the
--     subject of its results (scope, owner, labels): one row for a report whose results are all
--     about its subject, one per distinct resource when results name their own resources;
--   * analytics_outcomes: what a result says (source, policy, rule, category, scored, message,
--     properties), interned: every result that says the same refers to one row (the same check
--     on many resources, the same CVE in many pods). Rows nothing refers to any more are deleted
--     by the projector;
--   * analytics_results: per result its report row, position, outcome, timestamp, severity and
--     result (one-letter codes, indexed) and score: 56 bytes with its header (64 with a score).
--
-- The published reporting.results keeps its columns, types and meaning (a view over the join); the
-- summaries count the same rows. The existing rows are converted in SQL (no re-projection: the
-- checkpoints stay valid and readers never see an empty projection; about 25 s per 10^6 results,
-- during which readers of the analytics wait), and Down converts them back.
--
-- analytics_flatten keeps its definition; the old table, renamed analytics_flattened and emptied,
-- stays as its row type (sqlc resolves the columns of a function only from a table it returns).

-- +goose Up

-- analytics_code stores a severity or result in one letter when it is one of the values the report
-- schemas define, and as '~' followed by the value otherwise (a severity taken from the properties
-- is free text); analytics_value is its inverse, and NULL stays NULL. Both are inlined into the
-- queries, so the expression index on analytics_value(severity_code), analytics_value(result_code)
-- serves filters on the values.
-- +goose StatementBegin
CREATE FUNCTION analytics_code(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE v WHEN 'critical' THEN 'c' WHEN 'high' THEN 'h' WHEN 'medium' THEN 'm' WHEN 'low' THEN 'l'
                        WHEN 'info' THEN 'i' WHEN 'pass' THEN 'p' WHEN 'fail' THEN 'f' WHEN 'warn' THEN 'w'
                        WHEN 'error' THEN 'e' WHEN 'skip' THEN 's' ELSE '~' || v END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION analytics_value(code text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE code WHEN 'c' THEN 'critical' WHEN 'h' THEN 'high' WHEN 'm' THEN 'medium' WHEN 'l' THEN 'low'
                           WHEN 'i' THEN 'info' WHEN 'p' THEN 'pass' WHEN 'f' THEN 'fail' WHEN 'w' THEN 'warn'
                           WHEN 'e' THEN 'error' WHEN 's' THEN 'skip' ELSE substr(code, 2) END $$;
-- +goose StatementEnd

-- analytics_finding: whether a result needs attention (docs/sql.md, "Terms"): fail, warn, error, or
-- no result at all; from its result_code, which is cheaper than decoding it for every row, and in
-- a form the planner estimates from the column's statistics.
-- +goose StatementBegin
CREATE FUNCTION analytics_finding(result_code text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT result_code IS NULL
                 OR result_code IN (analytics_code('fail'), analytics_code('warn'), analytics_code('error')) $$;
-- +goose StatementEnd

-- analytics_outcome_digest identifies an outcome by its values (128 bits of a SHA-256 of them as a
-- JSON array, so NULL and '' differ): the projector interns outcomes by it.
-- +goose StatementBegin
CREATE FUNCTION analytics_outcome_digest(source text, policy text, rule text, category text, scored boolean,
                                         message text, properties jsonb) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT left(encode(sha256(convert_to(
              jsonb_build_array(source, policy, rule, category, scored, message, properties)::text, 'UTF8')), 'hex'), 32)::uuid $$;
-- +goose StatementEnd

-- analytics_subject is what a result is about, as one value: results of one report with equal
-- subjects share a row of analytics_reports.
-- +goose StatementBegin
CREATE FUNCTION analytics_subject(namespace text, resource_api_version text, resource_kind text,
                                  resource_namespace text, resource_name text, resource_uid text, resources jsonb)
    RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT jsonb_build_array(namespace, resource_api_version, resource_kind, resource_namespace, resource_name,
                                   resource_uid, resources) $$;
-- +goose StatementEnd

-- analytics_key_namespace is the namespace in a storage key: /<group>/<resource>/<namespace>/<name>
-- for a namespaced report, '' for a cluster-scoped /<group>/<resource>/<name> (names hold no '/').
-- It is the report namespace of analytics_reports, so the projector finds a changed key's rows by
-- (cluster, report_namespace, key), the index the findings API pages by.
-- +goose StatementBegin
CREATE FUNCTION analytics_key_namespace(key text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN split_part(key, '/', 5) <> '' THEN split_part(key, '/', 4) ELSE '' END $$;
-- +goose StatementEnd

ALTER TABLE analytics_results RENAME TO analytics_flattened;

-- One row per projected report and subject (reports without results have none). Found by the
-- projector and the findings API by (report_namespace, key), by analysts' filters by subject.
CREATE TABLE analytics_reports (
    id                      bigint  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cluster                 text    NOT NULL,
    key                     text    COLLATE "C" NOT NULL,
    report_resource_version bigint  NOT NULL,
    report_api_group        text    NOT NULL,
    report_api_version      text,
    report_kind             text,
    report_namespace        text    NOT NULL, -- analytics_key_namespace(key): metadata.namespace, '' if none
    report_name             text,
    report_uid              text,
    -- The subject (docs/sql.md, "Terms"): namespace is the subject's, else the report's.
    namespace               text    NOT NULL,
    resource_api_version    text,
    resource_kind           text,
    resource_namespace      text,
    resource_name           text,
    resource_uid            text,
    resources               jsonb
);

-- What results say, each distinct one once (analytics_outcome_digest of its values).
CREATE TABLE analytics_outcomes (
    id         bigint  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    digest     uuid    NOT NULL UNIQUE,
    source     text,
    policy     text,
    rule       text,
    category   text,
    scored     boolean,
    message    text,
    properties jsonb
);

-- One row per result: its report row, outcome, position, timestamp, severity and result
-- (analytics_code) and score (a function of the properties, stored here to be indexed). The
-- columns are ordered for alignment: a row is 56 bytes with its header, 64 with a score.
CREATE TABLE analytics_results (
    report_id     bigint  NOT NULL,
    outcome_id    bigint  NOT NULL,
    "timestamp"   timestamptz,
    score         double precision,
    result_index  integer NOT NULL,
    severity_code text,
    result_code   text
);

INSERT INTO analytics_outcomes (digest, source, policy, rule, category, scored, message, properties)
SELECT DISTINCT ON (d.digest) d.digest, f.source, f.policy, f.rule, f.category, f.scored, f.message, f.properties
FROM analytics_flattened f
CROSS JOIN LATERAL (SELECT analytics_outcome_digest(f.source, f.policy, f.rule, f.category, f.scored, f.message,
                                                    f.properties) AS digest) d
ORDER BY d.digest;

INSERT INTO analytics_reports (cluster, key, report_resource_version, report_api_group, report_api_version, report_kind,
                               report_namespace, report_name, report_uid, namespace, resource_api_version, resource_kind,
                               resource_namespace, resource_name, resource_uid, resources)
SELECT DISTINCT ON (f.cluster, f.key, s.subject)
       f.cluster, f.key, f.report_resource_version, f.report_api_group, f.report_api_version, f.report_kind,
       analytics_key_namespace(f.key), f.report_name, f.report_uid, f.namespace, f.resource_api_version, f.resource_kind,
       f.resource_namespace, f.resource_name, f.resource_uid, f.resources
FROM analytics_flattened f
CROSS JOIN LATERAL (SELECT analytics_subject(f.namespace, f.resource_api_version, f.resource_kind, f.resource_namespace,
                                             f.resource_name, f.resource_uid, f.resources) AS subject) s
ORDER BY f.cluster, f.key, s.subject;

INSERT INTO analytics_results (report_id, outcome_id, "timestamp", score, result_index, severity_code, result_code)
SELECT p.id, o.id, f."timestamp", f.score, f.result_index, analytics_code(f.severity), analytics_code(f.result)
FROM analytics_flattened f
JOIN analytics_reports p
  ON p.cluster = f.cluster AND p.key = f.key
 AND analytics_subject(p.namespace, p.resource_api_version, p.resource_kind, p.resource_namespace, p.resource_name,
                       p.resource_uid, p.resources)
   = analytics_subject(f.namespace, f.resource_api_version, f.resource_kind, f.resource_namespace, f.resource_name,
                       f.resource_uid, f.resources)
JOIN analytics_outcomes o
  ON o.digest = analytics_outcome_digest(f.source, f.policy, f.rule, f.category, f.scored, f.message, f.properties)
ORDER BY p.id, f.result_index;

-- Every result has its outcome; the LEFT JOIN (on the outcomes' primary key) lets the planner
-- leave the outcomes out of queries that read none of their columns.
-- +goose StatementBegin
CREATE OR REPLACE VIEW reporting.results WITH (security_barrier) AS
SELECT p.cluster, p.report_api_group, p.report_api_version, p.report_kind, p.report_namespace, p.report_name,
       p.report_uid, r.result_index, o.source, o.policy, o.rule, o.category, analytics_value(r.severity_code) AS severity,
       analytics_value(r.result_code) AS result, analytics_finding(r.result_code) AS finding, o.scored,
       o.message, r."timestamp", p.namespace, p.resource_api_version, p.resource_kind, p.resource_namespace,
       p.resource_name, p.resource_uid, p.resources, o.properties, r.score,
       p.report_api_group = 'reports.kyverno.io' AS ephemeral
FROM analytics_results r
JOIN analytics_reports p ON p.id = r.report_id
LEFT JOIN analytics_outcomes o ON o.id = r.outcome_id
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR p.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
-- +goose StatementEnd

DROP VIEW reporting.cluster_summary;
DROP MATERIALIZED VIEW analytics_cluster_summary;
DROP VIEW reporting.namespace_summary;
DROP MATERIALIZED VIEW analytics_namespace_summary;
DROP VIEW reporting.policy_summary;
DROP MATERIALIZED VIEW analytics_policy_summary;
DROP VIEW reporting.resource_summary;
DROP MATERIALIZED VIEW analytics_resource_summary;

TRUNCATE analytics_flattened;
ALTER TABLE analytics_flattened DROP CONSTRAINT analytics_results_pkey;
DROP INDEX analytics_results_severity_idx;
DROP INDEX analytics_results_result_idx;
DROP INDEX analytics_results_policy_idx;
DROP INDEX analytics_results_namespace_idx;
DROP INDEX analytics_results_resource_idx;
DROP INDEX analytics_results_resource_name_idx;
DROP INDEX analytics_results_score_idx;
DROP INDEX analytics_results_report_namespace_idx;
COMMENT ON TABLE analytics_flattened IS 'The row type of analytics_flatten; holds no rows.';

-- Unchanged since 00006; declared again because its row type was renamed.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION analytics_flatten(p_cluster text, p_key text, p_resource_version bigint, obj jsonb)
    RETURNS SETOF analytics_flattened
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

-- The projector finds the rows of a key by it. Findings are listed a namespace at a time in keyset
-- pages ordered by (report namespace, key, result index): it serves the namespace range and the
-- order of the reports, and analytics_results_report_idx the results of each.
CREATE INDEX analytics_reports_report_namespace_idx ON analytics_reports (cluster, report_namespace, key);
-- The filters of reporting.results (docs/sql.md). Filters on the outcome or the report row find
-- those rows first and their results through analytics_results_outcome_idx or _report_idx; values
-- repeated in many rows are stored once per index page (B-tree deduplication), so the indexes of
-- analytics_results cost a few bytes per result.
CREATE INDEX analytics_reports_namespace_idx ON analytics_reports (namespace);
CREATE INDEX analytics_reports_resource_idx ON analytics_reports (resource_name, resource_kind);
CREATE INDEX analytics_outcomes_policy_idx ON analytics_outcomes (policy);
CREATE INDEX analytics_results_report_idx ON analytics_results (report_id);
CREATE INDEX analytics_results_outcome_idx ON analytics_results (outcome_id);
-- Serves severity and severity-and-result filters as a range, and result filters by reading the
-- index (a few bytes per result) instead of the table.
CREATE INDEX analytics_results_severity_idx
    ON analytics_results (analytics_value(severity_code), analytics_value(result_code));
CREATE INDEX analytics_results_score_idx ON analytics_results (score) WHERE score IS NOT NULL;

-- The summaries count what they counted before (00006), from the joins.
CREATE MATERIALIZED VIEW analytics_cluster_summary AS
SELECT p.cluster,
       count(*) AS results,
       count(*) FILTER (WHERE r.result_code = analytics_code('pass')) AS pass,
       count(*) FILTER (WHERE r.result_code = analytics_code('fail')) AS fail,
       count(*) FILTER (WHERE r.result_code = analytics_code('warn')) AS warn,
       count(*) FILTER (WHERE r.result_code = analytics_code('error')) AS error,
       count(*) FILTER (WHERE r.result_code = analytics_code('skip')) AS skip,
       count(*) FILTER (WHERE f.finding) AS findings,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('critical')) AS critical,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('high')) AS high,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('medium')) AS medium,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('low')) AS low,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('info')) AS info
FROM analytics_results r
CROSS JOIN LATERAL (SELECT analytics_finding(r.result_code) AS finding) f
JOIN analytics_reports p ON p.id = r.report_id
WHERE p.report_api_group <> 'reports.kyverno.io'
GROUP BY p.cluster;
CREATE UNIQUE INDEX analytics_cluster_summary_key ON analytics_cluster_summary (cluster);
CREATE VIEW reporting.cluster_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_cluster_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_namespace_summary AS
SELECT p.cluster, p.namespace,
       count(*) AS results,
       count(*) FILTER (WHERE r.result_code = analytics_code('pass')) AS pass,
       count(*) FILTER (WHERE r.result_code = analytics_code('fail')) AS fail,
       count(*) FILTER (WHERE r.result_code = analytics_code('warn')) AS warn,
       count(*) FILTER (WHERE r.result_code = analytics_code('error')) AS error,
       count(*) FILTER (WHERE r.result_code = analytics_code('skip')) AS skip,
       count(*) FILTER (WHERE f.finding) AS findings,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('critical')) AS critical,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('high')) AS high,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('medium')) AS medium,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('low')) AS low,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('info')) AS info
FROM analytics_results r
CROSS JOIN LATERAL (SELECT analytics_finding(r.result_code) AS finding) f
JOIN analytics_reports p ON p.id = r.report_id
WHERE p.report_api_group <> 'reports.kyverno.io'
GROUP BY p.cluster, p.namespace;
CREATE UNIQUE INDEX analytics_namespace_summary_key ON analytics_namespace_summary (cluster, namespace);
CREATE VIEW reporting.namespace_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_namespace_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_policy_summary AS
SELECT p.cluster, coalesce(o.source, '') AS source, coalesce(o.policy, '') AS policy,
       count(*) AS results,
       count(*) FILTER (WHERE r.result_code = analytics_code('pass')) AS pass,
       count(*) FILTER (WHERE r.result_code = analytics_code('fail')) AS fail,
       count(*) FILTER (WHERE r.result_code = analytics_code('warn')) AS warn,
       count(*) FILTER (WHERE r.result_code = analytics_code('error')) AS error,
       count(*) FILTER (WHERE r.result_code = analytics_code('skip')) AS skip,
       count(*) FILTER (WHERE f.finding) AS findings,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('critical')) AS critical,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('high')) AS high,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('medium')) AS medium,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('low')) AS low,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('info')) AS info
FROM analytics_results r
CROSS JOIN LATERAL (SELECT analytics_finding(r.result_code) AS finding) f
JOIN analytics_reports p ON p.id = r.report_id
JOIN analytics_outcomes o ON o.id = r.outcome_id
WHERE p.report_api_group <> 'reports.kyverno.io'
GROUP BY p.cluster, coalesce(o.source, ''), coalesce(o.policy, '');
CREATE UNIQUE INDEX analytics_policy_summary_key ON analytics_policy_summary (cluster, source, policy);
CREATE VIEW reporting.policy_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_policy_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
CREATE MATERIALIZED VIEW analytics_resource_summary AS
SELECT p.cluster, p.namespace, coalesce(p.resource_kind, '') AS resource_kind, coalesce(p.resource_name, '') AS resource_name,
       count(*) AS results,
       count(*) FILTER (WHERE r.result_code = analytics_code('pass')) AS pass,
       count(*) FILTER (WHERE r.result_code = analytics_code('fail')) AS fail,
       count(*) FILTER (WHERE r.result_code = analytics_code('warn')) AS warn,
       count(*) FILTER (WHERE r.result_code = analytics_code('error')) AS error,
       count(*) FILTER (WHERE r.result_code = analytics_code('skip')) AS skip,
       count(*) FILTER (WHERE f.finding) AS findings,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('critical')) AS critical,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('high')) AS high,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('medium')) AS medium,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('low')) AS low,
       count(*) FILTER (WHERE f.finding AND r.severity_code = analytics_code('info')) AS info
FROM analytics_results r
CROSS JOIN LATERAL (SELECT analytics_finding(r.result_code) AS finding) f
JOIN analytics_reports p ON p.id = r.report_id
WHERE p.report_api_group <> 'reports.kyverno.io'
GROUP BY p.cluster, p.namespace, coalesce(p.resource_kind, ''), coalesce(p.resource_name, '');
CREATE UNIQUE INDEX analytics_resource_summary_key ON analytics_resource_summary (cluster, namespace, resource_kind, resource_name);
CREATE VIEW reporting.resource_summary WITH (security_barrier) AS
SELECT m.* FROM analytics_resource_summary m
WHERE (SELECT s.clusters FROM analytics_reader_scope s) IS NULL
   OR m.cluster = ANY ((SELECT s.clusters FROM analytics_reader_scope s)::text[]);
ANALYZE analytics_reports;
ANALYZE analytics_outcomes;
ANALYZE analytics_results;

-- +goose Down
-- Back to the 00006 shape: the results of the join, one wide row each, in analytics_results.
ALTER TABLE analytics_results RENAME TO analytics_results_00007;
ALTER TABLE analytics_flattened RENAME TO analytics_results;
COMMENT ON TABLE analytics_results IS NULL;
INSERT INTO analytics_results (cluster, key, result_index, report_resource_version, report_api_group, report_api_version,
                               report_kind, report_namespace, report_name, report_uid, source, policy, rule, category,
                               severity, result, finding, scored, message, "timestamp", namespace, resource_api_version,
                               resource_kind, resource_namespace, resource_name, resource_uid, resources, properties, score)
SELECT p.cluster, p.key, r.result_index, p.report_resource_version, p.report_api_group, p.report_api_version,
       p.report_kind, p.report_namespace, p.report_name, p.report_uid, o.source, o.policy, o.rule, o.category,
       analytics_value(r.severity_code), analytics_value(r.result_code), analytics_finding(r.result_code),
       o.scored, o.message, r."timestamp", p.namespace, p.resource_api_version, p.resource_kind, p.resource_namespace,
       p.resource_name, p.resource_uid, p.resources, o.properties, r.score
FROM analytics_results_00007 r
JOIN analytics_reports p ON p.id = r.report_id
JOIN analytics_outcomes o ON o.id = r.outcome_id
ORDER BY p.cluster, p.key, r.result_index;
ALTER TABLE analytics_results ADD PRIMARY KEY (cluster, key, result_index);
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
DROP TABLE analytics_results_00007;
DROP TABLE analytics_outcomes;
DROP TABLE analytics_reports;
CREATE INDEX analytics_results_severity_idx ON analytics_results (severity, result, namespace);
CREATE INDEX analytics_results_result_idx ON analytics_results (result, severity);
CREATE INDEX analytics_results_policy_idx ON analytics_results (policy, result);
CREATE INDEX analytics_results_namespace_idx ON analytics_results (namespace, severity);
CREATE INDEX analytics_results_resource_idx ON analytics_results (resource_kind, resource_name);
CREATE INDEX analytics_results_resource_name_idx ON analytics_results (resource_name);
CREATE INDEX analytics_results_score_idx ON analytics_results (score) WHERE score IS NOT NULL;
CREATE INDEX analytics_results_report_namespace_idx
    ON analytics_results (cluster, report_namespace, key, result_index);
DROP FUNCTION analytics_subject(text, text, text, text, text, text, jsonb);
DROP FUNCTION analytics_key_namespace(text);
DROP FUNCTION analytics_outcome_digest(text, text, text, text, boolean, text, jsonb);
DROP FUNCTION analytics_finding(text);
DROP FUNCTION analytics_value(text);
DROP FUNCTION analytics_code(text);
