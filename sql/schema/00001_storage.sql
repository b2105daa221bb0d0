-- Storage for the Kubernetes API: one row per object, a gapless revision counter per cluster,
-- and a change log that makes history (exact-resourceVersion lists) and watches possible.
--
-- These tables are private to the server. Analysts read the published `reporting` schema
-- (sql/views), never these tables directly.

-- +goose Up

-- reports_rfc3339 parses the RFC 3339 timestamps Kubernetes writes (always UTC, "Z").
-- A plain text::timestamptz cast is only STABLE (it depends on the TimeZone setting), and
-- generated columns need IMMUTABLE expressions; reading the value as a zone-less timestamp
-- and pinning it to UTC is immutable and correct for the format Kubernetes emits.
CREATE FUNCTION reports_rfc3339(t text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT (t::timestamp AT TIME ZONE 'UTC') $$;

-- reports_fields is the set of selectable fields of an object, as a flat JSON object keyed by
-- field path ("metadata.name", "scope.kind", ...). Field selectors are evaluated against it with
-- the same operators as labels, so one matcher serves both. Values are "" when the object lacks
-- the field, as the API server's field sets do.
CREATE FUNCTION reports_fields(obj jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT jsonb_build_object(
        'metadata.name', coalesce(obj->'metadata'->>'name', ''),
        'metadata.namespace', coalesce(obj->'metadata'->>'namespace', ''),
        'scope.kind', coalesce(obj->'scope'->>'kind', ''),
        'scope.name', coalesce(obj->'scope'->>'name', ''),
        'scope.namespace', coalesce(obj->'scope'->>'namespace', '')) $$;

-- reports_labels is the object's label map, {} when it has none.
CREATE FUNCTION reports_labels(obj jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT coalesce(obj->'metadata'->'labels', '{}'::jsonb) $$;

-- reports_match evaluates the selector requirements that containment (@>) and key existence
-- (?&) cannot express: "in" with several values, "notin" (also "!="), and "!exists".
-- reqs is a JSON array of {"key": k, "op": "in"|"notin"|"!exists", "values": [...]}; NULL or
-- [] matches everything. A missing label never satisfies "in" and always satisfies "notin",
-- as in k8s.io/apimachinery/pkg/labels.
CREATE FUNCTION reports_match(attrs jsonb, reqs jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(bool_and(CASE r->>'op'
            WHEN 'in' THEN coalesce((attrs->>(r->>'key')) IN (SELECT jsonb_array_elements_text(r->'values')), false)
            WHEN 'notin' THEN coalesce((attrs->>(r->>'key')) NOT IN (SELECT jsonb_array_elements_text(r->'values')), true)
            WHEN '!exists' THEN NOT (attrs ? (r->>'key'))
            ELSE false END), true)
        FROM jsonb_array_elements(coalesce(reqs, '[]'::jsonb)) AS r $$;

-- One counter row per cluster. Every write transaction increments it first; the row lock makes
-- revisions gapless and commit-ordered: revision N+1 cannot be taken before the transaction
-- holding N has committed or rolled back (rolled back: N is taken again). See docs/design.md.
CREATE TABLE revisions (
    cluster   text   NOT NULL PRIMARY KEY,
    current   bigint NOT NULL DEFAULT 1,
    compacted bigint NOT NULL DEFAULT 0
);

CREATE TABLE reports (
    cluster          text   NOT NULL,
    -- The storage key the generic registry computes: /<group>/<resource>/<namespace>/<name>.
    -- COLLATE "C" makes key order byte order, which keyset paging and prefix ranges rely on.
    key              text   COLLATE "C" NOT NULL,
    resource_version bigint NOT NULL,
    object           jsonb  NOT NULL,

    api_group   text GENERATED ALWAYS AS (split_part(key, '/', 2)) STORED,
    resource    text GENERATED ALWAYS AS (split_part(key, '/', 3)) STORED,
    api_version text GENERATED ALWAYS AS (object->>'apiVersion') STORED,
    kind        text GENERATED ALWAYS AS (object->>'kind') STORED,
    namespace   text GENERATED ALWAYS AS (coalesce(object->'metadata'->>'namespace', '')) STORED,
    name        text GENERATED ALWAYS AS (object->'metadata'->>'name') STORED,
    uid         text GENERATED ALWAYS AS (object->'metadata'->>'uid') STORED,
    created_at  timestamptz GENERATED ALWAYS AS (reports_rfc3339(object->'metadata'->>'creationTimestamp')) STORED,
    labels      jsonb GENERATED ALWAYS AS (reports_labels(object)) STORED,
    fields      jsonb GENERATED ALWAYS AS (reports_fields(object)) STORED,
    scope_api_version text GENERATED ALWAYS AS (object->'scope'->>'apiVersion') STORED,
    scope_kind        text GENERATED ALWAYS AS (object->'scope'->>'kind') STORED,
    scope_namespace   text GENERATED ALWAYS AS (object->'scope'->>'namespace') STORED,
    scope_name        text GENERATED ALWAYS AS (object->'scope'->>'name') STORED,
    scope_uid         text GENERATED ALWAYS AS (object->'scope'->>'uid') STORED,
    -- Policy reports and openreports keep the summary at the top level, ephemeral reports under spec.
    summary_pass  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'pass')::integer, 0)) STORED,
    summary_fail  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'fail')::integer, 0)) STORED,
    summary_warn  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'warn')::integer, 0)) STORED,
    summary_error integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'error')::integer, 0)) STORED,
    summary_skip  integer GENERATED ALWAYS AS (coalesce((coalesce(object->'summary', object->'spec'->'summary')->>'skip')::integer, 0)) STORED,

    PRIMARY KEY (cluster, key)
);

-- Selectors: labels and fields are matched with @> (equality) and ?& (exists) through GIN.
CREATE INDEX reports_labels_idx ON reports USING gin (labels);
CREATE INDEX reports_fields_idx ON reports USING gin (fields);
-- Analytics and operations filter on these.
CREATE INDEX reports_kind_ns_idx ON reports (cluster, api_group, resource, namespace, name);
CREATE INDEX reports_scope_idx ON reports (cluster, scope_kind, scope_namespace, scope_name);
CREATE INDEX reports_scope_uid_idx ON reports (scope_uid) WHERE scope_uid IS NOT NULL;
CREATE INDEX reports_uid_idx ON reports (uid);
CREATE INDEX reports_failures_idx ON reports (cluster, summary_fail, summary_error) WHERE summary_fail > 0 OR summary_error > 0;

-- The change log: one row per write, in the write's own transaction. object is the new state
-- (NULL for a deletion), prev_object the state it replaced (NULL for a creation). Watches replay
-- it; lists at an exact past revision rebuild state from it (the version of a key at revision R
-- is its current row if unchanged since R, else the prev_object of its first change after R).
CREATE TABLE changes (
    cluster               text   NOT NULL,
    resource_version      bigint NOT NULL,
    key                   text   COLLATE "C" NOT NULL,
    event                 text   NOT NULL CHECK (event IN ('ADDED', 'MODIFIED', 'DELETED')),
    object                jsonb,
    prev_object           jsonb,
    prev_resource_version bigint NOT NULL DEFAULT 0,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, resource_version)
);
CREATE INDEX changes_key_idx ON changes (cluster, key, resource_version);

-- +goose Down
DROP TABLE changes;
DROP TABLE reports;
DROP TABLE revisions;
DROP FUNCTION reports_match(jsonb, jsonb);
DROP FUNCTION reports_labels(jsonb);
DROP FUNCTION reports_fields(jsonb);
DROP FUNCTION reports_rfc3339(text);
