"""pg_load: Arrow -> Postgres through COPY + one set-based merge, checked against a real server."""

import datetime as dt
import math
import re
import threading
import time
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg, pg_load
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.lib.pg_load import (
    ROW_COLUMN,
    MergeCounts,
    TableRef,
    copy_arrow,
    create_table,
    load_arrow,
    pg_type,
)

UTC = dt.UTC
OLD = dt.datetime(2000, 1, 1, tzinfo=UTC)
ITEMS = TableRef("public", "items")
ITEMS_DDL = (
    "CREATE TABLE public.items (id bigint PRIMARY KEY, name text, qty integer, "
    "price numeric(10,2), updated_at timestamptz NOT NULL DEFAULT now())"
)


def _execute(url: str, *statements: str) -> None:
    with pg.connection(url) as conn:
        for statement in statements:
            conn.execute(statement)


def _rows(url: str, query: str) -> list[tuple]:
    with pg.connection(url) as conn:
        return conn.execute(query).fetchall()


def _items(ids, names, qtys=None, prices=None) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array(names, pa.string()),
            "qty": pa.array(qtys if qtys is not None else [1] * n, pa.int64()),
            "price": pa.array(
                prices if prices is not None else [Decimal("1.00")] * n, pa.decimal128(10, 2)
            ),
        }
    )


def _seed_items(url: str, ids) -> None:
    """items with one row per id: name 'n<id>', qty 1, price 1.00, updated_at 2000-01-01."""
    _execute(url, ITEMS_DDL)
    with pg.connection(url) as conn:
        for i in ids:
            conn.execute(
                "INSERT INTO items (id, name, qty, price, updated_at) VALUES (%s, %s, 1, 1.00, %s)",
                (i, f"n{i}", OLD),
            )


def _load(url: str, target: TableRef, data, **options) -> MergeCounts:
    """load_arrow in a transaction of its own: committed on success, rolled back on error."""
    with pg.connection(url) as conn:
        return load_arrow(conn, target, data, **options)


def _nan_safe(values):
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in values]


# -- pg_type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrow_type", "expected"),
    [
        (pa.int8(), "smallint"),
        (pa.int16(), "smallint"),
        (pa.int32(), "integer"),
        (pa.int64(), "bigint"),
        (pa.uint8(), "smallint"),
        (pa.uint16(), "integer"),
        (pa.uint32(), "bigint"),
        (pa.uint64(), "numeric(20,0)"),
        (pa.float16(), "real"),
        (pa.float32(), "real"),
        (pa.float64(), "double precision"),
        (pa.decimal128(12, 4), "numeric(12,4)"),
        (pa.decimal128(38, 0), "numeric(38,0)"),
        (pa.decimal256(60, 10), "numeric(60,10)"),
        (pa.bool_(), "boolean"),
        (pa.string(), "text"),
        (pa.large_string(), "text"),
        (pa.string_view(), "text"),
        (pa.date32(), "date"),
        (pa.date64(), "date"),
        (pa.timestamp("us"), "timestamp"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("us", "UTC"), "timestamptz"),
        (pa.timestamp("ms", "Europe/Paris"), "timestamptz"),
        (pa.time32("s"), "time"),
        (pa.time64("us"), "time"),
        (pa.duration("us"), "interval"),
        (pa.duration("s"), "interval"),
        (pa.binary(), "bytea"),
        (pa.large_binary(), "bytea"),
        (pa.binary(16), "bytea"),
        (pa.list_(pa.int64()), "jsonb"),
        (pa.large_list(pa.string()), "jsonb"),
        (pa.struct([("a", pa.int32()), ("b", pa.string())]), "jsonb"),
        (pa.dictionary(pa.int32(), pa.string()), "text"),
        (pa.dictionary(pa.int8(), pa.int64()), "bigint"),
        (pa.null(), "text"),
    ],
    ids=str,
)
def test_pg_type_maps_every_arrow_family(arrow_type, expected):
    assert pg_type(arrow_type) == expected


@pytest.mark.parametrize(
    "arrow_type",
    [pa.map_(pa.string(), pa.int64()), pa.month_day_nano_interval(), pa.list_(pa.int8(), 3)],
    ids=str,
)
def test_pg_type_unmappable_type_is_a_config_error(arrow_type):
    with pytest.raises(ConfigError, match="has no Postgres mapping; cast the column first"):
        pg_type(arrow_type)


# -- copy_arrow: exact round trips --------------------------------------------------------

ROUND_TRIPS = [
    (pa.int8(), [-128, 127, None], None),
    (pa.int16(), [-32768, 32767], None),
    (pa.int32(), [-(2**31), 2**31 - 1], None),
    (pa.int64(), [-(2**63), 2**63 - 1, 0], None),
    (pa.uint8(), [0, 255], None),
    (pa.uint16(), [65535], None),
    (pa.uint32(), [2**32 - 1], None),
    (pa.uint64(), [2**64 - 1, 0, None], [Decimal(2**64 - 1), Decimal(0), None]),
    (pa.float32(), [1.5, -0.25, float("nan"), float("inf"), float("-inf"), None], None),
    (
        pa.float64(),
        [0.1, 1e-300, 1.7976931348623157e308, 5e-324, float("nan"), float("inf"), -math.inf],
        None,
    ),
    (
        pa.decimal128(38, 10),
        [
            Decimal("1234567890123456789012345678.0123456789"),
            Decimal("-0.0000000001"),
            Decimal("0E-10"),
            None,
        ],
        None,
    ),
    (pa.decimal128(5, 2), [Decimal("999.99"), Decimal("-999.99")], None),
    (pa.decimal256(60, 5), [Decimal("1" * 55 + ".12345")], None),
    (pa.bool_(), [True, False, None], None),
    (pa.large_string(), ["a,b", 'say "hi"', "", None], None),
    (pa.string_view(), ["view", "", None], None),
    (
        pa.date32(),
        [dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(2024, 2, 29), dt.date(9999, 12, 31)],
        None,
    ),
    (pa.date64(), [dt.date(2024, 2, 29), None], None),
    (
        pa.timestamp("us"),
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
            dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
            dt.datetime(1, 1, 1),
            None,
        ],
        None,
    ),
    (
        pa.timestamp("us", "UTC"),
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            None,
        ],
        None,
    ),
    (
        pa.timestamp("us", "Asia/Kolkata"),
        [dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)],
        None,
    ),
    (
        pa.timestamp("ns", "UTC"),
        [1_700_000_000_123_456_000],
        [dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)],
    ),
    (pa.timestamp("ms"), [dt.datetime(2024, 1, 1, 0, 0, 0, 7000)], None),
    (pa.time64("us"), [dt.time(23, 59, 59, 999999), dt.time(0, 0), None], None),
    (pa.time32("ms"), [dt.time(1, 2, 3, 4000)], None),
    (
        pa.duration("us"),
        [
            dt.timedelta(days=1, seconds=3, microseconds=5),
            dt.timedelta(microseconds=-1),
            dt.timedelta(days=-400, seconds=7),
            dt.timedelta(0),
            None,
        ],
        None,
    ),
    (pa.duration("s"), [dt.timedelta(hours=-2), dt.timedelta(days=10_000)], None),
    (pa.duration("ms"), [dt.timedelta(milliseconds=1500)], None),
    (
        pa.duration("ns"),
        [86_400_000_001_000, -1_000],
        [dt.timedelta(days=1, microseconds=1), dt.timedelta(microseconds=-1)],
    ),
    (pa.binary(), [bytes(range(256)), b"", None, b"\\x00", b'a,"b"\n', b"\r\n"], None),
    (pa.large_binary(), [b"\x00\xff", None], None),
    (pa.binary(3), [b"\x00\x01\x02", b"\\\\\\"], None),
    (
        pa.list_(pa.int64()),
        [[1, None, 3], [], None, [-(2**63)]],
        None,
    ),
    (pa.large_list(pa.string()), [['a"b', "c,d", "é\n"]], None),
    (
        pa.struct([("a", pa.int32()), ("b", pa.string())]),
        [{"a": 1, "b": 'x,"y"'}, {"a": None, "b": None}, None],
        None,
    ),
    (pa.list_(pa.struct([("k", pa.string())])), [[{"k": "v"}, None]], None),
    (pa.dictionary(pa.int32(), pa.string()), ["x", "y", "x", None, ""], None),
    (pa.dictionary(pa.int32(), pa.binary()), [b"\x00\\", None, b"\x00\\"], None),
    (pa.dictionary(pa.int8(), pa.int64()), [7, 7, None], None),
    (pa.null(), [None, None], None),
]


