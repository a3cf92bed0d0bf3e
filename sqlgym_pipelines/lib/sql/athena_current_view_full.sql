-- A full table's current rows are its newest snapshot: the latest day's partition and, in
-- it, the latest sync (a new snapshot of today supersedes the earlier one, whose file may
-- still be there until the sync's cleanup deletes it). Grouping by partition rather than a
-- table-wide window keeps Athena from sorting every row on one worker.
CREATE OR REPLACE VIEW {view} AS
WITH "newest" AS (
    SELECT "year", "month", "day", max("_synced_at") AS "synced_at"
    FROM {table}
    GROUP BY "year", "month", "day"
    ORDER BY "year" DESC, "month" DESC, "day" DESC
    LIMIT 1
)
SELECT {columns}
FROM {table} AS "snapshot"
JOIN "newest"
    ON "snapshot"."year" = "newest"."year"
    AND "snapshot"."month" = "newest"."month"
    AND "snapshot"."day" = "newest"."day"
    AND "snapshot"."_synced_at" = "newest"."synced_at"
