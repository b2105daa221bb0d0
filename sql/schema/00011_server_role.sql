-- Least privilege: the role reports_server holds exactly what a running server needs, so the
-- server can log in as a role that owns nothing (deploy/sql/roles.sql; docs/operations.md,
-- "Database roles"). The database's objects belong to the role that runs the migrations.
--
-- A server reads and writes its tables and reads the summaries. Two things it does need more than
-- that in PostgreSQL 15: REFRESH MATERIALIZED VIEW and ANALYZE are reserved to the owner. They
-- are wrapped in SECURITY DEFINER functions that do exactly those statements on exactly those
-- relations, and only reports_server (and the owner) may call them.
--
-- Like reports_reader, reports_server is a NOLOGIN group role: grant it to the login role the
-- server uses (GRANT reports_server TO reports_app). It is created here when missing, which
-- needs CREATEROLE; without it, deploy/sql/roles.sql creates both roles first.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reports_server') THEN
        BEGIN
            CREATE ROLE reports_server NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently
        END;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION analytics_refresh(summary text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- A fixed statement per summary: no name is ever spliced into SQL.
    CASE summary
        WHEN 'cluster_summary' THEN REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_cluster_summary;
        WHEN 'namespace_summary' THEN REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_namespace_summary;
        WHEN 'policy_summary' THEN REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_policy_summary;
        WHEN 'resource_summary' THEN REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_resource_summary;
        ELSE RAISE EXCEPTION 'unknown summary %', summary USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION analytics_analyze() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    ANALYZE analytics_results, analytics_reports, analytics_outcomes;
END
$$;
-- +goose StatementEnd

REVOKE ALL ON FUNCTION analytics_refresh(text), analytics_analyze() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION analytics_refresh(text), analytics_analyze() TO reports_server;

GRANT USAGE ON SCHEMA public TO reports_server;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    reports, changes, revisions, namespaces,
    analytics_checkpoints, analytics_refreshes, analytics_cluster_history,
    analytics_reports, analytics_results, analytics_outcomes
    TO reports_server;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO reports_server;
GRANT SELECT ON
    analytics_cluster_summary, analytics_namespace_summary, analytics_policy_summary, analytics_resource_summary,
    goose_db_version
    TO reports_server;

-- +goose Down
REVOKE ALL ON
    reports, changes, revisions, namespaces,
    analytics_checkpoints, analytics_refreshes, analytics_cluster_history,
    analytics_reports, analytics_results, analytics_outcomes,
    analytics_cluster_summary, analytics_namespace_summary, analytics_policy_summary, analytics_resource_summary,
    goose_db_version
    FROM reports_server;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM reports_server;
REVOKE USAGE ON SCHEMA public FROM reports_server;
DROP FUNCTION analytics_analyze();
DROP FUNCTION analytics_refresh(text);
-- The role reports_server is left in place, as reports_reader is (00002): roles are shared by every
-- database of the PostgreSQL server.