@pytest.mark.parametrize("binary", [None, False], ids=["auto", "csv"])
@pytest.mark.parametrize(
    ("arrow_type", "values", "expected"), ROUND_TRIPS, ids=[str(c[0]) for c in ROUND_TRIPS]
)
def test_copy_arrow_round_trips_exactly(pg_db, arrow_type, values, expected, binary):
    """A table created from the Arrow schema (as the staging is) holds every value exactly, in
    binary (auto, where the encoder has the type) and in CSV."""
    if pa.types.is_dictionary(arrow_type):
        array = pa.array(values, arrow_type.value_type).dictionary_encode()
    elif arrow_type == pa.null():
        array = pa.nulls(len(values))
    else:
        array = pa.array(values, arrow_type)
    data = pa.table({"id": pa.array(range(len(values)), pa.int32()), "v": array})
    ref = TableRef("public", "t")
    with pg.connection(pg_db) as conn:
        create_table(conn, ref, data.schema, primary_key=["id"])
        assert copy_arrow(conn, ref, data, binary=binary) == len(values)
    got = [r[0] for r in _rows(pg_db, "SELECT v FROM t ORDER BY id")]
    assert _nan_safe(got) == _nan_safe(values if expected is None else expected)


BINARY_TYPES = [pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
                pa.uint16(), pa.uint32(), pa.uint64(), pa.float32(), pa.float64(),
                pa.decimal128(38, 10), pa.string(), pa.large_string(), pa.string_view(),
                pa.date32(), pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us"),
                pa.timestamp("us", "UTC"), pa.time64("us"), pa.duration("us"), pa.binary(),
                pa.dictionary(pa.int32(), pa.string())]  # fmt: skip


@pytest.mark.parametrize("arrow_type", BINARY_TYPES, ids=str)
def test_copy_arrow_writes_binary_into_a_table_made_from_the_schema(pg_db, arrow_type):
    """The staging tables are made from the Arrow schema: their loads take the binary path."""
    data = pa.table({"v": pa.nulls(2, arrow_type)})
    with pg.connection(pg_db) as conn:
        create_table(conn, TableRef("public", "b"), data.schema)
        assert copy_arrow(conn, TableRef("public", "b"), data, binary=True) == 2


