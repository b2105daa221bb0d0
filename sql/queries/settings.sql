-- Settings of the PostgreSQL server that the storage relies on, checked when the server starts
-- (internal/db, CheckSettings).

-- name: VacuumSettings :one
-- Reports churn: every update and delete leaves a dead row version behind, in reports, the change
-- log and the analytics tables, and every write batch one of the cluster's revision row. Autovacuum
-- (which needs track_counts) removes them; without it, index scans walk ever more dead versions
-- and PostgreSQL's CPU per request grows as the server runs (docs/operations.md, "The database").
SELECT current_setting('autovacuum') = 'on' AS autovacuum,
       current_setting('track_counts') = 'on' AS track_counts;
