"""Stage -> audit -> publish against the real moto S3 and Postgres: values, quarantine, modes."""

import datetime as dt
import gzip
import json
from decimal import Decimal

import psycopg
import pytest

from sqlgym_pipelines.lib import csv_ingest, pg
from sqlgym_pipelines.lib.csv_config import CsvConfig
from sqlgym_pipelines.lib.csv_ingest import CsvDataError
from sqlgym_pipelines.local.provision import aws_client

DAY = dt.date(2026, 1, 15)


@pytest.fixture
def s3(stack):
    return aws_client(stack, "s3")


def config(bucket: str, **dataset) -> CsvConfig:
    body = {
        "source": {"bucket": bucket, "prefix": "in/"},
        "schema": {"id": {"type": "bigint", "nullable": False}, "name": "string",
                   "amount": "decimal(10,2)"},
        "target": {"schema": "shop", "table": "items", "key": ["id"], "mode": "upsert"},
    }  # fmt: skip
    body.update(dataset)
    return CsvConfig(datasets={"items": {"name": "items", **body}}, path="test.yaml")


def put(s3, bucket: str, key: str, data: str | bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data.encode() if isinstance(data, str) else data)


def ingest(url, s3, cfg: CsvConfig, day=DAY, run_id="run-1"):
    """Stage, audit and publish one day like the asset job does; returns (stage, verdicts, counts)."""
    ds = cfg.dataset("items")
    with pg.connection(url) as conn:
        staged = csv_ingest.stage(conn, s3, cfg, ds, day, run_id)
    with pg.connection(url) as conn:
        verdicts = csv_ingest.audit(conn, cfg, ds, day)
    with pg.connection(url) as conn:
        counts = csv_ingest.publish(conn, cfg, ds, day, run_id)
    return staged, verdicts, counts


def rows(url, query="SELECT * FROM shop.items ORDER BY 1"):
    with pg.connection(url) as conn:
        return conn.execute(query).fetchall()


def test_every_csv_edge_case_lands_as_exact_postgres_values(pg_db, s3, s3_bucket):
    cfg = config(
        s3_bucket,
        schema={
            "id": "bigint", "name": "string", "amount": "decimal(10,2)", "ok": "boolean",
            "born": "date", "seen": "timestamp", "at": "timestamptz", "ratio": "double",
        },
        csv={"null_values": ["", "NULL"]},
    )  # fmt: skip
    text = (
        "\ufeffid,name,amount,ok,born,seen,at,ratio\r\n"
        '1,"Smith, John","1234.50",true,2000-02-29,2024-01-02 03:04:05.123456,2024-01-02T03:04:05+02:00,0.1\r\n'
        '2,"say ""hi""",-0.01,f,,,,\r\n'
        '3,"two\r\nlines",0,1,1999-12-31,2024-06-30T23:59:59,2024-06-30 23:59:59Z,-1e-7\r\n'
        '4,"",NULL,0,,,,\r\n'
        "5,Zoë 中文 ✓,7,no,,,,\r\n"
    )
    put(s3, s3_bucket, "in/2026-01-15.csv", text)
    staged, verdicts, counts = ingest(pg_db, s3, cfg)
    assert (staged.rows_read, staged.rejected_rows, staged.staged_rows) == (5, 0, 5)
    assert all(v.passed for v in verdicts)
    assert (counts.inserted, counts.updated) == (5, 0)
    utc = dt.UTC
    assert rows(pg_db) == [
        (1, "Smith, John", Decimal("1234.50"), True, dt.date(2000, 2, 29),
         dt.datetime(2024, 1, 2, 3, 4, 5, 123456), dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=utc), 0.1),
        (2, 'say "hi"', Decimal("-0.01"), False, None, None, None, None),
        (3, "two\r\nlines", Decimal("0.00"), True, dt.date(1999, 12, 31),
         dt.datetime(2024, 6, 30, 23, 59, 59), dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=utc), -1e-7),
        (4, "", None, False, None, None, None, None),  # "" stays an empty string, NULL is NULL
        (5, "Zoë 中文 ✓", Decimal("7.00"), False, None, None, None, None),
    ]  # fmt: skip
    types = dict(
        rows(
            pg_db,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'shop' AND table_name = 'items'",
        )
    )
    assert types["amount"] == "numeric" and types["at"] == "timestamp with time zone"


