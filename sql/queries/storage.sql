-- Queries behind the storage.Interface (internal/apiserver/pgstorage). Every statement is scoped
-- by cluster.

-- Revisions: the cluster's row in revisions (created by EnsureCluster). Its current revision is
-- taken, moved and read only through pgstorage.clusterRevision (revision.go): write batches start
-- with LockRevision and end with SetRevision (the Writer); a compaction takes one revision
-- (NextRevision) and the move from CRDs raises it (RaiseRevision). Each holds the row lock until
-- commit: revisions are gapless and commit-ordered (docs/design.md, "Revisions"). SetCompacted is
-- the compactor's mark of how far the change log reaches back.

-- name: EnsureCluster :exec
INSERT INTO revisions (cluster) VALUES (@cluster) ON CONFLICT (cluster) DO NOTHING;

-- name: CurrentRevision :one
SELECT current, compacted FROM revisions WHERE cluster = @cluster;

-- name: LockRevision :one
-- Starts a write batch: the row lock orders this batch's commit before any later revision. The
-- batch's transaction id comes back too: when the answer to COMMIT is lost with the connection,
-- TransactionStatus tells whether the batch committed.
SELECT current, pg_current_xact_id()::text::bigint AS xact FROM revisions WHERE cluster = @cluster FOR UPDATE;

-- name: TransactionStatus :one
-- 'committed', 'aborted' or 'in progress'; '' once the id is too old to know (never within the
-- minutes a writer asks about).
SELECT coalesce(pg_xact_status((@xact::bigint)::text::xid8), '')::text AS status;

-- name: SetRevision :exec
UPDATE revisions SET current = @current WHERE cluster = @cluster;

-- name: NextRevision :one
-- Takes the cluster's revision lock until commit; the returned value is gapless and commit-ordered.
UPDATE revisions SET current = current + 1 WHERE cluster = @cluster RETURNING current;

