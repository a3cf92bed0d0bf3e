-- An incremental table holds every synced version of a row: keep, per pk, the one with the
-- newest cursor; a version synced twice with the same cursor (a rewrite that kept
-- updated_at, a re-extraction) goes to the newest sync. Trino SQL: double-quoted identifiers.
CREATE OR REPLACE VIEW {view} AS
SELECT {columns}
FROM (
    SELECT
        *,
        row_number() OVER (PARTITION BY {pk} ORDER BY {order_by}) AS "_version_rank"
    FROM {table}
) AS "versions"
WHERE "_version_rank" = 1