def test_quarantine_holds_line_column_reason_value_and_record(pg_db, s3, s3_bucket):
    cfg = config(
        s3_bucket,
        rules=[{"check": "range", "column": "amount", "min": 0}],
        max_reject_ratio=0.6,
    )
    text = 'id,name,amount\n1,a,1.00\n2,"b\nb",-5\n3,c\n4,d,abc\n5,e,2.5\n'
    put(s3, s3_bucket, "in/items_20260115.csv", text)
    staged, verdicts, counts = ingest(pg_db, s3, cfg)
    assert (staged.rows_read, staged.rejected_rows, staged.staged_rows) == (5, 3, 2)
    assert staged.reasons == {
        "outside range [0, ]": 1, "expected 3 fields, found 2": 1, "not a valid decimal(10,2)": 1
    }  # fmt: skip
    assert [v.passed for v in verdicts if v.name == "reject_ratio_within_limit"] == [True]
    assert counts.inserted == 2
    with pg.connection(pg_db) as conn:
        found = csv_ingest.rejects_for(conn, cfg, cfg.dataset("items"), DAY)
    assert [(r["line"], r["column_name"], r["reason"], r["value"]) for r in found] == [
        (3, "amount", "outside range [0, ]", "-5.00"),
        (5, None, "expected 3 fields, found 2", None),
        (6, "amount", "not a valid decimal(10,2)", "abc"),
    ]
    assert json.loads(found[0]["record"]) == {"id": "2", "name": "b\nb", "amount": "-5"}
    assert found[1]["record"] == "3,c"
    assert {r["file_key"] for r in found} == {"in/items_20260115.csv"}
    assert rows(pg_db, "SELECT id FROM shop.items ORDER BY id") == [(1,), (5,)]


def test_rejects_flushed_mid_file_keep_every_row_and_line(pg_db, s3, s3_bucket, monkeypatch):
    """Rejects held past REJECT_BUFFER_BYTES end the file's COPY, go to the quarantine, and the
    next batch reopens the COPY: every good row is staged once, in order, every reject kept."""
    monkeypatch.setattr(csv_ingest, "REJECT_BUFFER_BYTES", 1)  # flush after every bad batch
    cfg = config(s3_bucket, max_reject_ratio=0.5, block_size_bytes=1 << 16)
    lines = [f"{i},{'x' * 40},{'bad' if i % 7 == 0 else i}" for i in range(1, 20_001)]
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n" + "\n".join(lines) + "\n")
    staged, _, counts = ingest(pg_db, s3, cfg)
    bad = [i for i in range(1, 20_001) if i % 7 == 0]
    assert (staged.rows_read, staged.rejected_rows) == (20_000, len(bad))
    assert counts.inserted == staged.staged_rows == 20_000 - len(bad)
    assert rows(pg_db, "SELECT count(*), sum(id) FROM shop.items") == [
        (20_000 - len(bad), sum(range(1, 20_001)) - sum(bad))
    ]
    assert rows(pg_db, "SELECT line FROM sqlgym_csv.rejects ORDER BY line") == [
        (i + 1,) for i in bad
    ]  # the header is line 1


def test_a_file_over_the_reject_ratio_loads_nothing(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, max_reject_ratio=0.2)
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n1,a,1\n2,b,x\n3,c,y\n4,d,4\n")
    with pg.connection(pg_db) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute("CREATE TABLE shop.items (id bigint PRIMARY KEY, name text, amount numeric)")
        conn.execute("INSERT INTO shop.items VALUES (1, 'before', 0)")
    with pytest.raises(CsvDataError, match=r"reject_ratio_within_limit: 2 of 4 rows rejected"):
        ingest(pg_db, s3, cfg)
    assert rows(pg_db) == [(1, "before", Decimal("0"))]
    assert rows(pg_db, "SELECT count(*) FROM sqlgym_csv.rejects") == [(2,)]  # why, for the user