@pytest.mark.parametrize(
    ("ddl", "data"),
    [
        ("n integer", pa.table({"n": pa.array([1], pa.int64())})),  # binary int8 is not int4
        ("j jsonb", pa.table({"j": ['{"a": 1}']})),
        ("t timestamptz", pa.table({"t": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us"))})),
        ("t timestamp", pa.table({"t": pa.array([OLD], pa.timestamp("us", "UTC"))})),
        ("d date", pa.table({"d": pa.array([dt.date(2024, 1, 1)], pa.date64())})),
    ],
    ids=["int64-into-integer", "text-into-jsonb", "naive-into-tz", "tz-into-naive", "date64"],
)
def test_copy_arrow_falls_back_to_csv_where_binary_would_not_read_the_same(pg_db, ddl, data):
    """Binary input must match the column's type exactly: otherwise CSV, which Postgres parses
    (and casts) as text; forcing binary there is a clear error."""
    _execute(pg_db, f"CREATE TABLE f ({ddl})")
    with pg.connection(pg_db) as conn:
        with pytest.raises(ConfigError, match="cannot be written in binary"), conn.transaction():
            copy_arrow(conn, TableRef("public", "f"), data, binary=True)
        assert copy_arrow(conn, TableRef("public", "f"), data) == 1  # auto: through CSV
        copy_arrow(conn, TableRef("public", "f"), data, binary=False)
        got = conn.execute("SELECT * FROM f").fetchall()
    assert len(got) == 2
    assert got[0] == got[1]


def test_copy_arrow_binary_into_varchar_checks_the_length(pg_db):
    """Binary text into varchar(n) is checked like text input: too long is an error, never cut."""
    _execute(pg_db, "CREATE TABLE v (s varchar(3), c char(2))")
    with pg.connection(pg_db) as conn:
        copy_arrow(conn, TableRef("public", "v"), pa.table({"s": ["abc"], "c": ["x"]}), binary=True)
        with pytest.raises(QueryFailed, match="too long"), conn.transaction():
            copy_arrow(conn, TableRef("public", "v"), pa.table({"s": ["abcd"], "c": ["x"]}))
    assert _rows(pg_db, "SELECT s, c FROM v") == [("abc", "x ")]


def test_copy_arrow_binary_casts_later_batches_to_the_first_schema(pg_db):
    schema = pa.schema([("s", pa.string())])
    batches = [pa.table({"s": ["a"]}, schema), pa.table({"s": pa.array(["b"], pa.large_string())})]
    with pg.connection(pg_db) as conn:
        create_table(conn, TableRef("public", "c"), schema)
        assert copy_arrow(conn, TableRef("public", "c"), batches, binary=True) == 2
    assert _rows(pg_db, "SELECT s FROM c ORDER BY s") == [("a",), ("b",)]


def test_copy_arrow_strings_keep_separators_quotes_newlines_and_empty_vs_null(pg_db):
    values = [
        "plain",
        "comma, inside",
        'double "quotes" and ""pairs""',
        "'single'",
        "line\nbreak",
        "crlf\r\nline",
        "lone\rcr",
        "\n",
        "",
        None,
        "NULL",
        "\\N",
        "\\.",
        "back\\slash",
        "tab\there",
        "  padded  ",
        "héllo wörld ✓ 日本語 🎉",
        "e\u0301",
        '",',
    ]
    data = pa.table({"id": pa.array(range(len(values)), pa.int32()), "s": values})
    with pg.connection(pg_db) as conn:
        create_table(conn, TableRef("public", "s"), data.schema)
        copy_arrow(conn, TableRef("public", "s"), data)
    got = _rows(pg_db, "SELECT s, s IS NULL, length(s) FROM s ORDER BY id")
    assert [r[0] for r in got] == values
    assert [r[1] for r in got] == [v is None for v in values]
    assert got[values.index("")] == ("", False, 0)  # empty string stays distinct from NULL
    assert [r[2] for r in got] == [None if v is None else len(v) for v in values]


def test_copy_arrow_single_column_end_of_data_marker_is_a_value(pg_db):
    """A lone `\\.` line would end COPY's CSV input if it were not quoted; rows after it stay."""
    data = pa.table({"s": ["before", "\\.", "after"]})
    with pg.connection(pg_db) as conn:
        conn.execute("CREATE TABLE m (s text, n serial)")
        assert copy_arrow(conn, TableRef("public", "m"), data) == 3
    assert _rows(pg_db, "SELECT s FROM m ORDER BY n") == [("before",), ("\\.",), ("after",)]


def test_copy_arrow_streams_batches_in_order_and_skips_empty_ones(pg_db):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    ref = TableRef("public", "b")

    def batches():
        yield pa.RecordBatch.from_pylist([], schema=schema)
        for start in range(0, 10, 3):
            ids = list(range(start, min(start + 3, 10)))
            yield pa.RecordBatch.from_pylist([{"id": i, "v": f"v,{i}"} for i in ids], schema)
            yield pa.RecordBatch.from_pylist([], schema=schema)

    with pg.connection(pg_db) as conn:
        create_table(conn, ref, schema, with_row_column=True)
        assert copy_arrow(conn, ref, batches()) == 10
    got = _rows(pg_db, f"SELECT id, v FROM b ORDER BY {ROW_COLUMN}")
    assert got == [(i, f"v,{i}") for i in range(10)]


def test_copy_arrow_accepts_a_table_a_record_batch_and_a_list_of_tables(pg_db):
    schema = pa.schema([("id", pa.int64())])
    ref = TableRef("public", "x")
    table = pa.Table.from_batches(
        [pa.RecordBatch.from_pylist([{"id": 1}, {"id": 2}], schema)] * 2
    )  # a Table of two chunks
    with pg.connection(pg_db) as conn:
        create_table(conn, ref, schema)
        assert copy_arrow(conn, ref, table) == 4
        assert copy_arrow(conn, ref, pa.RecordBatch.from_pylist([{"id": 3}], schema)) == 1
        assert copy_arrow(conn, ref, [pa.table({"id": [4]}), pa.table({"id": [5, 6]})]) == 3
    assert _rows(pg_db, "SELECT id FROM x ORDER BY id") == [(i,) for i in (1, 1, 2, 2, 3, 4, 5, 6)]


def test_copy_arrow_matches_columns_by_name_and_leaves_the_rest_to_defaults(pg_db):
    _execute(pg_db, "CREATE TABLE c (a int, b text, c text DEFAULT 'dflt', d serial)")
    with pg.connection(pg_db) as conn:
        copy_arrow(conn, TableRef("public", "c"), pa.table({"b": ["x", "y"], "a": [1, 2]}))
    assert _rows(pg_db, "SELECT a, b, c, d FROM c ORDER BY d") == [
        (1, "x", "dflt", 1),
        (2, "y", "dflt", 2),
    ]


@pytest.mark.parametrize(
    "data",
    [
        pa.table({"id": pa.array([], pa.int64())}),
        pa.RecordBatch.from_pylist([], schema=pa.schema([("id", pa.int64())])),
        [],
        iter([pa.table({"id": pa.array([], pa.int64())})] * 3),
    ],
    ids=["empty-table", "empty-batch", "no-batches", "only-empty-batches"],
)
def test_copy_arrow_zero_rows_writes_nothing(pg_db, data):
    _execute(pg_db, "CREATE TABLE z (id bigint)")
    with pg.connection(pg_db) as conn:
        assert copy_arrow(conn, TableRef("public", "z"), data) == 0
    assert _rows(pg_db, "SELECT count(*) FROM z") == [(0,)]


def test_copy_arrow_bad_value_is_query_failed_naming_the_table(pg_db):
    _execute(pg_db, "CREATE TABLE bad (n integer)")
    with (
        pytest.raises(QueryFailed, match=r"COPY into public\.bad failed: .*integer"),
        pg.connection(pg_db) as conn,
    ):
        copy_arrow(conn, TableRef("public", "bad"), pa.table({"n": ["1", "abc"]}))
    assert _rows(pg_db, "SELECT count(*) FROM bad") == [(0,)]


def test_copy_arrow_error_in_the_input_stream_propagates_and_nothing_is_written(pg_db):
    _execute(pg_db, "CREATE TABLE s (id bigint)")

    def batches():
        yield pa.table({"id": [1, 2, 3]})
        raise ValueError("source broke")

    with pytest.raises(ValueError, match="source broke"), pg.connection(pg_db) as conn:
        copy_arrow(conn, TableRef("public", "s"), batches())
    assert _rows(pg_db, "SELECT count(*) FROM s") == [(0,)]


def test_copy_arrow_refuses_a_batch_whose_columns_differ_from_the_first(pg_db):
    """COPY's column list comes from the first batch: a reordered batch would land in the wrong
    columns, so it is refused rather than silently swapped."""
    _execute(pg_db, "CREATE TABLE o (a text, b text)")
    batches = [pa.table({"a": ["a1"], "b": ["b1"]}), pa.table({"b": ["b2"], "a": ["a2"]})]
    with (
        pytest.raises(ConfigError, match="a batch has columns b, a, the first had a, b"),
        pg.connection(pg_db) as conn,
    ):
        copy_arrow(conn, TableRef("public", "o"), batches)
    assert _rows(pg_db, "SELECT count(*) FROM o") == [(0,)]


# -- load_arrow: append --------------------------------------------------------------------


def test_append_adds_rows_and_counts_them(pg_db):
    _seed_items(pg_db, [1, 2])
    data = _items([3, 4, 5], ["c", None, ""], [7, 8, None], [Decimal("9.99"), None, Decimal("0")])
    with pg.connection(pg_db) as conn:
        counts = load_arrow(conn, ITEMS, data, mode="append")
    assert counts == MergeCounts(staged=3, inserted=3)
    got = _rows(
        pg_db, "SELECT id, name, qty, price, updated_at > '2000-01-01Z' FROM items ORDER BY id"
    )
    assert got == [
        (1, "n1", 1, Decimal("1.00"), False),
        (2, "n2", 1, Decimal("1.00"), False),
        (3, "c", 7, Decimal("9.99"), True),
        (4, None, 8, None, True),
        (5, "", None, Decimal("0.00"), True),
    ]


def test_append_into_a_table_without_a_key_keeps_duplicates(pg_db):
    _execute(pg_db, "CREATE TABLE events (k text, v int)")
    data = pa.table({"k": ["a", "a", "b"], "v": [1, 1, 2]})
    with pg.connection(pg_db) as conn:
        assert load_arrow(conn, TableRef("public", "events"), data, mode="append").inserted == 3
        assert load_arrow(conn, TableRef("public", "events"), data, mode="append").inserted == 3
    assert _rows(pg_db, "SELECT k, v, count(*) FROM events GROUP BY 1, 2 ORDER BY 1") == [
        ("a", 1, 4),
        ("b", 2, 2),
    ]


def test_append_of_an_existing_key_fails_and_rolls_back(pg_db):
    _seed_items(pg_db, [1, 2])
    with pytest.raises(QueryFailed, match="duplicate key value"), pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, _items([3, 2], ["new", "clash"]), mode="append")
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [(1, "n1"), (2, "n2")]


# -- load_arrow: upsert --------------------------------------------------------------------


@pytest.fixture(params=["on_conflict", "merge"])
def upsert_with(request) -> str:
    """Every upsert test runs with both statements: same rows, same counts."""
    return request.param


def test_upsert_counts_and_touches_only_changed_rows(pg_db, upsert_with):
    """Half the input keys exist; of those some differ. Equal rows are not rewritten at all."""
    _seed_items(pg_db, range(10))
    _execute(
        pg_db, "UPDATE items SET name = NULL WHERE id = 9", "UPDATE items SET qty = 3 WHERE id = 8"
    )
    before = dict(_rows(pg_db, "SELECT id, (ctid::text, xmin::text) FROM items"))
    ids = list(range(5, 15))
    names = [f"n{i}" for i in ids]
    names[0] = "renamed"  # id 5: text change
    names[4] = None  # id 9: NULL stays NULL -> unchanged
    qtys = [1] * 10
    qtys[1] = 2  # id 6: integer change
    qtys[3] = None  # id 8: 3 -> NULL is a change
    data = _items(ids, names, qtys)  # id 7: identical -> unchanged
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn,
            ITEMS,
            data,
            mode="upsert",
            key=["id"],
            upsert_with=upsert_with,
            touch_column="updated_at",
        )
    assert counts == MergeCounts(staged=10, inserted=5, updated=3, unchanged=2)

    got = {r[0]: r[1:] for r in _rows(pg_db, "SELECT id, name, qty, updated_at FROM items")}
    assert set(got) == set(range(15))
    assert got[5][:2] == ("renamed", 1)
    assert got[6][:2] == ("n6", 2)
    assert got[8][:2] == ("n8", None)
    touched = {i for i, (_, _, at) in got.items() if at > OLD}
    assert touched == {5, 6, 8, *range(10, 15)}  # changed + new rows only
    after = dict(_rows(pg_db, "SELECT id, (ctid::text, xmin::text) FROM items"))
    for unchanged in (0, 1, 2, 3, 4, 7, 9):  # not in the input, or equal: same tuple version
        assert after[unchanged] == before[unchanged], unchanged
    assert after[5] != before[5]


def test_upsert_without_touch_column_leaves_it_alone(pg_db, upsert_with):
    _seed_items(pg_db, [1])
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn,
            ITEMS,
            _items([1], ["changed"]),
            mode="upsert",
            key=["id"],
            upsert_with=upsert_with,
        )
    assert counts.updated == 1
    assert _rows(pg_db, "SELECT name, updated_at FROM items") == [("changed", OLD)]


