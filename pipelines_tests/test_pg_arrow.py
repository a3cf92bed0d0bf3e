"""pg_arrow: every Postgres type streamed by ADBC, written to Parquet, read back exactly."""

from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.pg_arrow import (
    INTERVAL,
    TypeMappingError,
    plan_columns,
    schema_hash,
    select_list,
    stream_batches,
    target_schema,
)
from sqlgym_pipelines.lib.pg_catalog import table_columns

DDL = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN price AS numeric(10,2);
CREATE TABLE every_type (
  id int PRIMARY KEY, c_int2 smallint, c_int4 integer, c_int8 bigint,
  c_num numeric(12,4), c_num_wide numeric(50,10), c_num_free numeric,
  c_real real, c_double double precision, c_bool boolean,
  c_text text, c_varchar varchar(20), c_char char(3), c_uuid uuid,
  c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz,
  c_interval interval, c_json json, c_jsonb jsonb, c_bytea bytea,
  c_enum mood, c_price price, c_money money,
  c_int_arr int[], c_text_arr text[], c_num_arr numeric(10,2)[], c_enum_arr mood[],
  c_inet_arr inet[], c_grid int[][], c_tsvector tsvector, c_inet inet, c_cidr cidr,
  c_macaddr macaddr, c_point point, c_xml xml, c_range int4range, c_pair pair);
INSERT INTO every_type VALUES
 (1, 32767, 2147483647, 9223372036854775807, 99999999.9999,
  1234567890123456789012345678901234567890.0123456789, 1e-30, 3.4e38, 1.7976931348623157e308,
  true, 'héllo wörld ✓ 日本', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '9999-12-31', '23:59:59.999999', '12:00:00+05:30', '9999-12-31 23:59:59.999999',
  '2024-01-01 12:34:56.789012+02', '1 year 2 mons 3 days 04:05:06.789', '{"a": 1, "a": 2}',
  '{"b": [1, 2.50, {"c": null}]}', '\x00ff10', 'happy', 12345678.91, 92233720368547758.07,
  '{1,NULL,3}', '{"a","b,c",NULL,""}', '{1.10,NULL,-2.25}', '{sad,NULL}', '{10.0.0.1,NULL}',
  '{{1,2},{3,4}}', 'the quick brown fox', '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '(1.5,2.5)', '<a>x</a>', '[1,10)', ROW(1, 'x')),
 (2, -32768, -2147483648, -9223372036854775808, -0.0001, -0.0000000001,
  123456789012345678901234567890.123, -1.5, -1e-300, false, '', 'x', 'x', '00000000-0000-0000-0000-000000000000',
  '0001-01-01', '00:00:00', '00:00:00-12', '1900-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
  '-3 days -00:00:01', '[]', 'null', '\x', 'sad', -0.01, -92233720368547758.08,
  '{}', '{}', '{}', '{}', '{}', '{}', '', '::1', '::/0', '00:00:00:00:00:00', '(0,0)', '<r/>',
  'empty', ROW(NULL, NULL)),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, 0, -99999999.9999, 0, 'NaN', 'Infinity', '-Infinity', NULL, 'tab	"q" \\ ''', NULL,
  NULL, NULL, '1969-12-31', NULL, NULL, '1969-07-20 20:17:40', '1901-01-01 00:00:00+00',
  '178000000 years', NULL, NULL, NULL, NULL, NULL, 0, '{NULL}', '{NULL}', '{NULL}', NULL, NULL,
  '{{{1}}}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, NULL, NULL, NULL, NULL, NULL, -1e-45, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""

_TEXT = (pa.string(), True)
# The declared mapping: column -> (Arrow type in the Parquet file, reported as a fallback?).
MAPPING = {
    "id": (pa.int32(), False),
    "c_int2": (pa.int16(), False),
    "c_int4": (pa.int32(), False),
    "c_int8": (pa.int64(), False),
    "c_num": (pa.decimal128(12, 4), False),
    "c_num_wide": _TEXT,  # p > 38: no exact decimal in Athena/DuckDB
    "c_num_free": _TEXT,
    "c_real": (pa.float32(), False),
    "c_double": (pa.float64(), False),
    "c_bool": (pa.bool_(), False),
    "c_text": (pa.string(), False),
    "c_varchar": (pa.string(), False),
    "c_char": (pa.string(), False),
    "c_uuid": (pa.uuid(), False),
    "c_date": (pa.date32(), False),
    "c_time": (pa.time64("us"), False),
    "c_timetz": _TEXT,
    "c_ts": (pa.timestamp("us"), False),
    "c_tstz": (pa.timestamp("us", tz="UTC"), False),
    "c_interval": (INTERVAL, False),
    "c_json": (pa.json_(), False),
    "c_jsonb": (pa.json_(), False),
    "c_bytea": (pa.binary(), False),
    "c_enum": (pa.string(), False),
    "c_price": (pa.decimal128(10, 2), False),
    "c_money": (pa.decimal128(20, 2), False),
    "c_int_arr": (pa.list_(pa.field("element", pa.int32())), False),
    "c_text_arr": (pa.list_(pa.field("element", pa.string())), False),
    "c_num_arr": (pa.list_(pa.field("element", pa.decimal128(10, 2))), False),
    "c_enum_arr": (pa.list_(pa.field("element", pa.string())), False),
    "c_inet_arr": (pa.list_(pa.field("element", pa.string())), True),
    "c_grid": _TEXT,
    **{c: _TEXT for c in ("c_tsvector", "c_inet", "c_cidr", "c_macaddr", "c_point", "c_xml")},
    "c_range": _TEXT,
    "c_pair": _TEXT,
}
# What to compare with on the Postgres side when psycopg's Python value is not the exact value
# (json is parsed, enum arrays are unknown to psycopg, interval becomes a lossy timedelta).
EXPECTED_EXPR = {
    "c_real": "c_real::float8",  # exact widening, like float32 -> Python float
    "c_json": "c_json::text",
    "c_jsonb": "c_jsonb::text",
    "c_enum_arr": "c_enum_arr::text[]",
    "c_interval": "c_interval::text",
}


def _plans(url: str, table: str):
    with pg.connection(url) as conn:
        return plan_columns(table_columns(conn, "public", table))


def _query(plans, table: str, where: str = "") -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} {} ORDER BY id").format(
        select_list(plans), sql.Identifier(table), sql.SQL(where)
    )