def test_upsert_inserts_updates_and_leaves_equal_rows_alone(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, target={"schema": "shop", "table": "items", "key": ["id"],
                                    "mode": "upsert", "touch_column": "updated_at"})  # fmt: skip
    put(s3, s3_bucket, "in/2026-01-15-a.csv", "id,name,amount\n1,a,1\n2,b,2\n3,c,3\n")
    _, _, first = ingest(pg_db, s3, cfg)
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    with pg.connection(pg_db) as conn:
        conn.execute("UPDATE shop.items SET updated_at = '2000-01-01'")
    # a later file of the same day: id 2 changes, id 4 is new; the day is re-read whole
    put(s3, s3_bucket, "in/2026-01-15-b.csv", "id,name,amount\n2,B,2\n4,d,4\n")
    _, _, second = ingest(pg_db, s3, cfg, run_id="run-2")
    assert (second.inserted, second.updated, second.unchanged, second.superseded) == (1, 1, 2, 1)
    assert rows(pg_db, "SELECT id, name, updated_at > '2001-01-01' FROM shop.items ORDER BY id") == [
        (1, "a", False), (2, "B", True), (3, "c", False), (4, "d", True)
    ]  # fmt: skip


def test_upsert_keeps_the_last_version_of_a_repeated_key(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket)
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n1,old,1\n1,new,2\n")
    _, verdicts, counts = ingest(pg_db, s3, cfg)
    assert counts.superseded == 1 and counts.inserted == 1
    assert [v.passed for v in verdicts if v.name == "key_unique"] == [True]
    assert rows(pg_db, "SELECT id, name FROM shop.items") == [(1, "new")]


def test_unique_rule_quarantines_later_duplicates(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, rules=[{"check": "unique", "columns": ["id"]}], max_reject_ratio=0.5)
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n1,first,1\n2,b,2\n1,second,3\n")
    staged, _, _ = ingest(pg_db, s3, cfg)
    assert staged.rejected_rows == 1
    assert rows(pg_db, "SELECT id, name FROM shop.items ORDER BY id") == [(1, "first"), (2, "b")]
    assert rows(pg_db, "SELECT line, column_name, reason, value FROM sqlgym_csv.rejects") == [
        (4, "id", "duplicate of in/2026-01-15.csv:2 (rule unique)", "1")
    ]


def test_append_never_loads_the_same_file_twice(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, target={"schema": "shop", "table": "items", "mode": "append"})
    put(s3, s3_bucket, "in/2026-01-15-a.csv", "id,name,amount\n1,a,1\n")
    ingest(pg_db, s3, cfg)
    ingest(pg_db, s3, cfg, run_id="run-2")  # a retry or re-materialization of the day
    assert rows(pg_db, "SELECT id FROM shop.items") == [(1,)]
    put(s3, s3_bucket, "in/2026-01-15-b.csv", "id,name,amount\n1,a,1\n2,b,2\n")
    _, _, counts = ingest(pg_db, s3, cfg, run_id="run-3")
    assert counts.inserted == 2  # only the new file's rows, duplicates and all: append appends
    assert rows(pg_db, "SELECT id, count(*) FROM shop.items GROUP BY id ORDER BY id") == [
        (1, 2), (2, 1)
    ]  # fmt: skip
    ledger = rows(pg_db, "SELECT file_key, rows FROM sqlgym_csv.loaded_files ORDER BY file_key")
    assert ledger == [("in/2026-01-15-a.csv", 1), ("in/2026-01-15-b.csv", 2)]