def test_upsert_duplicate_keys_last_one_wins_across_batches(pg_db, upsert_with):
    _seed_items(pg_db, [2])
    schema = _items([], []).schema
    batches = [
        pa.RecordBatch.from_pylist(
            [{"id": 1, "name": "1a"}, {"id": 2, "name": "2a"}, {"id": 1, "name": "1b"}], schema
        ),
        pa.RecordBatch.from_pylist([{"id": 3, "name": "3a"}, {"id": 1, "name": "1c"}], schema),
        pa.RecordBatch.from_pylist([{"id": 2, "name": "2b"}, {"id": 3, "name": "3b"}], schema),
    ]
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, ITEMS, iter(batches), mode="upsert", key=["id"], upsert_with=upsert_with
        )
    assert counts == MergeCounts(staged=3, superseded=4, inserted=2, updated=1)
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [
        (1, "1c"),
        (2, "2b"),
        (3, "3b"),
    ]


def test_upsert_with_only_key_columns_inserts_new_keys_and_skips_existing(pg_db, upsert_with):
    _seed_items(pg_db, [1, 2])
    data = pa.table({"id": pa.array([2, 3, 3], pa.int64())})
    with pg.connection(pg_db) as conn:
        counts = load_arrow(conn, ITEMS, data, mode="upsert", key=["id"], upsert_with=upsert_with)
    assert counts == MergeCounts(staged=2, superseded=1, inserted=1, unchanged=1)
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [
        (1, "n1"),
        (2, "n2"),
        (3, None),
    ]


def test_upsert_on_a_composite_unique_index_in_any_key_order(pg_db, upsert_with):
    _execute(
        pg_db,
        "CREATE TABLE fc (id serial PRIMARY KEY, site text, day date, yhat double precision)",
        "CREATE UNIQUE INDEX ON fc (site, day)",
        "INSERT INTO fc (site, day, yhat) VALUES ('a', '2024-01-01', 1.0), ('b', '2024-01-01', 2.0)",
    )
    data = pa.table(
        {
            "day": pa.array([dt.date(2024, 1, 1)] * 3, pa.date32()),
            "site": ["a", "b", "c"],
            "yhat": [1.0, 2.5, 3.0],
        }
    )
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn,
            TableRef("public", "fc"),
            data,
            mode="upsert",
            key=["day", "site"],
            upsert_with=upsert_with,
        )
    assert counts == MergeCounts(staged=3, inserted=1, updated=1, unchanged=1)
    assert _rows(pg_db, "SELECT site, yhat FROM fc ORDER BY site") == [
        ("a", 1.0),
        ("b", 2.5),
        ("c", 3.0),
    ]


