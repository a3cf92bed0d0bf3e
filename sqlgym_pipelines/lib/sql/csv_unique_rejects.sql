-- A `unique` rule over the whole partition: every row after the first with the same key
-- (first = earliest file, then earliest line) leaves staging for the quarantine.
WITH ranked AS (
    SELECT {row}, _sqlgym_file, _sqlgym_line,
           first_value(_sqlgym_file || ':' || _sqlgym_line) OVER w AS first_seen,
           row_number() OVER w AS nth,
           ({key_text}) AS key_value
    FROM {staging}
    WINDOW w AS (PARTITION BY {key} ORDER BY {row})
), dupes AS (
    DELETE FROM {staging} s USING ranked r
    WHERE s.{row} = r.{row} AND r.nth > 1 AND r.key_value IS NOT NULL
    RETURNING r._sqlgym_file, r._sqlgym_line, r.first_seen, r.key_value
)
INSERT INTO {rejects} (dataset, partition, file_key, file_etag, line, column_name, reason, value, run_id)
SELECT %(dataset)s, %(partition)s, d._sqlgym_file, %(etags)s::jsonb ->> d._sqlgym_file, d._sqlgym_line, %(columns)s,
       'duplicate of ' || d.first_seen || ' (rule unique)', d.key_value, %(run_id)s
FROM dupes d