-- name: RaiseRevision :one
-- Moves the revision past an external one (etcd's, when reports move over from CRDs): revisions
-- stay commit-ordered (the row lock) and unique, only no longer contiguous across the jump.
UPDATE revisions SET current = greatest(current, @revision::bigint) + 1 WHERE cluster = @cluster RETURNING current;

-- name: SetCompacted :exec
UPDATE revisions SET compacted = greatest(compacted, @revision::bigint) WHERE cluster = @cluster;

-- Objects and the change log.

-- name: GetObject :one
-- The object (NULL when absent) and the cluster's current revision, read in one snapshot so a
-- reader can tell "absent" from "absent as of a revision older than the one I asked for". Only a
-- get with a minimum resourceVersion needs the revision; other reads use ReadObject.
SELECT r.object, coalesce(r.resource_version, 0)::bigint AS resource_version, v.current
FROM revisions v LEFT JOIN reports r ON r.cluster = v.cluster AND r.key = @key
WHERE v.cluster = @cluster;

-- name: ReadObject :one
-- The object and its revision (no row when absent), without the cluster's revision row: that row
-- is the hottest in the database (every write batch locks and updates it), so reads that do not
-- need the current revision (a get without a resourceVersion, the state a write starts from) stay
-- off it.
SELECT object, resource_version FROM reports WHERE cluster = @cluster AND key = @key;

-- The three writes below each change one object and append its change-log entry in one
-- statement. The entry keeps the version the write replaced (prev_object), not the one it wrote:
-- that one is the key's current row, and once replaced, the next entry's prev_object
-- (sql/schema/00008_lean_changes.sql), so every version is stored once; zero rows means the precondition failed (key exists, or the revision moved) and
-- nothing was written, so the batch simply does not spend a revision on it.

-- name: CreateObject :execrows
WITH w AS (
    INSERT INTO reports (cluster, key, resource_version, object)
    VALUES (@cluster, @key, @resource_version, @object)
    ON CONFLICT (cluster, key) DO NOTHING
    RETURNING key
)
INSERT INTO changes (cluster, resource_version, key, event)
SELECT @cluster, @resource_version, w.key, 'ADDED' FROM w;

-- name: CreateObjects :execrows
-- CreateObject for several objects in one statement, the i-th (from 1) at revision
-- first_resource_version + i - 1: a write batch's consecutive creates. PostgreSQL prepares a
-- statement's insert (the generated columns, the indexes) once per statement, which for one
-- ~10 KB report costs about as much as storing it (docs/benchmarks.md). Fewer rows than objects
-- means a key existed (or came twice) and the caller must apply the creates one by one, where
-- that one takes no revision.
WITH w AS (
    INSERT INTO reports (cluster, key, resource_version, object)
    SELECT @cluster, k.key, k.n - 1 + sqlc.arg(first_resource_version)::bigint, o.object
    -- (Two unnests joined by position: sqlc does not know the multi-argument unnest.)
    FROM unnest(@keys::text[]) WITH ORDINALITY AS k(key, n)
    JOIN unnest(@objects::jsonb[]) WITH ORDINALITY AS o(object, n) ON o.n = k.n
    ON CONFLICT (cluster, key) DO NOTHING
    RETURNING key, resource_version
)
INSERT INTO changes (cluster, resource_version, key, event)
SELECT @cluster, w.resource_version, w.key, 'ADDED' FROM w;

-- name: ReplaceObject :execrows
-- Compare-and-swap on the revision the caller read. The self-join reads the replaced version
-- from the statement's snapshot, so the change log gets it without a round trip.
WITH w AS (
    UPDATE reports r SET object = @object, resource_version = @resource_version
    FROM reports o
    WHERE r.cluster = @cluster AND r.key = @key AND r.resource_version = @expected_resource_version
      AND o.cluster = r.cluster AND o.key = r.key
    RETURNING r.key, o.object AS prev_object
)
INSERT INTO changes (cluster, resource_version, key, event, prev_object, prev_resource_version)
SELECT @cluster, @resource_version, w.key, 'MODIFIED', w.prev_object, @expected_resource_version FROM w;

-- name: RemoveObject :execrows
WITH w AS (
    DELETE FROM reports d
    WHERE d.cluster = @cluster AND d.key = @key AND d.resource_version = @expected_resource_version
    RETURNING d.key, d.object
)
INSERT INTO changes (cluster, resource_version, key, event, prev_object, prev_resource_version)
SELECT @cluster, @resource_version, w.key, 'DELETED', w.object, @expected_resource_version FROM w;

-- name: ListObjects :many
-- One keyset page of the current state: keys in [key_from, key_before), selectors applied in SQL.
-- A page after key K starts at K || chr(1): text cannot hold NUL, so that is the next possible key.
-- label_contains/field_contains ({k: v}) and label_exists/field_exists ([k]) are the index-backed
-- parts; label_reqs/field_reqs carry what reports_match evaluates (skipped when NULL, so an
-- unfiltered page calls no function per row). Without selectors the plan is a walk of the primary
-- key that stops after row_limit rows; with them the plan depends on the selector's selectivity
-- (walk and filter, or GIN and sort the matches), so the caller has it planned for its parameters
-- every time (docs/design.md, "Lists").
-- shape reads less than the object (pgstorage.readShape): 1 reports_head(object), the object
-- without its results (Table responses); 2 its apiVersion, kind and metadata alone, from the
-- columns kept at write time (metadata-only responses: the object is not even decompressed).
-- A metadata row comes in its own column, metadata_object, as json (object is NULL): the metadata
-- column is kept as text already, so it is sent without a conversion (00012_metadata_json.sql);
-- objects stay jsonb, whose binary output is the cheapest text of them (to_json copies it twice).
-- 3 reads no object at all, for a read of whole objects or of metadata whose rows mostly come
-- from the server's object cache by key and revision (pgstorage.ObjectCache); ObjectsByKey reads
-- the others.
SELECT key, (CASE @shape::integer WHEN 1 THEN reports_head(object) WHEN 2 THEN NULL WHEN 3 THEN NULL
             ELSE object END)::jsonb AS object,
       (CASE @shape::integer WHEN 2 THEN json_build_object('apiVersion', api_version, 'kind', kind,
             'metadata', metadata) END)::json AS metadata_object, resource_version FROM reports
WHERE cluster = @cluster
  AND key >= @key_from AND key < @key_before
  AND (sqlc.narg(label_contains)::jsonb IS NULL OR labels @> sqlc.narg(label_contains)::jsonb)
  AND (sqlc.narg(label_exists)::text[] IS NULL OR labels ?& sqlc.narg(label_exists)::text[])
  AND (sqlc.narg(label_reqs)::jsonb IS NULL OR reports_match(labels, sqlc.narg(label_reqs)::jsonb))
  AND (sqlc.narg(field_contains)::jsonb IS NULL OR fields @> sqlc.narg(field_contains)::jsonb)
  AND (sqlc.narg(field_reqs)::jsonb IS NULL OR reports_match(fields, sqlc.narg(field_reqs)::jsonb))
ORDER BY key
LIMIT @row_limit;

-- name: ObjectsByKey :many
-- The objects of keys: those of a ListObjects page read with shape 3 that the object cache did
-- not hold, read in the page's snapshot, so each at the revision the page found. shape is the
-- one the page is for: 0 the whole object, 2 its metadata (as ListObjects reads them).
SELECT key, (CASE @shape::integer WHEN 2 THEN NULL ELSE object END)::jsonb AS object,
       (CASE @shape::integer WHEN 2 THEN json_build_object('apiVersion', api_version, 'kind', kind,
             'metadata', metadata) END)::json AS metadata_object, resource_version FROM reports
WHERE cluster = @cluster AND key = ANY(@keys::text[]);

-- name: ListObjectsAt :many
-- Like ListObjects, but the state as of revision at_revision (at_revision >= the compacted
-- revision): rows unchanged since then, plus for every key changed since then the version its
-- first later change replaced. Each side is filtered, ordered and limited on its own, so the
-- current rows are read exactly as ListObjects reads them (a primary-key walk that stops after
-- row_limit matches, selectors on the generated labels/fields columns: the objects are not
-- decompressed to be filtered) and the change log contributes at most row_limit rows; the merge
-- of the two sorts at most 2 * row_limit rows. The change-log side reads the log's entries in
-- the key range (bounded by the compactor's cap on the log, not by the number of objects).
-- The shape applies as in ListObjects: on the current rows from their columns, on the change
-- log's versions from the objects.
SELECT v.key, v.object::jsonb AS object, v.metadata_object::json AS metadata_object,
       v.resource_version::bigint AS resource_version FROM (
    (SELECT r.key, (CASE @shape::integer WHEN 1 THEN reports_head(r.object) WHEN 2 THEN NULL
                    ELSE r.object END) AS object,
            (CASE @shape::integer WHEN 2 THEN json_build_object('apiVersion', r.api_version, 'kind', r.kind,
                    'metadata', r.metadata) END) AS metadata_object, r.resource_version FROM reports r
     WHERE r.cluster = @cluster AND r.key >= @key_from AND r.key < @key_before
       AND r.resource_version <= @at_revision
       AND (sqlc.narg(label_contains)::jsonb IS NULL OR r.labels @> sqlc.narg(label_contains)::jsonb)
       AND (sqlc.narg(label_exists)::text[] IS NULL OR r.labels ?& sqlc.narg(label_exists)::text[])
       AND (sqlc.narg(label_reqs)::jsonb IS NULL OR reports_match(r.labels, sqlc.narg(label_reqs)::jsonb))
       AND (sqlc.narg(field_contains)::jsonb IS NULL OR r.fields @> sqlc.narg(field_contains)::jsonb)
       AND (sqlc.narg(field_reqs)::jsonb IS NULL OR reports_match(r.fields, sqlc.narg(field_reqs)::jsonb))
     ORDER BY r.key
     LIMIT @row_limit)
    UNION ALL
    (SELECT f.key, (CASE @shape::integer WHEN 1 THEN reports_head(f.prev_object) WHEN 2 THEN NULL
                    ELSE f.prev_object END),
            (CASE @shape::integer WHEN 2 THEN json_build_object('apiVersion', f.prev_object->'apiVersion',
                    'kind', f.prev_object->'kind', 'metadata', f.prev_object->'metadata') END),
            f.prev_resource_version FROM (
        SELECT DISTINCT ON (c.key) c.key, c.prev_object, c.prev_resource_version FROM changes c
        WHERE c.cluster = @cluster AND c.key >= @key_from AND c.key < @key_before
          AND c.resource_version > @at_revision
        ORDER BY c.key, c.resource_version
     ) f
     WHERE f.prev_object IS NOT NULL
       AND (sqlc.narg(label_contains)::jsonb IS NULL OR reports_labels(f.prev_object) @> sqlc.narg(label_contains)::jsonb)
       AND (sqlc.narg(label_exists)::text[] IS NULL OR reports_labels(f.prev_object) ?& sqlc.narg(label_exists)::text[])
       AND (sqlc.narg(label_reqs)::jsonb IS NULL OR reports_match(reports_labels(f.prev_object), sqlc.narg(label_reqs)::jsonb))
       AND (sqlc.narg(field_contains)::jsonb IS NULL OR reports_fields(f.prev_object) @> sqlc.narg(field_contains)::jsonb)
       AND (sqlc.narg(field_reqs)::jsonb IS NULL OR reports_match(reports_fields(f.prev_object), sqlc.narg(field_reqs)::jsonb))
     ORDER BY f.key
     LIMIT @row_limit)
) v
ORDER BY v.key
LIMIT @row_limit;

-- name: CountObjects :one
-- Objects in a key range at the current state, counting no further than count_limit (for
-- remainingItemCount, which is left out beyond it: a count is a walk of every key it counts).
SELECT count(*) FROM (
    SELECT 1 FROM reports WHERE cluster = @cluster AND key >= @key_from AND key < @key_before
    LIMIT @count_limit
) n;

-- name: CountObjectsAt :one
-- CountObjects as of revision at_revision, in two parts: current is the current state's count
-- (stopping at count_limit), since what the changes after at_revision add to it to give the count
-- at at_revision: for every key changed since, +1 if it existed at at_revision (its first later
-- change replaced a version), -1 if it exists now. Only the change log is read for the second
-- part, so neither part reads more than count_limit objects.
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM reports r WHERE r.cluster = @cluster AND r.key >= @key_from AND r.key < @key_before
            LIMIT @count_limit
        ) n)::bigint AS current,
       (SELECT coalesce(sum((f.prev_object IS NOT NULL)::integer
                            - (EXISTS (SELECT FROM reports r WHERE r.cluster = @cluster AND r.key = f.key))::integer), 0)
        FROM (
            SELECT DISTINCT ON (c.key) c.key, c.prev_object FROM changes c
            WHERE c.cluster = @cluster AND c.key >= @key_from AND c.key < @key_before
              AND c.resource_version > @at_revision
            ORDER BY c.key, c.resource_version
        ) f)::bigint AS since;

