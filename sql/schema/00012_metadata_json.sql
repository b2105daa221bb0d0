-- The metadata column (00009) as json, the text PostgreSQL prints for the stored jsonb, instead of
-- jsonb. A metadata-only page (the informers of Kyverno's reports controllers and of Policy
-- Reporter) sends every row's metadata as text; from jsonb that is a conversion per row (and
-- building the row's {apiVersion, kind, metadata} object was another), which cost PostgreSQL 3-5
-- times what the server spends on the row (docs/benchmarks.md). json is sent as it is kept, and
-- json_build_object over it only concatenates. The text is jsonb's own output of the metadata, so
-- a metadata-only response is byte for byte what it was. Nothing queries the column's content:
-- selectors use the labels and fields columns, analysts the reporting views.

-- +goose Up
ALTER TABLE reports DROP COLUMN metadata;
ALTER TABLE reports ADD COLUMN metadata json GENERATED ALWAYS AS ((object->'metadata')::json) STORED;

-- +goose Down
ALTER TABLE reports DROP COLUMN metadata;
ALTER TABLE reports ADD COLUMN metadata jsonb GENERATED ALWAYS AS (object->'metadata') STORED;