def _stream_to_parquet(url, plans, table, path, **kw) -> int:
    """Stream a table into a Parquet file the way the lake writes it; returns the batch count."""
    batches = 0
    with pq.ParquetWriter(path, target_schema(plans), compression="snappy") as writer:
        for batch in stream_batches(url, _query(plans, table), None, plans, **kw):
            writer.write_batch(batch)
            batches += 1
    return batches


def _interval_text(conn, value: dict | None) -> str | None:
    """The Postgres text of an INTERVAL struct, rebuilt field by field (no normalisation)."""
    if value is None:
        return None
    return conn.execute(
        "SELECT (make_interval(months => %s, days => %s) + (%s::text || ' us')::interval)::text",
        (value["months"], value["days"], value["microseconds"]),
    ).fetchone()[0]


def test_every_type_round_trips_through_parquet_exactly(pg_db, tmp_path):
    with pg.connection(pg_db) as conn:
        conn.execute(DDL)
    plans = _plans(pg_db, "every_type")
    path = tmp_path / "every_type.parquet"
    _stream_to_parquet(pg_db, plans, "every_type", path)

    schema = target_schema(plans)
    assert {f.name: (f.type, b"fallback" in (f.metadata or {})) for f in schema} == MAPPING
    table = pq.read_table(path)
    assert table.schema.equals(schema, check_metadata=False)
    assert schema_hash(table.schema) == schema_hash(schema)
    assert table.schema.field("c_inet").metadata[b"pg_type"] == b"inet"

    names = [p.name for p in plans]
    with pg.connection(pg_db) as conn:
        # Casts and fallbacks compare against their own select expression (e.g. the ::text output).
        exprs = [
            sql.SQL(EXPECTED_EXPR[p.name]) if p.name in EXPECTED_EXPR else p.select for p in plans
        ]
        query = sql.SQL("SELECT {} FROM every_type ORDER BY id").format(sql.SQL(", ").join(exprs))
        expected = [dict(zip(names, row, strict=True)) for row in conn.execute(query)]
        got = table.to_pylist()
        for row in got:
            row["c_interval"] = _interval_text(conn, row["c_interval"])
    assert got == expected
    assert got[0]["c_money"] == Decimal("92233720368547758.07")
    assert got[0]["c_grid"] == "{{1,2},{3,4}}" and got[3]["c_grid"] == "{{{1}}}"
    assert got[3]["c_num_free"] == "NaN" and got[4]["c_num_free"] == "-" + "0." + "0" * 44 + "1"

    duck = duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY id")
    duck_rows = [dict(zip(duck.columns, r, strict=True)) for r in duck.fetchall()]
    arrow_rows = pq.read_table(path).to_pylist()
    assert duck_rows == arrow_rows


