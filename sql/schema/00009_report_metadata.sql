-- Each report's metadata, kept at write time. Metadata-only reads (PartialObjectMetadata: the
-- informers of Kyverno's reports controllers and of Policy Reporter, the hottest reads of a real
-- cluster) used to extract it from the object: every row's whole object decompressed (TOAST) to
-- read its first kilobyte. The column is stored inline in the row (under a kilobyte, managedFields
-- included), so such a read touches no TOAST at all; apiVersion and kind come from their own
-- generated columns.

-- +goose Up
ALTER TABLE reports ADD COLUMN metadata jsonb GENERATED ALWAYS AS (object->'metadata') STORED;

-- +goose Down
ALTER TABLE reports DROP COLUMN metadata;
