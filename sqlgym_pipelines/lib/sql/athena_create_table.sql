-- The lake table as Athena sees it (Hive DDL: backtick identifiers, lines starting with
-- "--" are dropped before sending). Partition projection computes partitions from the
-- table properties, so a sync never needs MSCK REPAIR or ADD PARTITION; the
-- storage.location.template maps them onto the lake's plain YYYY/MM/DD directories,
-- which are not Hive's year=YYYY form.
CREATE EXTERNAL TABLE IF NOT EXISTS {table} (
{columns}
)
PARTITIONED BY ({partition_columns})
STORED AS PARQUET
LOCATION {location}
TBLPROPERTIES (
{properties}
)
