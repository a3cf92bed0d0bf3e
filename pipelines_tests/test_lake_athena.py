"""Athena DDL for the lake, and `<table>_current` run by the local engine over real S3 Parquet."""

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from sqlgym_pipelines.lib.athena_duckdb import s3_filesystem
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.lib.lake_athena import (
    AthenaTypeError,
    athena_type,
    create_table_ddl,
    current_view_sql,
    register_lake_table,
)
from sqlgym_pipelines.lib.lake_layout import LakeLocation
from sqlgym_pipelines.resources.athena import AthenaResource

UTC = dt.UTC
D = Decimal
USERS = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("balance", pa.decimal128(12, 2)),
        ("tags", pa.list_(pa.string())),
        ("active", pa.bool_()),
        ("born", pa.date32()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
LAKE_USERS = USERS.append(pa.field("_synced_at", pa.timestamp("us", tz="UTC")))


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 10, day, hour, minute, tzinfo=UTC)


def user(id, name, balance, tags, active, born, updated_at) -> dict:
    return dict(id=id, name=name, balance=balance, tags=tags, active=active, born=born, updated_at=updated_at)  # fmt: skip


ADA_1 = user(1, "ada", D("10.00"), ["a"], True, dt.date(1990, 1, 1), at(23, 9))
BOB = user(2, "bob", D("-0.01"), [], False, dt.date(1985, 5, 5), at(23, 10))
CY_1 = user(3, "cy", D("1.00"), ["x", "y"], True, dt.date(2000, 2, 29), at(23, 11))
ADA_2 = {**ADA_1, "name": "ada v2", "updated_at": at(24, 7)}
CY_2 = {**CY_1, "balance": D("2.00"), "updated_at": at(24, 7, 30)}
ADA_3 = {**ADA_2, "name": "ada v3", "tags": None, "updated_at": at(24, 11)}
# Same cursor as CY_2 (rewritten without touching updated_at): the later sync must win.
CY_3 = {**CY_2, "balance": D("3.00"), "tags": ["z"]}
DEE = user(4, "dee", None, None, None, None, at(24, 11, 30))


@pytest.fixture
def fs(stack):
    return s3_filesystem(stack.s3_endpoint_url, stack.region, "testing", "testing")


