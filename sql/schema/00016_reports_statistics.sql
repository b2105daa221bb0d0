-- Statistics of the reports table that do not wait for autovacuum.
--
-- Label and field selectors are planned from the statistics of the labels and fields columns:
-- with them, a selection of 1% of 3,000 reports is a bitmap scan of the GIN index and a sort of
-- its matches; without them (a table never analyzed, a bulk load autovacuum has not reached yet,
-- a server running without autovacuum) it is a walk of every key with a filter, 2–3 ms a list at
-- 3,000 reports and growing with the table (docs/benchmarks.md). The server keeps them: every few
-- seconds its statistics keeper (internal/apiserver/pgstorage/statistics.go) calls
-- reports_analyze_if_stale, which analyzes the table when autovacuum's own rule says it is due,
-- so autovacuum, when it runs, finds nothing left to do. ANALYZE is reserved to the owner, hence
-- a SECURITY DEFINER function that does exactly that statement on exactly that table
-- (00011_server_role). An ANALYZE samples at most 30,000 rows however large the table
-- (default_statistics_target 100): 0.35 s at 30,000 reports of 20 results on the development
-- machine.

-- +goose Up
-- reports_analyze_if_stale analyzes reports when the rows changed since its last ANALYZE exceed
-- autovacuum's threshold (autovacuum_analyze_threshold + autovacuum_analyze_scale_factor ×
-- rows; reltuples is -1 before the first ANALYZE or VACUUM), and returns how many had changed
-- (0 when it did not analyze). One caller at a time: another replica's call returns 0 at once
-- instead of queueing behind it (a transaction-level advisory lock, class "rpst").
-- +goose StatementBegin
CREATE FUNCTION reports_analyze_if_stale() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tuples  real;
    changed bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1919972212, 0) THEN
        RETURN 0;
    END IF;
    SELECT c.reltuples, coalesce(s.n_mod_since_analyze, 0) INTO tuples, changed
    FROM pg_class c
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.oid = 'reports'::regclass;
    IF changed <= current_setting('autovacuum_analyze_threshold')::bigint
                  + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(tuples, 0) THEN
        RETURN 0;
    END IF;
    ANALYZE reports;
    RETURN changed;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION reports_analyze_if_stale() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reports_analyze_if_stale() TO reports_server;

-- +goose Down
DROP FUNCTION reports_analyze_if_stale();