def test_upsert_into_a_partitioned_table_counts_over_its_partitions(pg_db, upsert_with):
    """MERGE's counts come from the transaction's write counters, kept per partition."""
    _execute(
        pg_db,
        "CREATE TABLE pt (day date, id int, v text, PRIMARY KEY (day, id)) PARTITION BY RANGE (day)",
        "CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM ('2024-01-01') TO ('2024-01-02')",
        "CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM ('2024-01-02') TO ('2024-01-03')",
        "INSERT INTO pt VALUES ('2024-01-01', 1, 'a'), ('2024-01-02', 1, 'a'), ('2024-01-02', 2, 'b')",
    )
    days = [dt.date(2024, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 2)]
    data = pa.table(
        {"day": pa.array(days, pa.date32()), "id": [1, 2, 1, 2], "v": ["a", "n", "x", "b"]}
    )
    target = TableRef("public", "pt")
    counts = _load(pg_db, target, data, mode="upsert", key=["day", "id"], upsert_with=upsert_with)
    assert counts == MergeCounts(staged=4, inserted=1, updated=1, unchanged=2)
    assert _rows(pg_db, "SELECT day::text, id, v FROM pt ORDER BY 1, 2") == [
        ("2024-01-01", 1, "a"), ("2024-01-01", 2, "n"), ("2024-01-02", 1, "x"), ("2024-01-02", 2, "b")
    ]  # fmt: skip


def test_merge_upsert_falls_back_to_on_conflict_when_a_new_key_is_inserted_concurrently(pg_db):
    """Another writer inserts key 3 while the load runs: MERGE would fail on it (it saw no such
    row), so the load redoes its upsert with ON CONFLICT and updates that row instead."""
    _seed_items(pg_db, [1])
    other = psycopg.connect(pg_db)
    other.execute("INSERT INTO items (id, name) VALUES (3, 'theirs')")  # not committed yet
    result: dict = {}

    def load():
        with pg.connection(pg_db) as conn:
            data = _items([1, 2, 3], ["one", "two", "ours"])
            result["counts"] = load_arrow(
                conn, ITEMS, data, mode="upsert", key=["id"], upsert_with="merge"
            )

    worker = threading.Thread(target=load)
    worker.start()
    with pg.connection(pg_db, autocommit=True) as watcher:
        for _ in range(200):  # until the load waits for the other writer's key
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'MERGE%%'"
            ).fetchone()[0]
            if waiting or not worker.is_alive():
                break
            time.sleep(0.05)
    other.commit()
    other.close()
    worker.join(timeout=30)
    assert result["counts"] == MergeCounts(staged=3, inserted=1, updated=2)
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [
        (1, "one"), (2, "two"), (3, "ours")
    ]  # fmt: skip


@pytest.mark.parametrize("as_batches", [False, True], ids=["arrow", "server"])
def test_upsert_dedupe_is_not_quadratic(pg_db, upsert_with, as_batches):
    """30k staged rows with 10k superseded (a self-join dedupe was quadratic: minutes here);
    a table is deduplicated in Arrow, batches in the server."""
    n = 20_000
    _execute(pg_db, "CREATE TABLE big (id bigint PRIMARY KEY, v text)")
    ids = list(range(n)) + list(range(0, n, 2))
    data = pa.table({"id": pa.array(ids, pa.int64()), "v": [f"v{i}" for i in range(len(ids))]})
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn,
            TableRef("public", "big"),
            iter(data.to_batches(max_chunksize=7_000)) if as_batches else data,
            mode="upsert",
            key=["id"],
            upsert_with=upsert_with,
        )
    assert counts == MergeCounts(staged=n, superseded=n // 2, inserted=n)
    assert _rows(pg_db, "SELECT v FROM big WHERE id IN (0, 1) ORDER BY id") == [
        (f"v{n}",),
        ("v1",),
    ]


# -- load_arrow: replace -------------------------------------------------------------------

DAY1, DAY2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


def _seed_daily(url: str) -> None:
    _execute(
        url,
        "CREATE TABLE daily (day date, id int, v text, PRIMARY KEY (day, id))",
        "INSERT INTO daily SELECT d::date, i, 'old' FROM generate_series("
        "'2024-03-01'::date, '2024-03-02', '1 day') d, generate_series(1, 3) i",
    )


def _where_day(day: dt.date) -> sql.Composable:
    return sql.SQL("day = {}").format(sql.Literal(day))


def test_replace_swaps_one_partition_and_leaves_the_others(pg_db):
    _seed_daily(pg_db)
    day2_before = _rows(pg_db, "SELECT ctid::text, day, id, v FROM daily WHERE day = '2024-03-02'")
    data = pa.table({"day": pa.array([DAY1, DAY1], pa.date32()), "id": [2, 9], "v": ["new", "new"]})
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, TableRef("public", "daily"), data, mode="replace", replace_where=_where_day(DAY1)
        )
    assert counts == MergeCounts(staged=2, inserted=2, deleted=3)
    assert _rows(pg_db, "SELECT id, v FROM daily WHERE day = '2024-03-01' ORDER BY id") == [
        (2, "new"),
        (9, "new"),
    ]
    assert (
        _rows(pg_db, "SELECT ctid::text, day, id, v FROM daily WHERE day = '2024-03-02'")
        == day2_before
    )


def test_replace_with_an_empty_table_empties_the_partition(pg_db):
    _seed_daily(pg_db)
    empty = pa.table({"day": pa.array([], pa.date32()), "id": pa.array([], pa.int32())})
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, TableRef("public", "daily"), empty, mode="replace", replace_where=_where_day(DAY2)
        )
    assert counts == MergeCounts(deleted=3)
    assert _rows(pg_db, "SELECT DISTINCT day FROM daily") == [(DAY1,)]


def test_replace_needs_a_where_clause(pg_db):
    _seed_daily(pg_db)
    data = pa.table({"day": pa.array([DAY1], pa.date32()), "id": [1]})
    with pytest.raises(ConfigError, match="needs the partition's WHERE clause"):
        _load(pg_db, TableRef("public", "daily"), data, mode="replace")
    assert _rows(pg_db, "SELECT count(*) FROM daily") == [(6,)]


# -- load_arrow: a partition the load owns (partition_where) --------------------------------


def _seed_partitioned(url: str) -> None:
    """daily_t: ids 1-4 on DAY1 and 1-2 on DAY2, v 'old', n 1, updated_at 2000-01-01."""
    _execute(
        url,
        "CREATE TABLE daily_t (day date, id int, v text, n int, "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (day, id))",
        "INSERT INTO daily_t SELECT '2024-03-01', i, 'old', 1, '2000-01-01Z' "
        "FROM generate_series(1, 4) i",
        "INSERT INTO daily_t SELECT '2024-03-02', i, 'old', 1, '2000-01-01Z' "
        "FROM generate_series(1, 2) i",
    )


def _daily_rows(ids, vs, ns, day=DAY1) -> pa.Table:
    return pa.table(
        {
            "day": pa.array([day] * len(ids), pa.date32()),
            "id": pa.array(ids, pa.int32()),
            "v": pa.array(vs, pa.string()),
            "n": pa.array(ns, pa.int32()),
        }
    )