def test_replace_swaps_exactly_the_partition(pg_db, s3, s3_bucket):
    cfg = config(
        s3_bucket,
        target={"schema": "shop", "table": "items", "mode": "replace", "partition_column": "day"},
    )
    put(s3, s3_bucket, "in/2026-01-14.csv", "id,name,amount\n1,a,1\n2,b,2\n")
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n3,c,3\n4,d,4\n")
    ingest(pg_db, s3, cfg, day=dt.date(2026, 1, 14))
    ingest(pg_db, s3, cfg)
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n5,e,5\n")  # the day's file re-sent
    _, _, counts = ingest(pg_db, s3, cfg, run_id="run-2")
    assert (counts.deleted, counts.inserted) == (2, 1)
    assert rows(pg_db, "SELECT day, id FROM shop.items ORDER BY id") == [
        (dt.date(2026, 1, 14), 1), (dt.date(2026, 1, 14), 2), (dt.date(2026, 1, 15), 5)
    ]  # fmt: skip


def test_min_rows_and_nothing_staged(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, rules=[{"check": "min_rows", "value": 3}])
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n1,a,1\n")
    with pytest.raises(CsvDataError, match=r"min_rows: 1 rows staged \(minimum 3\)"):
        ingest(pg_db, s3, cfg)
    with pg.connection(pg_db) as conn, pytest.raises(CsvDataError, match="nothing staged"):
        csv_ingest.publish(conn, cfg, cfg.dataset("items"), dt.date(2026, 1, 16), "r")


def test_file_level_errors_name_the_file(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket)
    with pytest.raises(CsvDataError, match=r"no file for 2026-01-15 under s3://.*/in/ matching"):
        ingest(pg_db, s3, cfg)
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,label\n1,a\n")
    with pytest.raises(
        CsvDataError,
        match=r"in/2026-01-15.csv: .* requires column\(s\) name, amount; the header has id, label",
    ):
        ingest(pg_db, s3, cfg)


def test_a_failing_publish_rolls_back_completely(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket)
    with pg.connection(pg_db) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute(
            "CREATE TABLE shop.items (id bigint PRIMARY KEY, name text, amount numeric "
            "CHECK (amount < 100))"
        )
        conn.execute("INSERT INTO shop.items VALUES (1, 'kept', 1)")
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n1,changed,2\n2,b,500\n")
    with pytest.raises((psycopg.Error, csv_ingest.SqlgymError)):
        ingest(pg_db, s3, cfg)
    assert rows(pg_db) == [(1, "kept", Decimal("1"))]
    published = rows(pg_db, "SELECT published_at FROM sqlgym_csv.stage_manifest")
    assert published == [(None,)]  # still staged: fix the data and publish again


def test_target_credentials_from_a_secret():
    url = csv_ingest.url_from_secret(
        {"host": "db.example", "port": 6543, "username": "u", "password": "p w", "dbname": "x"}, "s"
    )
    assert "host=db.example" in url and "port=6543" in url and "dbname=x" in url
    assert csv_ingest.url_from_secret({"url": "postgresql://a/b"}, "s") == "postgresql://a/b"
    with pytest.raises(csv_ingest.ConfigError, match="secret 's' has neither"):
        csv_ingest.url_from_secret({"host": "h"}, "s")


def test_compressed_files_are_read_as_they_stream(pg_db, s3, s3_bucket):
    cfg = config(s3_bucket, source={"bucket": s3_bucket, "prefix": "in/", "pattern": "*.csv.gz"})
    text = "id,name,amount\n" + "".join(f"{i},n{i},{i}.5\n" for i in range(5000))
    put(s3, s3_bucket, "in/2026-01-15.csv.gz", gzip.compress(text.encode()))
    put(s3, s3_bucket, "in/2026-01-15.csv", "id,name,amount\n99999,not matched,1\n")
    staged, _, counts = ingest(pg_db, s3, cfg)
    assert (staged.rows_read, counts.inserted) == (5000, 5000)
    assert rows(pg_db, "SELECT sum(amount), max(id) FROM shop.items") == [
        (Decimal(sum(i + 0.5 for i in range(5000))).quantize(Decimal("0.01")), 4999)
    ]
