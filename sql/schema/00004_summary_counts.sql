-- Summary counts are Go ints in the API (64 bits), so summary.pass = 2147483648 is a valid report
-- and must be stored; the generated summary columns were integer and refused it (a 500). They now
-- clamp to the integer range instead: the published reporting.reports keeps its integer columns
-- (the contract never retypes a column), and a count beyond 2^31-1 reads as 2147483647 there. The
-- object itself keeps the exact value. PostgreSQL (before 17) cannot change a generated column's
-- expression in place, so the columns are dropped and added again, which recomputes them from the
-- stored objects (one rewrite of the table), and the view that reads them is re-created unchanged.

-- +goose Up
-- reports_summary_count reads one summary count: absent is 0, and values outside the integer
-- range are clamped to it.
CREATE FUNCTION reports_summary_count(v text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v IS NULL THEN 0
        ELSE greatest(least(v::numeric, 2147483647), -2147483648)::integer END $$;
DROP VIEW reporting.reports;
ALTER TABLE reports
    DROP COLUMN summary_pass,
    DROP COLUMN summary_fail,
    DROP COLUMN summary_warn,
    DROP COLUMN summary_error,
    DROP COLUMN summary_skip;
ALTER TABLE reports
    ADD COLUMN summary_pass  integer GENERATED ALWAYS AS (reports_summary_count(coalesce(object->'summary', object->'spec'->'summary')->>'pass')) STORED,
    ADD COLUMN summary_fail  integer GENERATED ALWAYS AS (reports_summary_count(coalesce(object->'summary', object->'spec'->'summary')->>'fail')) STORED,
    ADD COLUMN summary_warn  integer GENERATED ALWAYS AS (reports_summary_count(coalesce(object->'summary', object->'spec'->'summary')->>'warn')) STORED,
    ADD COLUMN summary_error integer GENERATED ALWAYS AS (reports_summary_count(coalesce(object->'summary', object->'spec'->'summary')->>'error')) STORED,
    ADD COLUMN summary_skip  integer GENERATED ALWAYS AS (reports_summary_count(coalesce(object->'summary', object->'spec'->'summary')->>'skip')) STORED;
CREATE INDEX reports_failures_idx ON reports (cluster, summary_fail, summary_error) WHERE summary_fail > 0 OR summary_error > 0;
-- +goose StatementBegin
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
-- +goose StatementEnd
GRANT SELECT ON reporting.reports TO reports_reader;

-- +goose Down
-- Fails while a stored report has a count outside the integer range (as such a report could not
-- be stored before this migration): delete those reports first.
DROP VIEW reporting.reports;
ALTER TABLE reports
    DROP COLUMN summary_pass,
    DROP COLUMN summary_fail,
    DROP COLUMN summary_warn,
    DROP COLUMN summary_error,
    DROP COLUMN summary_skip;
ALTER TABLE reports
    ADD COLUMN summary_pass  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'pass')::integer, 0)) STORED,
    ADD COLUMN summary_fail  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'fail')::integer, 0)) STORED,
    ADD COLUMN summary_warn  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'warn')::integer, 0)) STORED,
    ADD COLUMN summary_error integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'error')::integer, 0)) STORED,
    ADD COLUMN summary_skip  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'skip')::integer, 0)) STORED;
CREATE INDEX reports_failures_idx ON reports (cluster, summary_fail, summary_error) WHERE summary_fail > 0 OR summary_error > 0;
-- +goose StatementBegin
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
-- +goose StatementEnd
GRANT SELECT ON reporting.reports TO reports_reader;
DROP FUNCTION reports_summary_count(text);
