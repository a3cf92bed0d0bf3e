-- The newest cursor value a sync may read up to without missing a late commit.
-- A transaction stamps updated_at with now() = its start (or later), so no open transaction
-- can still commit a row whose cursor is below the start of the oldest open transaction.
-- Sessions of other roles whose details this role may not see (no pg_read_all_stats)
-- are counted so the caller can fall back to the configured lag alone and say so.
SELECT
    clock_timestamp() AS server_now,
    min(xact_start) AS oldest_xact_start,
    -- another role's session shows NULL backend_type/state/xact_start to us
    count(*) FILTER (WHERE backend_type IS NULL) AS hidden_sessions
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND (backend_type = 'client backend' OR backend_type IS NULL)
