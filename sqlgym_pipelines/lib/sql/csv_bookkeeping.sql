-- Bookkeeping of the CSV ingestion, in the target database (schema {schema}):
-- rejects: the quarantine, one row per failure (line, column, reason) of a staged partition;
-- stage_manifest: what each dataset's partition staged, waiting for its checks and publish;
-- loaded_files: every file (key + ETag) published, so an append never loads a file twice.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.rejects (
    dataset     text        NOT NULL,
    partition   date        NOT NULL,
    file_key    text        NOT NULL,
    file_etag   text,
    line        bigint,
    column_name text,
    reason      text        NOT NULL,
    value       text,
    record      text,
    run_id      text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejects_dataset_partition ON {schema}.rejects (dataset, partition);

CREATE TABLE IF NOT EXISTS {schema}.stage_manifest (
    dataset        text        NOT NULL,
    partition      date        NOT NULL,
    run_id         text        NOT NULL,
    staging_table  text        NOT NULL,
    files          jsonb       NOT NULL,
    rows_read      bigint      NOT NULL,
    rejected_rows  bigint      NOT NULL,
    staged_rows    bigint      NOT NULL,
    duplicate_keys bigint      NOT NULL DEFAULT 0,
    reasons        jsonb       NOT NULL,
    staged_at      timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    PRIMARY KEY (dataset, partition)
);

ALTER TABLE {schema}.stage_manifest ADD COLUMN IF NOT EXISTS duplicate_keys bigint NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS {schema}.loaded_files (
    dataset   text        NOT NULL,
    file_key  text        NOT NULL,
    file_etag text        NOT NULL,
    partition date        NOT NULL,
    rows      bigint      NOT NULL,
    run_id    text        NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, file_key, file_etag)
);
