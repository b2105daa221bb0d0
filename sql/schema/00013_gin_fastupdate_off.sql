-- The selector indexes without GIN's pending list. With fastupdate (PostgreSQL's default), new
-- entries go to an unsorted list that every search reads whole until a VACUUM merges it, up to
-- gin_pending_list_limit (4 MB): after 3,000 report writes a label-selected list spent 13 ms in
-- its index scan instead of 1 ms (docs/benchmarks.md), and reports are written all the time
-- (Kyverno lists ephemeral reports by label for every resource it aggregates). Inserting straight
-- into the index cost writes about as much as the pending list did in the same measurement.

-- +goose Up
ALTER INDEX reports_labels_idx SET (fastupdate = off);
ALTER INDEX reports_fields_idx SET (fastupdate = off);
-- Merge what is pending now: turning fastupdate off stops adding to the list, not reading it.
SELECT gin_clean_pending_list('reports_labels_idx'), gin_clean_pending_list('reports_fields_idx');

-- +goose Down
ALTER INDEX reports_labels_idx RESET (fastupdate);
ALTER INDEX reports_fields_idx RESET (fastupdate);
