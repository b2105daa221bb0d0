-- reports_head is a report without its results: metadata, scope, summary, owner and whatever
-- else the object carries. Lists and watch-list initial events whose response holds only
-- metadata (PartialObjectMetadata, what Kyverno's and Policy Reporter's informers ask for) or a
-- Table (kubectl get) read it instead of the whole object: results are almost all of a report's
-- size, and converting them to text and decoding them was almost all of such a list's cost.

-- +goose Up
CREATE FUNCTION reports_head(obj jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    AS $$ SELECT CASE WHEN jsonb_typeof(obj->'spec') = 'object'
        THEN (obj - 'results') || jsonb_build_object('spec', (obj->'spec') - 'results')
        ELSE obj - 'results' END $$;

-- +goose Down
DROP FUNCTION reports_head(jsonb);