-- name: AnalyzeReportsIfStale :one
-- Analyzes reports when autovacuum's rule says its statistics are due (StatisticsKeeper;
-- sql/schema/00016_reports_statistics.sql): how many rows had changed, 0 if it did not.
SELECT reports_analyze_if_stale()::bigint AS changed;

-- name: StatsObjects :one
SELECT count(*)::bigint AS objects, coalesce(avg(pg_column_size(object)), 0)::bigint AS avg_size
FROM reports WHERE cluster = @cluster AND key >= @key_from AND key < @key_before;

-- name: ReadChanges :many
-- The cluster's revisions and its next changes after after_revision with keys in
-- [key_from, key_before) (all keys when NULL), oldest first: all keys for the per-process follower, which feeds every
-- watcher from this one read, or one watcher's range when it fell behind the follower's memory
-- window and reads for itself. One statement is one snapshot:
-- the rows are exactly the committed changes in (after_revision, current] (revisions are
-- commit-ordered), and if a compaction deleted some of them, compacted > after_revision says so.
-- With no change in range, one row with resource_version 0 carries the revisions. A change's object
-- (the state it wrote; NULL for a deletion) is read where it is kept: the key's next change's
-- prev_object, else the current row (sql/schema/00008_lean_changes.sql). Both are in this snapshot:
-- a later change commits with the revision that covers it.
-- The labels of both objects come separately (cheap on the binary JSONB): the follower wakes a
-- watcher whose selector requires a label value only for changes that carry it, without decoding.
SELECT v.current, v.compacted,
       coalesce(c.resource_version, 0)::bigint AS resource_version,
       coalesce(c.key, '')::text AS key, c.object, c.prev_object,
       (c.object -> 'metadata' -> 'labels')::jsonb AS labels, (c.prev_object -> 'metadata' -> 'labels')::jsonb AS prev_labels