@pytest.mark.parametrize(
    ("coltype", "bad_value", "message"),
    [
        ("timestamp", "infinity", "±infinity"),
        ("timestamptz", "-infinity", "±infinity"),
        ("date", "infinity", "±infinity"),
        ("numeric(6,2)", "NaN", "NaN"),
        ("time", "24:00:00", "24:00:00"),
        ("int[]", "{{1,2},{3,4}}", "multi-dimensional"),
        ("text[]", "[0:1]={a,b}", "lower bound"),
    ],
)
def test_unrepresentable_values_raise_naming_the_column(pg_db, coltype, bad_value, message):
    with pg.connection(pg_db) as conn:
        conn.execute(sql.SQL("CREATE TABLE bad (id int, c {})").format(sql.SQL(coltype)))
        conn.execute("INSERT INTO bad VALUES (1, NULL), (2, %s)", (bad_value,))
    plans = _plans(pg_db, "bad")
    with pytest.raises(TypeMappingError, match=rf"public\.bad\.c .*{message}"):
        list(stream_batches(pg_db, _query(plans, "bad"), None, plans))


def test_unknown_table_is_a_config_error(pg_db):
    with pg.connection(pg_db) as conn, pytest.raises(ConfigError, match=r"public\.nope"):
        table_columns(conn, "public", "nope")


def test_large_table_streams_in_batches_equal_to_source(pg_db, tmp_path):
    with pg.connection(pg_db) as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS label,"
            " (g * 1.25)::numeric(12,2) AS amount, '2024-01-01'::timestamptz + g * interval '1s'"
            " AS updated_at FROM generate_series(1, 200000) g"
        )
        source = conn.execute("SELECT * FROM big ORDER BY id").fetchall()
    plans = _plans(pg_db, "big")
    path = tmp_path / "big.parquet"
    # A libpq key=value conninfo (what lib.pg builds) works as well as a URL.
    batches = _stream_to_parquet(
        pg.conninfo(pg_db), plans, "big", path, batch_size_hint_bytes=1 << 20
    )
    assert batches > 1
    assert [tuple(r.values()) for r in pq.read_table(path).to_pylist()] == source


def test_params_are_inlined_as_literals_and_keep_streaming(pg_db):
    with pg.connection(pg_db) as conn:
        conn.execute(
            "CREATE TABLE t AS SELECT g AS id, 'it''s ' || g AS s FROM generate_series(1, 10) g"
        )
    plans = _plans(pg_db, "t")
    query = sql.SQL("SELECT {} FROM t WHERE id > %s AND s <> %s ORDER BY id").format(
        select_list(plans)
    )
    rows = pa.Table.from_batches(
        stream_batches(pg_db, query, (7, "it's 9"), plans), schema=target_schema(plans)
    )
    assert rows.to_pylist() == [{"id": 8, "s": "it's 8"}, {"id": 10, "s": "it's 10"}]


def test_schema_hash_tracks_type_changes(pg_db):
    with pg.connection(pg_db) as conn:
        conn.execute("CREATE TABLE t (id int, amount numeric(10,2))")
    before = schema_hash(target_schema(_plans(pg_db, "t")))
    assert schema_hash(target_schema(_plans(pg_db, "t"))) == before
    with pg.connection(pg_db) as conn:
        conn.execute("ALTER TABLE t ALTER amount TYPE numeric(12,2)")
    assert schema_hash(target_schema(_plans(pg_db, "t"))) != before
