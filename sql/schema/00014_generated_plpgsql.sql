-- The functions of the reports table's generated columns in PL/pgSQL, with the same bodies, so a
-- write pays for evaluating them and not for preparing them. PostgreSQL (before 18) prepares a
-- table's generated columns again for every INSERT and UPDATE statement, and a SQL-language
-- function costs there either way: one it inlines (reports_rfc3339, reports_summary_count, five
-- times) has its text parsed again, one it cannot (reports_labels and reports_fields: a strict
-- function around coalesce) has its body parsed and planned again on its first call. A PL/pgSQL
-- function is compiled once per connection. A single-row insert of a 12 KB report spent about
-- half its time on this (docs/benchmarks.md, "Creates: the generated columns' functions").
--
-- The values are the same, so the stored columns and their indexes stay valid: nothing is
-- rewritten, and the migration takes no longer on a full table than on an empty one.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_rfc3339(t text) RETURNS timestamptz
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ BEGIN RETURN t::timestamp AT TIME ZONE 'UTC'; END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_fields(obj jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ BEGIN RETURN jsonb_build_object(
        'metadata.name', coalesce(obj->'metadata'->>'name', ''),
        'metadata.namespace', coalesce(obj->'metadata'->>'namespace', ''),
        'scope.kind', coalesce(obj->'scope'->>'kind', ''),
        'scope.name', coalesce(obj->'scope'->>'name', ''),
        'scope.namespace', coalesce(obj->'scope'->>'namespace', '')); END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_labels(obj jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ BEGIN RETURN coalesce(obj->'metadata'->'labels', '{}'::jsonb); END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_summary_count(v text) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$ BEGIN RETURN CASE WHEN v IS NULL THEN 0
        ELSE greatest(least(v::numeric, 2147483647), -2147483648)::integer END; END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_rfc3339(t text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT (t::timestamp AT TIME ZONE 'UTC') $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_fields(obj jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT jsonb_build_object(
        'metadata.name', coalesce(obj->'metadata'->>'name', ''),
        'metadata.namespace', coalesce(obj->'metadata'->>'namespace', ''),
        'scope.kind', coalesce(obj->'scope'->>'kind', ''),
        'scope.name', coalesce(obj->'scope'->>'name', ''),
        'scope.namespace', coalesce(obj->'scope'->>'namespace', '')) $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_labels(obj jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT coalesce(obj->'metadata'->'labels', '{}'::jsonb) $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reports_summary_count(v text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v IS NULL THEN 0
        ELSE greatest(least(v::numeric, 2147483647), -2147483648)::integer END $$;
-- +goose StatementEnd