FROM revisions v
LEFT JOIN LATERAL (
    SELECT b.resource_version, b.key, b.prev_object,
           CASE WHEN b.event <> 'DELETED' THEN coalesce(
               (SELECT n.prev_object FROM changes n
                WHERE n.cluster = b.cluster AND n.key = b.key AND n.resource_version > b.resource_version
                ORDER BY n.resource_version LIMIT 1),
               (SELECT r.object FROM reports r
                WHERE r.cluster = b.cluster AND r.key = b.key AND r.resource_version = b.resource_version)) END::jsonb AS object
    FROM (
        SELECT ch.cluster, ch.resource_version, ch.key, ch.event, ch.prev_object FROM changes ch
        WHERE ch.cluster = v.cluster AND ch.resource_version > @after_revision AND ch.resource_version <= v.current
          AND (sqlc.narg(key_from)::text IS NULL OR (ch.key >= sqlc.narg(key_from)::text AND ch.key < sqlc.narg(key_before)::text))
        ORDER BY ch.resource_version
        LIMIT @row_limit
    ) b
) c ON true
WHERE v.cluster = @cluster
ORDER BY c.resource_version;

-- Compaction (see Compactor). Leadership is a session-level advisory lock in the two-key space
-- (lock_class, hashtext(cluster)), so clusters compact independently and the key cannot collide
-- with the single-key locks of migrations.

