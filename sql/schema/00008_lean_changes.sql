-- The change log keeps each version of a report once. Until now a change row carried the new
-- state (object) and the state it replaced (prev_object), so every version was stored twice, and
-- a third time while it was the current row in reports: on a create-only load the log was as big
-- as the reports themselves. A change now keeps only the state it replaced. The state a change
-- wrote is still exact, read where it lives: the prev_object of the key's next change when there
-- is one, else the key's current row (whose resource_version is the change's). Both reads are
-- primary-key or changes_key_idx lookups in the same snapshot as the change (a later change and
-- the revision that covers it commit together), and compaction deletes the log oldest first, so
-- a change that is still in the log always has its next change there too.

-- +goose Up
ALTER TABLE changes DROP COLUMN object;

-- +goose Down
ALTER TABLE changes ADD COLUMN object jsonb;
UPDATE changes c SET object = coalesce(
    (SELECT n.prev_object FROM changes n
     WHERE n.cluster = c.cluster AND n.key = c.key AND n.resource_version > c.resource_version
     ORDER BY n.resource_version LIMIT 1),
    (SELECT r.object FROM reports r
     WHERE r.cluster = c.cluster AND r.key = c.key AND r.resource_version = c.resource_version))
WHERE c.event <> 'DELETED';
