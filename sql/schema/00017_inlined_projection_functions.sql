-- The projector's per-result functions, analytics_outcome_digest and analytics_subject, declared
-- STABLE instead of IMMUTABLE, so that PostgreSQL inlines them into the projection's statement.
--
-- Both call jsonb_build_array, and the digest convert_to: functions PostgreSQL declares STABLE
-- (a value's text form may depend on settings). The planner inlines a SQL function's body only
-- when the body is no more volatile than the function says it is, so it never inlined these two:
-- it ran each as a SQL function call of its own, starting and ending an executor for each of the
-- two values of every result, about an eighth of PostgreSQL's CPU during a stream of creates
-- (docs/benchmarks.md, "Creates: what the projector costs"). Their bodies and values are
-- unchanged, so every stored digest stays valid. Neither is used by an index or a generated
-- column, which are what need IMMUTABLE.

-- +goose Up
ALTER FUNCTION analytics_outcome_digest(text, text, text, text, boolean, text, jsonb) STABLE;
ALTER FUNCTION analytics_subject(text, text, text, text, text, text, jsonb) STABLE;

-- +goose Down
ALTER FUNCTION analytics_subject(text, text, text, text, text, text, jsonb) IMMUTABLE;
ALTER FUNCTION analytics_outcome_digest(text, text, text, text, boolean, text, jsonb) IMMUTABLE;