-- name: CompactionState :one
-- What a compaction pass decides on: the revisions, the oldest change recorded within the
-- retention window (0 when none; a forward scan of the primary key from the compacted revision,
-- so it reads only the rows that are due), and the newest change.
SELECT v.current, v.compacted,
       coalesce((SELECT c.resource_version FROM changes c
                 WHERE c.cluster = v.cluster AND c.resource_version > v.compacted
                   AND c.recorded_at >= now() - make_interval(secs => @window_seconds::float8)
                 ORDER BY c.resource_version LIMIT 1), 0)::bigint AS first_kept,
       coalesce((SELECT max(c.resource_version) FROM changes c WHERE c.cluster = v.cluster), 0)::bigint AS newest_change
FROM revisions v WHERE v.cluster = @cluster;

-- name: DeleteCompactedChanges :execrows
-- One batch of the change-log entries at or below a compacted revision, oldest first: the rows up
-- to the batch_size-th one, as one primary-key range. Runs in its own short transaction, after the
-- compacted revision is committed and without the revision lock, so writers never wait for it.
DELETE FROM changes x
WHERE x.cluster = @cluster
  AND x.resource_version <= (
    SELECT coalesce(max(b.resource_version), 0) FROM (
        SELECT d.resource_version FROM changes d
        WHERE d.cluster = @cluster AND d.resource_version <= @revision
        ORDER BY d.resource_version
        LIMIT @batch_size
    ) b
  );

-- name: Notify :exec
-- Wakes the watchers of every server process. Delivered at commit, so a listener never hears of
-- a revision it cannot read yet. The change log, not the notification, is the truth.
SELECT pg_notify(@channel::text, @payload::text);

-- Metrics

-- name: MetricsStoredReports :many
-- Reports and results (the sum of the summary counts) by group and resource, for the stored
-- reports gauges. The metrics package caches it: it is not run on every scrape.
SELECT api_group, resource, count(*)::bigint AS reports,
       coalesce(sum(summary_pass + summary_fail + summary_warn + summary_error + summary_skip), 0)::bigint AS results
FROM reports
WHERE cluster = $1
GROUP BY api_group, resource;