@pytest.mark.parametrize("as_batches", [False, True], ids=["table", "batches"])
@pytest.mark.parametrize("batch_rows", [None, 1])
def test_upsert_into_a_partition_with_new_changed_equal_duplicate_and_absent_rows(
    pg_db, upsert_with, as_batches, batch_rows
):
    """Only the new and changed rows are written (a table's duplicates resolved in Python,
    batches' in the server); the partition's row the data lacks is deleted; DAY2 is untouched."""
    _seed_partitioned(pg_db)
    before = dict(_rows(pg_db, "SELECT (day, id)::text, (ctid, xmin)::text FROM daily_t"))
    # id 1 equal; id 2 new v; id 3 n -> NULL; id 4 absent; id 5 new (twice: the last wins)
    data = _daily_rows([1, 2, 5, 3, 5], ["old", "new", "first", "old", "last"], [1, 1, 9, None, 7])
    source = iter(data.to_batches(max_chunksize=2)) if as_batches else data
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, TableRef("public", "daily_t"), source, mode="upsert", key=["day", "id"],
            touch_column="updated_at", batch_rows=batch_rows, partition_where=_where_day(DAY1),
            delete_missing=True, upsert_with=upsert_with,
        )  # fmt: skip
    assert counts == MergeCounts(
        staged=4, superseded=1, inserted=1, updated=2, unchanged=1, deleted=1
    )
    got = _rows(
        pg_db, "SELECT day, id, v, n, updated_at > '2000-01-01Z' FROM daily_t ORDER BY day, id"
    )
    assert got == [
        (DAY1, 1, "old", 1, False), (DAY1, 2, "new", 1, True), (DAY1, 3, "old", None, True),
        (DAY1, 5, "last", 7, True), (DAY2, 1, "old", 1, False), (DAY2, 2, "old", 1, False),
    ]  # fmt: skip
    after = dict(_rows(pg_db, "SELECT (day, id)::text, (ctid, xmin)::text FROM daily_t"))
    for untouched in ("(2024-03-01,1)", "(2024-03-02,1)", "(2024-03-02,2)"):
        assert after[untouched] == before[untouched], untouched


def test_upsert_into_an_empty_partition_copies_the_rows_in(pg_db):
    _seed_partitioned(pg_db)
    day3 = dt.date(2024, 3, 3)
    data = _daily_rows([1, 2, 1], ["a", "b", "c"], [1, 2, 3], day=day3)
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, TableRef("public", "daily_t"), data, mode="upsert", key=["day", "id"],
            partition_where=_where_day(day3), delete_missing=True,
        )  # fmt: skip
    assert counts == MergeCounts(staged=2, superseded=1, inserted=2)
    assert _rows(pg_db, "SELECT id, v, n FROM daily_t WHERE day = '2024-03-03' ORDER BY id") == [
        (1, "c", 3), (2, "b", 2)
    ]  # fmt: skip
    assert _rows(pg_db, "SELECT count(*) FROM daily_t") == [(8,)]


@pytest.mark.parametrize("id_type", [pa.int64(), pa.int32()], ids=["copied", "staged"])
def test_upsert_into_an_empty_partition_updates_a_key_found_outside_it(pg_db, id_type):
    """The key (id) is wider than the partition (day): a row of the 'empty' partition's data
    may exist under another day. The COPY straight in (int64 -> bigint) or the staged insert
    (int32 -> bigint, cast) fails on it, and the load upserts instead: nothing is lost."""
    _execute(
        pg_db,
        "CREATE TABLE by_id (id bigint PRIMARY KEY, day date, v text)",
        "INSERT INTO by_id VALUES (7, '2024-03-01', 'day one')",
    )
    data = pa.table(
        {
            "id": pa.array([7, 8], id_type),
            "day": pa.array([DAY2, DAY2], pa.date32()),
            "v": ["moved", "new"],
        }
    )
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn, TableRef("public", "by_id"), data, mode="upsert", key=["id"],
            partition_where=_where_day(DAY2),
        )  # fmt: skip
    assert counts == MergeCounts(staged=2, inserted=1, updated=1)
    assert _rows(pg_db, "SELECT id, day, v FROM by_id ORDER BY id") == [
        (7, DAY2, "moved"), (8, DAY2, "new")
    ]  # fmt: skip


def test_deduplicated_keeps_the_last_row_of_a_key_in_arrival_order():
    table = pa.table(
        {
            "k": pa.array([3, None, 1, 3, None, 2], pa.int64()),
            "s": ["x", "y", "x", "x", "y", "z"],
            "v": list("abcdef"),
        }
    )
    kept, dropped = pg_load.deduplicated(table, ["k", "s"])
    assert dropped == 2
    assert kept.column("v").to_pylist() == ["c", "d", "e", "f"]  # NULL keys are alike
    assert pg_load.deduplicated(table, ["s", "v"]) == (table, 0)
    floats = pa.table({"k": [0.0, -0.0]})  # equal in Postgres, not always in a hash
    assert pg_load.deduplicated(floats, ["k"]) == (floats, None)
    assert pg_load.deduplicated(table, ["missing"]) == (table, None)


# -- load_arrow: batch_rows, inputs, transaction --------------------------------------------


@pytest.mark.parametrize("mode", ["append", "upsert"])
@pytest.mark.parametrize("batch_rows", [1, 3, 7, 1000])
def test_batch_rows_gives_the_same_result_as_one_insert(pg_db, mode, batch_rows):
    _execute(
        pg_db,
        "CREATE TABLE one (id bigint PRIMARY KEY, name text, qty integer, price numeric(10,2))",
        "CREATE TABLE many (LIKE one INCLUDING ALL)",
        "INSERT INTO one SELECT i, 'n' || i, 1, 1.00 FROM generate_series(0, 9, 2) i",
        "INSERT INTO many SELECT * FROM one",
    )
    # append: new keys only; upsert: existing, new and duplicate keys
    ids = list(range(100, 125)) if mode == "append" else [*range(0, 20), 3, 11, 0]
    names = [f"n{i}" if i % 4 else f"x{k}" for k, i in enumerate(ids)]
    data = _items(ids, names)
    with pg.connection(pg_db) as conn:
        whole = load_arrow(conn, TableRef("public", "one"), data, mode=mode, key=["id"])
        split = load_arrow(
            conn, TableRef("public", "many"), data, mode=mode, key=["id"], batch_rows=batch_rows
        )
    assert split == whole
    assert whole.inserted > 0
    assert _rows(pg_db, "SELECT * FROM many ORDER BY id") == _rows(
        pg_db, "SELECT * FROM one ORDER BY id"
    )


def test_load_accepts_a_record_batch_reader(pg_db):
    _seed_items(pg_db, [])
    table = _items(list(range(6)), list("abcdef"))
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    with pg.connection(pg_db) as conn:
        assert load_arrow(conn, ITEMS, reader, mode="append").inserted == 6
    assert _rows(pg_db, "SELECT string_agg(name, '' ORDER BY id) FROM items") == [("abcdef",)]


