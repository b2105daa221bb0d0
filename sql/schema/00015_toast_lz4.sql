-- Stored objects compressed with lz4 instead of pglz (PostgreSQL's default). A report is mostly
-- results, 10 KB of JSON and more, so every write compresses it: with pglz that was about a fifth
-- of PostgreSQL's time on a single-row insert, and lz4 compresses several times faster (about
-- 75 us less per 12 KB report). lz4's values are about 9% larger here, which at this size fills
-- the same number of pages, and it decompresses faster too (docs/benchmarks.md, "Creates: the
-- generated columns' functions, one statement per run of creates, lz4").
--
-- Only values written from now on are compressed with lz4: rows already stored keep pglz until
-- they are next written, and PostgreSQL reads both. A server built without lz4 (it is optional
-- before PostgreSQL 16; every packaged build has it), or PostgreSQL 13, keeps pglz: the migration
-- says so and goes on.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    -- (The statements are strings: PostgreSQL 13 has no SET COMPRESSION to parse.)
    IF current_setting('server_version_num')::integer >= 140000 THEN
        EXECUTE 'ALTER TABLE reports ALTER COLUMN object SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE changes ALTER COLUMN prev_object SET COMPRESSION lz4';
    ELSE
        RAISE NOTICE 'PostgreSQL before 14 has no lz4 compression: stored objects stay compressed with pglz';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4 compression: stored objects stay compressed with pglz (%)', SQLERRM;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 140000 THEN
        EXECUTE 'ALTER TABLE reports ALTER COLUMN object SET COMPRESSION default';
        EXECUTE 'ALTER TABLE changes ALTER COLUMN prev_object SET COMPRESSION default';
    END IF;
END
$$;
-- +goose StatementEnd
