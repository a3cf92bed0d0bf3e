"""The local Athena engine against real Parquet on the moto S3 server, and its catalog."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sqlgym_pipelines.lib.athena_catalog import Catalog, arrow_type
from sqlgym_pipelines.lib.athena_duckdb import DuckDBAthena, joda_to_strftime, s3_filesystem
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.local.provision import aws_client

D = Decimal
ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "customer_id": pa.array([10, 10, 20, 20], pa.int64()),
        "amount": pa.array([D("10.10"), D("20.20"), D("0.01"), D("99999999.99")], pa.decimal128(12, 2)),
        "created_at": pa.array(
            [dt.datetime(2024, 1, 30, 23, 59, 59), dt.datetime(2024, 1, 31, 12, 0), dt.datetime(2024, 1, 31, 6, 30), dt.datetime(2024, 2, 1, 0, 0, 1)],
            pa.timestamp("us"),
        ),
        "order_date": pa.array([dt.date(2024, 1, 30), dt.date(2024, 1, 31), dt.date(2024, 1, 31), dt.date(2024, 2, 1)]),
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def lake(stack):
    """A bucket laid out like the Postgres->S3 lake: orders by YYYY/MM/DD, customers flat, events hive."""
    bucket = f"athena-local-{uuid.uuid4().hex[:10]}"
    s3 = aws_client(stack, "s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": stack.region})
    fs = s3_filesystem(stack.s3_endpoint_url, stack.region, "testing", "testing")
    for day in sorted(set(ORDERS["order_date"].to_pylist())):
        rows = ORDERS.filter(pa.compute.equal(ORDERS["order_date"], pa.scalar(day)))
        pq.write_table(rows, f"{bucket}/lake/orders/{day:%Y/%m/%d}/part-0.parquet", filesystem=fs)
    # The lake's own bookkeeping must not be read as data (Athena skips _ and . names too).
    s3.put_object(Bucket=bucket, Key="lake/orders/_manifest.json", Body=b'{"files": 3}')
    customers = pa.table({"id": pa.array([10, 20], pa.int64()), "name": ["Ada", "Bob"]})
    pq.write_table(customers, f"{bucket}/lake/customers/customers.parquet", filesystem=fs)
    for day, kinds in (("2024-01-01", ["open", "click"]), ("2024-01-02", ["open"])):
        pq.write_table(
            pa.table({"kind": kinds}), f"{bucket}/lake/events/dt={day}/0.parquet", filesystem=fs
        )
    catalog = Catalog.from_dict(
        {
            "tables": {
                "orders": {
                    "location": f"s3://{bucket}/lake/orders/",
                    "partitioning": {"style": "directory", "template": "${year}/${month}/${day}"},
                },
                "customers": {"location": f"s3://{bucket}/lake/customers/"},
                "events": {
                    "location": f"s3://{bucket}/lake/events/",
                    "partitioning": {"style": "hive", "columns": ["dt"]},
                    "columns": {"kind": "varchar", "dt": "date"},
                },
                "refunds": {
                    "location": f"s3://{bucket}/lake/refunds/",  # no files yet, but typed
                    "columns": {"order_id": "bigint", "amount": "decimal(12,2)"},
                },
                "untyped_empty": {"location": f"s3://{bucket}/lake/nothing/"},
            }
        }
    )
    return catalog, fs


@pytest.fixture
def engine(lake):
    catalog, fs = lake
    with DuckDBAthena(catalog, fs, database="sqlgym") as engine:
        yield engine


def test_date_partitioned_group_by_join_sums_decimals_exactly(engine):
    result = engine.query(
        """
        SELECT c.name, count(*) AS orders, sum(o.amount) AS total
        FROM sqlgym.orders o JOIN customers c ON o.customer_id = c.id
        WHERE o.year = '2024' AND o.month = '01'
        GROUP BY c.name ORDER BY c.name
        """
    )
    assert result.to_pylist() == [
        {"name": "Ada", "orders": 2, "total": D("30.30")},
        {"name": "Bob", "orders": 1, "total": D("0.01")},
    ]
    assert pa.types.is_decimal(result.schema.field("total").type)


def test_partition_columns_come_from_the_path(engine):
    result = engine.query("SELECT id, year, month, day FROM orders ORDER BY id")
    assert [tuple(r.values()) for r in result.to_pylist()] == [
        (1, "2024", "01", "30"),
        (2, "2024", "01", "31"),
        (3, "2024", "01", "31"),
        (4, "2024", "02", "01"),
    ]


def test_decimals_and_timestamps_round_trip(engine):
    result = engine.query("SELECT amount, created_at, order_date FROM orders ORDER BY id")
    assert result.schema.field("amount").type == pa.decimal128(12, 2)
    assert result.schema.field("created_at").type == pa.timestamp("us")
    assert result.schema.field("order_date").type == pa.date32()
    assert result.to_pydict() == ORDERS.select(["amount", "created_at", "order_date"]).to_pydict()


def test_date_add_and_date_trunc_keep_dates_like_trino(engine):
    result = engine.query(
        """
        SELECT date_add('day', 1, order_date) AS next_day,
               date_add('month', 1, order_date) AS next_month,
               date_trunc('month', order_date) AS month_start,
               date_add('day', 1, DATE '2024-02-28') AS leap,
               date_add('hour', 2, created_at) AS later,
               date_trunc('hour', created_at) AS hour_start
        FROM orders WHERE id = 1
        """
    )
    row = result.to_pylist()[0]
    assert row == {
        "next_day": dt.date(2024, 1, 31),
        "next_month": dt.date(2024, 2, 29),
        "month_start": dt.date(2024, 1, 1),
        "leap": dt.date(2024, 2, 29),
        "later": dt.datetime(2024, 1, 31, 1, 59, 59),
        "hour_start": dt.datetime(2024, 1, 30, 23, 0),
    }
    for name in ("next_day", "next_month", "month_start", "leap"):
        assert result.schema.field(name).type == pa.date32(), name


def test_format_datetime_and_at_timezone_are_rewritten(engine):
    result = engine.query(
        """
        SELECT format_datetime(created_at, 'yyyy-MM-dd''T''HH:mm') AS iso,
               format_datetime(created_at, 'd MMM yyyy') AS human,
               format_datetime(at_timezone(created_at, 'America/New_York'), 'yyyy-MM-dd HH:mm') AS ny,
               parse_datetime('2024-03-04 05', 'yyyy-MM-dd HH') AS parsed
        FROM orders WHERE id = 2
        """
    )
    assert result.to_pylist() == [
        {
            "iso": "2024-01-31T12:00",
            "human": "31 Jan 2024",
            "ny": "2024-01-31 07:00",
            "parsed": dt.datetime(2024, 3, 4, 5),
        }
    ]


def test_hive_partitions_typed_by_the_catalog(engine):
    result = engine.query(
        "SELECT dt, count(*) FROM events WHERE dt >= DATE '2024-01-01' GROUP BY dt ORDER BY dt"
    )
    # Athena names unnamed result columns _col0, _col1, ...
    assert result.to_pydict() == {"dt": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)], "_col1": [2, 1]}


def test_bind_parameters(engine):
    result = engine.query(
        "SELECT id FROM orders WHERE customer_id = ? AND amount > ? ORDER BY id", [20, D("1.00")]
    )
    assert result.column("id").to_pylist() == [4]


def test_table_without_files_but_with_columns_is_empty_and_typed(engine):
    result = engine.query("SELECT * FROM refunds")
    assert result.num_rows == 0
    assert result.schema == pa.schema([("order_id", pa.int64()), ("amount", pa.decimal128(12, 2))])
    assert engine.query("SELECT count(*) AS n FROM refunds").to_pylist() == [{"n": 0}]


def test_table_without_files_or_columns_says_what_to_add(engine):
    with pytest.raises(QueryFailed, match=r"untyped_empty.*no data files.*add 'columns'"):
        engine.query("SELECT * FROM untyped_empty")


def test_malformed_sql_names_the_problem_and_the_query(engine):
    with pytest.raises(
        QueryFailed,
        match=r"at line 3, column 12 .*incomplete And clause.*'SELECT id FROM orders WHERE'",
    ):
        engine.query("\nSELECT id FROM orders WHERE\n  AND id = 1")
    with pytest.raises(
        QueryFailed, match=r"cannot parse Athena SQL.*query: \"SELECT 'abc FROM orders\""
    ):
        engine.query("SELECT 'abc FROM orders")


def test_unknown_table_lists_the_catalog(engine):
    with pytest.raises(
        QueryFailed, match=r"unknown table 'ordrs'.*customers, events, orders, refunds"
    ):
        engine.query("SELECT * FROM ordrs")
    with pytest.raises(QueryFailed, match=r"unknown table 'other_db.orders'"):
        engine.query("SELECT * FROM other_db.orders")


def test_cte_names_are_not_tables(engine):
    sql = "WITH big AS (SELECT * FROM orders WHERE amount > 15) SELECT count(*) AS n FROM big"
    assert engine.query(sql).to_pylist() == [{"n": 2}]


def test_functions_duckdb_lacks_are_named(engine):
    with pytest.raises(QueryFailed, match=r"url_extract_host\(\) has no DuckDB translation"):
        engine.query("SELECT url_extract_host('https://example.com/x') FROM customers")
    with pytest.raises(QueryFailed, match=r"'ww' has no DuckDB strftime equivalent"):
        engine.query("SELECT format_datetime(created_at, 'yyyy-ww') FROM orders")


def test_runtime_errors_carry_duckdb_reason(engine):
    with pytest.raises(
        QueryFailed, match=r"(?is)column \"nope\" not found.*query: 'SELECT nope FROM customers'"
    ):
        engine.query("SELECT nope FROM customers")


def test_joda_patterns():
    assert joda_to_strftime("yyyy-MM-dd HH:mm:ss.SSS") == "%Y-%m-%d %H:%M:%S.%g"
    assert joda_to_strftime("EEE, d MMMM yy h a") == "%a, %-d %B %y %-I %p"
    assert joda_to_strftime("'100%' yyyy 'o''clock'") == "100%% %Y o'clock"


def test_catalog_from_json_and_its_errors(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {"tables": {"Users": {"location": "s3://b/users/", "columns": {"ID": "bigint"}}}}
        )
    )
    catalog = Catalog.from_json(path)
    assert catalog.names() == ["users"]
    assert catalog.get("USERS").schema() == pa.schema([("id", pa.int64())])
    bad = {
        "csv": ({"location": "s3://b/x/", "format": "csv"}, "format 'csv' is not supported"),
        "nowhere": ({"format": "parquet"}, "missing 'location'"),
        "local": ({"location": "/tmp/x"}, "must look like s3://"),
        "style": (
            {"location": "s3://b/x/", "partitioning": {"style": "daily"}},
            "style 'daily' is not one of",
        ),
        "type": ({"location": "s3://b/x/", "columns": {"a": "blob"}}, "unknown Athena type 'blob'"),
    }
    for name, (spec, message) in bad.items():
        with pytest.raises(ConfigError, match=message):
            Catalog.from_dict({"tables": {name: spec}})
    with pytest.raises(ConfigError, match="does not exist"):
        Catalog.from_json(tmp_path / "missing.json")


def test_athena_types_to_arrow():
    assert arrow_type("decimal(38,9)") == pa.decimal128(38, 9)
    assert arrow_type("decimal", precision=10, scale=2) == pa.decimal128(10, 2)
    assert arrow_type("varchar(255)") == pa.string()
    assert arrow_type("timestamp(3) with time zone") == pa.timestamp("us", tz="UTC")
    assert arrow_type("array<bigint>") == pa.string()