def test_load_of_no_batches_does_nothing(pg_db):
    _seed_items(pg_db, [1])
    with pg.connection(pg_db) as conn:
        assert load_arrow(conn, ITEMS, iter([]), mode="upsert", key=["id"]) == MergeCounts()
        empty = _items([], [])
        assert load_arrow(conn, ITEMS, empty, mode="append") == MergeCounts()
    assert _rows(pg_db, "SELECT id, name FROM items") == [(1, "n1")]


def test_load_drops_its_staging_and_can_run_twice_in_one_transaction(pg_db):
    _seed_items(pg_db, [])
    with pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, _items([1], ["a"]), mode="append")
        assert conn.execute("SELECT to_regclass('pg_temp._stage_items')").fetchone() == (None,)
        load_arrow(conn, ITEMS, _items([1, 2], ["b", "c"]), mode="upsert", key=["id"])
        assert conn.execute("SELECT to_regclass('pg_temp._stage_items')").fetchone() == (None,)
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [(1, "b"), (2, "c")]


def test_load_is_part_of_the_callers_transaction(pg_db):
    _seed_items(pg_db, [1])
    with pytest.raises(RuntimeError), pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, _items([2], ["b"]), mode="append")
        load_arrow(conn, ITEMS, _items([1], ["changed"]), mode="upsert", key=["id"])
        raise RuntimeError("caller fails after the loads")
    assert _rows(pg_db, "SELECT id, name FROM items") == [(1, "n1")]


def test_load_into_mixed_case_and_quoted_names(pg_db, upsert_with):
    _execute(
        pg_db,
        'CREATE SCHEMA "Sales Data"',
        'CREATE TABLE "Sales Data"."Order Lines" ("Order ID" bigint PRIMARY KEY, "a,b" text)',
    )
    data = pa.table({"Order ID": pa.array([1, 1], pa.int64()), "a,b": ["x", "y"]})
    with pg.connection(pg_db) as conn:
        counts = load_arrow(
            conn,
            TableRef("Sales Data", "Order Lines"),
            data,
            mode="upsert",
            key=["Order ID"],
            upsert_with=upsert_with,
        )
    assert counts == MergeCounts(staged=1, superseded=1, inserted=1)
    assert _rows(pg_db, 'SELECT * FROM "Sales Data"."Order Lines"') == [(1, "y")]


# -- load_arrow: errors --------------------------------------------------------------------


def test_unknown_mode_is_a_config_error(pg_db):
    _seed_items(pg_db, [])
    with pytest.raises(
        ConfigError, match="load mode 'merge' is not one of append, upsert, replace"
    ):
        _load(pg_db, ITEMS, _items([1], ["a"]), mode="merge")


def test_missing_target_table_is_a_config_error(pg_db):
    with pytest.raises(ConfigError, match=r"target table public\.nope does not exist"):
        _load(pg_db, TableRef("public", "nope"), _items([1], ["a"]), mode="append")


def test_target_missing_a_column_names_it_and_lists_the_columns(pg_db):
    _seed_items(pg_db, [])
    data = _items([1], ["a"]).append_column("colour", pa.array(["red"]))
    with pytest.raises(ConfigError) as raised, pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, data, mode="append")
    assert str(raised.value) == (
        "target table public.items has no column(s) colour "
        "(columns: id, name, qty, price, updated_at)"
    )


def test_upsert_key_without_a_unique_index_is_a_config_error(pg_db):
    _seed_items(pg_db, [1])
    _execute(pg_db, "CREATE UNIQUE INDEX partial_name ON items (name) WHERE qty > 0")
    for key in (["name"], ["id", "name"]):  # a partial index and a superset don't qualify
        with pytest.raises(ConfigError, match=rf"on \({', '.join(key)}\) needs a primary key"):
            _load(pg_db, ITEMS, _items([1], ["a"]), mode="upsert", key=key)
    with pytest.raises(ConfigError, match="upsert into public.items needs key columns"):
        _load(pg_db, ITEMS, _items([1], ["a"]), mode="upsert")
    assert _rows(pg_db, "SELECT id, name FROM items") == [(1, "n1")]


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_type_error_in_the_merge_is_query_failed_and_rolls_everything_back(pg_db, mode):
    _seed_items(pg_db, [1, 2, 3])
    before = _rows(pg_db, "SELECT * FROM items ORDER BY id")
    bad = pa.table({"id": pa.array([4, 5], pa.int64()), "qty": ["7", "abc"]})
    with pytest.raises(QueryFailed) as raised, pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, _items([9], ["earlier load"]), mode="append")
        load_arrow(
            conn,
            ITEMS,
            bad,
            mode=mode,
            key=["id"],
            replace_where=sql.SQL("id < 3"),
        )
    message = str(raised.value)
    assert message.startswith("loading pg_temp._stage_items into public.items failed:")
    assert 'invalid input syntax for type integer: "abc"' in message
    assert _rows(pg_db, "SELECT * FROM items ORDER BY id") == before


# -- load_arrow: casting into the target's types -------------------------------------------


def test_staged_values_are_cast_into_the_target_types(pg_db):
    _execute(
        pg_db,
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE TABLE typed (id integer PRIMARY KEY, small smallint, payload jsonb, doc json, "
        "amount numeric(10,2), at timestamptz, day date, uid uuid, code char(3), "
        "name varchar(5), ratio real, m mood, whole bigint, ip inet)",
    )
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "small": pa.array([32767, -1], pa.int64()),
            "payload": ['{"a": [1, 2.50, null]}', None],
            "doc": pa.array([[1, 2], None], pa.list_(pa.int64())),
            "amount": ["12.345", "-0.5"],
            "at": ["2024-01-01T10:00:00+02:00", None],
            "day": pa.array([dt.datetime(2024, 2, 29, 0, 0), None], pa.timestamp("us")),
            "uid": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None],
            "code": ["ab", "xyz"],
            "name": ["abcde", ""],
            "ratio": pa.array([0.5, None], pa.float64()),
            "m": ["happy", "sad"],
            "whole": pa.array([2**63 - 1, None], pa.uint64()),
            "ip": ["10.0.0.1/8", None],
        }
    )
    with pg.connection(pg_db) as conn:
        counts = load_arrow(conn, TableRef("public", "typed"), data, mode="append")
    assert counts.inserted == 2
    rows = _rows(
        pg_db,
        "SELECT id, small, payload, doc::text, amount, at, day, uid::text, code, name, ratio, "
        "m::text, whole, ip::text FROM typed ORDER BY id",
    )
    assert rows == [
        (
            1,
            32767,
            {"a": [1, 2.5, None]},
            "[1, 2]",
            Decimal("12.35"),
            dt.datetime(2024, 1, 1, 8, tzinfo=UTC),
            dt.date(2024, 2, 29),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "ab ",
            "abcde",
            0.5,
            "happy",
            2**63 - 1,
            "10.0.0.1/8",
        ),
        (2, -1, None, None, Decimal("-0.50"), None, None, None, "xyz", "", None, "sad", None, None),
    ]