@pytest.fixture
def athena(stack) -> AthenaResource:
    return AthenaResource(
        engine="duckdb",
        region=stack.region,
        database="sqlgym",
        s3_endpoint_url=stack.s3_endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def write(
    fs, location: LakeLocation, key: str, rows: list[dict], synced_at: dt.datetime, schema=USERS
):
    """One lake file: the rows plus the sync's `_synced_at`, as the extractor writes them."""
    table = pa.Table.from_pylist([{**r, "_synced_at": synced_at} for r in rows], schema=schema.append(LAKE_USERS.field("_synced_at")))  # fmt: skip
    pq.write_table(table, f"{location.bucket}/{location.prefix}/{key}", filesystem=fs, compression="snappy")  # fmt: skip


def test_incremental_current_view_keeps_latest_version_of_each_pk(fs, s3_bucket, athena):
    lake = LakeLocation(s3_bucket)
    write(fs, lake, "users/2025/10/23/incremental_20251023_120000.parquet", [ADA_1, BOB, CY_1], at(23, 12))  # fmt: skip
    write(
        fs, lake, "users/2025/10/24/incremental_20251024_080000.parquet", [ADA_2, CY_2], at(24, 8)
    )
    write(fs, lake, "users/2025/10/24/incremental_20251024_120000.parquet", [ADA_3, CY_3, DEE], at(24, 12))  # fmt: skip
    # Uncommitted and bookkeeping files sit outside the table's prefix and are never read.
    ghost = {**ADA_3, "name": "uncommitted", "updated_at": at(25, 1)}
    write(fs, lake, "_staging/users/20251025_010000/2025-10-25.parquet", [ghost], at(25, 1))
    fs.open_output_stream(f"{s3_bucket}/postgres-sync/_metadata/users/20251024_120000.json").close()

    register_lake_table(athena, "users", LAKE_USERS, lake, ["id"], "updated_at", "incremental")
    result = athena.query("SELECT * FROM users_current ORDER BY id")

    expected = pa.Table.from_pylist([ADA_3, BOB, CY_3, DEE], schema=USERS)
    assert result.schema == expected.schema
    assert result.to_pylist() == expected.to_pylist()
    # The view stays defined for later queries, qualified or not, and filters like a table.
    names = athena.query(
        "SELECT name FROM sqlgym.users_current u WHERE u.balance BETWEEN 0 AND 5 ORDER BY id"
    )
    assert names.column("name").to_pylist() == ["cy"]
    assert athena.query("SELECT count(*) AS n FROM users").column("n").to_pylist() == [8]


def test_incremental_without_cursor_column_orders_by_sync(fs, s3_bucket, athena):
    lake = LakeLocation(s3_bucket, "lake")
    write(fs, lake, "users/2025/10/24/incremental_20251024_080000.parquet", [ADA_2], at(24, 8))
    write(fs, lake, "users/2025/10/24/incremental_20251024_120000.parquet", [ADA_1], at(24, 12))
    register_lake_table(athena, "users", LAKE_USERS, lake, ["id"], None, "incremental")
    result = athena.query("SELECT name FROM users_current")
    assert result.column("name").to_pylist() == ["ada"]


def test_full_current_view_is_the_newest_snapshot(fs, s3_bucket, athena):
    lake = LakeLocation(s3_bucket)
    write(fs, lake, "users/2025/10/23/full_20251023_060000.parquet", [ADA_1, BOB, CY_1], at(23, 6))
    write(fs, lake, "users/2025/10/24/full_20251024_060000.parquet", [ADA_2, BOB], at(24, 6))
    # Today's second snapshot supersedes the first (whose file cleanup has not deleted yet).
    write(fs, lake, "users/2025/10/24/full_20251024_180000.parquet", [ADA_3, CY_3, DEE], at(24, 18))

    register_lake_table(athena, "users", LAKE_USERS, lake, ["id"], None, "full")
    result = athena.query("SELECT * FROM users_current ORDER BY id")

    expected = pa.Table.from_pylist([ADA_3, CY_3, DEE], schema=USERS)
    assert result.schema == expected.schema
    assert result.to_pylist() == expected.to_pylist()


def test_create_view_errors_like_athena(fs, s3_bucket, athena):
    lake = LakeLocation(s3_bucket)
    write(fs, lake, "users/2025/10/23/full_20251023_060000.parquet", [BOB], at(23, 6))
    register_lake_table(athena, "users", LAKE_USERS, lake, ["id"], None, "full")
    with pytest.raises(QueryFailed, match="'users_current' already exists: use CREATE OR REPLACE"):
        athena.query("CREATE VIEW users_current AS SELECT id FROM users")
    with pytest.raises(QueryFailed, match="unknown table 'nope'"):
        athena.query("CREATE OR REPLACE VIEW v AS SELECT * FROM nope")
    athena.query("CREATE OR REPLACE VIEW names AS SELECT name FROM users_current")
    assert athena.query("SELECT * FROM names").to_pylist() == [{"name": "bob"}]


EVERY_TYPE = pa.schema(
    [
        ("i8", pa.int8()),
        ("i16", pa.int16()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("amount", pa.decimal128(12, 2)),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("flag", pa.bool_()),
        ("s", pa.string()),
        ("ls", pa.large_string()),
        ("raw", pa.binary()),
        ("fixed", pa.binary(16)),
        ("d", pa.date32()),
        ("ts", pa.timestamp("us")),
        ("tstz", pa.timestamp("us", tz="UTC")),
        ("tags", pa.list_(pa.string())),
        ("grid", pa.list_(pa.list_(pa.int32()))),
        (
            "iv",
            pa.struct([("months", pa.int32()), ("days", pa.int32()), ("microseconds", pa.int64())]),
        ),
        ("attrs", pa.map_(pa.string(), pa.int64())),
        ("uid", pa.uuid()),
        ("doc", pa.json_()),
        ("_synced_at", pa.timestamp("us", tz="UTC")),
    ]
)


def test_ddl_for_every_type():
    ddl = create_table_ddl(
        "events", EVERY_TYPE, LakeLocation("lake-bkt", "postgres-sync"), "sqlgym"
    )
    columns = [
        "`i8` tinyint,", "`i16` smallint,", "`i32` int,", "`i64` bigint,", "`amount` decimal(12,2),",
        "`f32` float,", "`f64` double,", "`flag` boolean,", "`s` string,", "`ls` string,",
        "`raw` binary,", "`fixed` binary,", "`d` date,", "`ts` timestamp,", "`tstz` timestamp,",
        "`tags` array<string>,", "`grid` array<array<int>>,",
        "`iv` struct<months:int,days:int,microseconds:bigint>,", "`attrs` map<string,bigint>,",
        "`uid` binary,", "`doc` string,", "`_synced_at` timestamp",
    ]  # fmt: skip
    body = [line.strip() for line in ddl.splitlines()]
    assert body[0] == "CREATE EXTERNAL TABLE IF NOT EXISTS `sqlgym`.`events` ("
    assert body[1 : 1 + len(columns)] == columns
    assert "PARTITIONED BY (`year` string, `month` string, `day` string)" in body
    assert "STORED AS PARQUET" in body
    assert "LOCATION 's3://lake-bkt/postgres-sync/events/'" in body
    for prop in (
        "'projection.enabled'='true',",
        "'projection.year.type'='integer',",
        "'projection.year.range'='2000,2100',",
        "'projection.month.range'='1,12',",
        "'projection.month.digits'='2',",
        "'projection.day.range'='1,31',",
        "'projection.day.digits'='2',",
        "'storage.location.template'='s3://lake-bkt/postgres-sync/events/${year}/${month}/${day}/',",
        "'parquet.compression'='SNAPPY'",
    ):
        assert prop in body
    assert "--" not in ddl  # the template's comments are not sent
    parsed = sqlglot.parse_one(ddl, read="athena")
    assert parsed.find(sqlglot.exp.LocationProperty) is not None
    narrow = create_table_ddl("events", EVERY_TYPE, LakeLocation("b"), "db", start_year=2024)
    assert "'projection.year.range'='2024,2100'" in narrow


@pytest.mark.parametrize(
    ("arrow", "message"),
    [
        (pa.time64("us"), "time64"),
        (pa.uint32(), "uint32"),
        (pa.float16(), "halffloat"),
        (pa.decimal256(50, 2), "at most 38 digits"),
        (pa.list_(pa.null()), "null"),
        (pa.struct([("t", pa.time64("us"))]), "time64"),
    ],
)
def test_unmappable_types_fail_clearly(arrow, message):
    with pytest.raises(AthenaTypeError, match=message):
        athena_type(arrow)


def test_ddl_names_the_column_it_cannot_map():
    schema = pa.schema([("id", pa.int64()), ("opens_at", pa.time64("us"))])
    with pytest.raises(
        AthenaTypeError, match="table 'shops', column 'opens_at': Arrow type time64"
    ):
        create_table_ddl("shops", schema, LakeLocation("b"), "db")


def test_ddl_rejects_a_column_named_like_a_partition():
    schema = pa.schema([("id", pa.int64()), ("Year", pa.int32())])
    with pytest.raises(ConfigError, match="column 'Year' has the name of a lake partition column"):
        create_table_ddl("cars", schema, LakeLocation("b"), "db")


def test_view_sql_drops_lake_columns_and_checks_names():
    sql = current_view_sql("users", LAKE_USERS.names, ["id"], "updated_at", "incremental", "sqlgym")
    assert sql.startswith('CREATE OR REPLACE VIEW "sqlgym"."users_current" AS')
    assert 'SELECT "id", "name", "balance", "tags", "active", "born", "updated_at"\n' in sql
    assert 'PARTITION BY "id" ORDER BY "updated_at" DESC NULLS LAST, "_synced_at" DESC' in sql
    sqlglot.parse_one(sql, read="athena")
    with pytest.raises(ConfigError, match="'updatedd_at' is not one of \\(id, name,"):
        current_view_sql("users", LAKE_USERS.names, ["id"], "updatedd_at", "incremental", "db")
    with pytest.raises(ConfigError, match="sync_type 'snapshot' is not one of"):
        current_view_sql("users", LAKE_USERS.names, ["id"], None, "snapshot", "db")
