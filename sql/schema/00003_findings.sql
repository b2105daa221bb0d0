-- Support for the read-only Kubernetes resources over the analytics tables
-- (analytics.reports-server.io: Finding, ClusterFinding, FindingSummary; internal/apiserver/findings,
-- docs/design.md "Findings through kubectl"). Nothing here is published in `reporting`.

-- +goose Up

-- Findings are listed a namespace at a time (RBAC is per namespace) in keyset pages ordered by
-- (report namespace, key, result index): this index serves both the namespace range and the page
-- order, so a page costs its own rows whatever the namespace's size. Its one more entry per result
-- is paid by the projector only, never by API writes.
CREATE INDEX analytics_results_report_namespace_idx
    ON analytics_results (cluster, report_namespace, key, result_index);

-- analytics_summary_name is the name of a FindingSummary: the summary type, lower-cased, and 16 hex
-- digits of the SHA-256 of the row's key columns as a JSON array. Policy names and sources are free
-- text (upper case, spaces) and resource keys are long, so a readable name could not be valid and
-- unique at once; the hash is both, and stays the same across refreshes. It lives here, used by
-- every summary query, so there is one definition.
-- +goose StatementBegin
CREATE FUNCTION analytics_summary_name(p_type text, p_key jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(p_type) || '-' || left(encode(sha256(convert_to(p_key::text, 'UTF8')), 'hex'), 16) $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION analytics_summary_name(text, jsonb);
DROP INDEX analytics_results_report_namespace_idx;