@pytest.mark.parametrize(
    ("ddl", "column", "error"),
    [
        ("n integer", pa.array([2**31], pa.int64()), "integer out of range"),
        ("n smallint", pa.array([40000], pa.int32()), "smallint out of range"),
        ("n numeric(4,2)", pa.array(["100.00"]), "numeric field overflow"),
        ("n varchar(5)", pa.array(["abcdef"]), "value too long for type character varying(5)"),
        ("n char(2)", pa.array(["abc"]), "value too long for type character(2)"),
        ("n jsonb", pa.array(["{not json"]), "invalid input syntax for type json"),
        ("n date", pa.array(["2024-02-30"]), "date/time field value out of range"),
    ],
    ids=[
        "int-overflow",
        "smallint-overflow",
        "numeric-overflow",
        "varchar",
        "char",
        "json",
        "date",
    ],
)
def test_values_that_do_not_fit_the_target_type_fail_loudly(pg_db, ddl, column, error, upsert_with):
    """A value the target cannot hold is an error, never silently truncated or wrapped."""
    _execute(pg_db, f"CREATE TABLE fit (id int PRIMARY KEY, {ddl})", "INSERT INTO fit VALUES (0)")
    data = pa.table({"id": pa.array([1], pa.int64()), "n": column})
    with pytest.raises(QueryFailed, match=re.escape(error)), pg.connection(pg_db) as conn:
        load_arrow(
            conn,
            TableRef("public", "fit"),
            data,
            mode="upsert",
            key=["id"],
            upsert_with=upsert_with,
        )
    assert _rows(pg_db, "SELECT id FROM fit") == [(0,)]


def test_unmappable_arrow_column_is_refused_before_anything_is_written(pg_db):
    _seed_items(pg_db, [1])
    _execute(pg_db, "ALTER TABLE items ADD tags jsonb")
    data = _items([2], ["b"]).append_column(
        "tags", pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64()))
    )
    with pytest.raises(ConfigError, match="has no Postgres mapping"), pg.connection(pg_db) as conn:
        load_arrow(conn, ITEMS, data, mode="append")
    assert _rows(pg_db, "SELECT id FROM items") == [(1,)]


def test_psycopg_is_not_leaked_from_the_merge(pg_db):
    """Every server-side failure of a load surfaces as QueryFailed, not a raw psycopg error."""
    _execute(pg_db, "CREATE TABLE chk (id int PRIMARY KEY, n int CHECK (n > 0))")
    with pytest.raises(QueryFailed) as raised, pg.connection(pg_db) as conn:
        load_arrow(conn, TableRef("public", "chk"), pa.table({"id": [1], "n": [-1]}), mode="append")
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)


def test_upsert_compares_json_and_geometric_columns_it_cannot_test_for_equality(pg_db, upsert_with):
    _execute(
        pg_db,
        "CREATE TABLE docs (id bigint PRIMARY KEY, body json, at point, tags json[])",
    )
    target = TableRef("public", "docs")
    data = pa.table(
        {"id": [1, 2], "body": ['{"a": 1}', '{"b": 2}'], "at": ["(1,2)", "(3,4)"],
         "tags": ['{"{\\"x\\": 1}"}', None]}
    )  # fmt: skip
    assert (
        _load(pg_db, target, data, mode="upsert", key=["id"], upsert_with=upsert_with).inserted == 2
    )
    changed = data.set_column(1, "body", pa.array(['{"a": 1}', '{"b": 3}']))
    counts = _load(pg_db, target, changed, mode="upsert", key=["id"], upsert_with=upsert_with)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)
    assert _rows(pg_db, "SELECT id, body::text FROM docs ORDER BY id") == [
        (1, '{"a": 1}'), (2, '{"b": 3}')
    ]  # fmt: skip


def test_upsert_key_missing_from_the_data_is_a_config_error(pg_db):
    _execute(pg_db, "CREATE TABLE k (id bigint PRIMARY KEY, name text)")
    with pytest.raises(
        ConfigError, match=r"key column\(s\) id are not in the data \(columns: name\)"
    ):
        _load(pg_db, TableRef("public", "k"), pa.table({"name": ["a"]}), mode="upsert", key=["id"])


def test_deleting_absent_keys_stays_linear_when_statistics_are_stale(pg_db):
    """The target's statistics predate the day being loaded (it estimates 1 row for it): the
    delete must not become a nested loop over the staging table (quadratic on a real load)."""
    _execute(
        pg_db,
        "CREATE TABLE t (a int, b int, day date, PRIMARY KEY (a, b, day))",
        "INSERT INTO t SELECT g / 100, g % 100, '2024-02-01'::date + g % 4 "
        "FROM generate_series(1, 40000) g",
        "ANALYZE t",
        "INSERT INTO t SELECT g / 100, g % 100, '2024-03-01' FROM generate_series(1, 20000) g",
        "CREATE TABLE s (a int, b int, day date)",
        "INSERT INTO s SELECT a, b, day FROM t WHERE day = '2024-03-01' AND a % 2 = 0",
        "ANALYZE s",
    )
    statement = pg_load.delete_absent_statement(
        TableRef("public", "s"), TableRef("public", "t"), ["a", "b", "day"], _where_day(DAY1)
    )
    with pg.connection(pg_db) as conn:
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + statement).fetchall())
        deleted = conn.execute(statement).rowcount
    assert "Anti Join" not in plan and "SetOp" in plan, plan
    assert deleted == 10_000
    assert _rows(pg_db, "SELECT count(*) FROM t WHERE day = '2024-03-01'") == [(10_000,)]


def test_a_load_raises_work_mem_for_its_transaction_only_and_never_lowers_it(pg_db):
    with pg.connection(pg_db) as conn:
        pg_load.raise_work_mem(conn, "64MB")
        assert conn.execute("SHOW work_mem").fetchone()[0] == "64MB"
        conn.commit()
        assert conn.execute("SHOW work_mem").fetchone()[0] == "4MB"  # the server's default
        conn.execute("SET work_mem = '1GB'")  # a session the DBA tuned higher keeps its own
        pg_load.raise_work_mem(conn, "64MB")
        assert conn.execute("SHOW work_mem").fetchone()[0] == "1GB"


def test_upsert_counts_hold_on_a_server_that_keeps_no_write_counters(pg_db, upsert_with):
    """track_counts off (no pg_stat_get_xact_* counts): ON CONFLICT counts what it returns."""
    _seed_items(pg_db, [1, 2])
    data = _items([1, 2, 3], ["n1", "changed", "new"])
    with pg.connection(pg_db) as conn:
        conn.execute("SET track_counts = off")
        counts = load_arrow(conn, ITEMS, data, mode="upsert", key=["id"], upsert_with=upsert_with)
    assert counts == MergeCounts(staged=3, inserted=1, updated=1, unchanged=1)
    assert _rows(pg_db, "SELECT id, name FROM items ORDER BY id") == [
        (1, "n1"), (2, "changed"), (3, "new")
    ]  # fmt: skip
