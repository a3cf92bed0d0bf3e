"""sync_table against real Postgres and moto's S3: exact day files, idempotent, late commits, crashes."""

import datetime as dt
import subprocess
import sys
import textwrap
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.lake_layout import LakeLocation
from sqlgym_pipelines.lib.lake_store import LakeStore
from sqlgym_pipelines.lib.lake_sync import SyncOptions, sync_table
from sqlgym_pipelines.lib.sync_config import parse_sync_config, validate_against_catalog
from sqlgym_pipelines.local.provision import aws_client
from sqlgym_pipelines.resources.s3 import S3Resource

D1, D2, D3 = dt.date(2025, 10, 23), dt.date(2025, 10, 24), dt.date(2025, 10, 25)
CONFIG = {
    "tables": {
        "users": {
            "pk": "id",
            "updated_col": "updated_at",
            "sync_type": "incremental",
            "lag_seconds": 0,
        },
        "badges": {"pk": "id", "sync_type": "full"},
    }
}


def at(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


@pytest.fixture
def source(pg_db):
    with pg.connection(pg_db) as conn:
        conn.execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, name text, score numeric(6,2),"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("CREATE TABLE badges (id int PRIMARY KEY, label text)")
        conn.execute("INSERT INTO badges SELECT g, 'badge ' || g FROM generate_series(1, 5) g")
        rows = [
            (1, "ada", Decimal("1.50"), at(D1, 9)),
            (2, "bob", Decimal("2.00"), at(D1, 23, 59)),
            (3, "cy", Decimal("-3.25"), at(D2)),  # exactly on the day boundary: belongs to D2
            (4, "dee", None, at(D2)),  # ... and ties with row 3
            (5, "eve", Decimal("9999.99"), at(D3, 12)),
        ]
        with conn.cursor().copy("COPY users FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return pg_db


@pytest.fixture
def lake(stack, s3_bucket):
    s3 = S3Resource(endpoint_url=stack.s3_endpoint_url, region_name=stack.region,
                    aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    return aws_client(stack, "s3"), s3.pyarrow_filesystem(), LakeLocation(s3_bucket)


def resolved(url, name):
    with pg.connection(url) as conn:
        tables = validate_against_catalog(conn, parse_sync_config(CONFIG))
    return next(t for t in tables if t.name == name)


def run(url, lake, name, days, **opts):
    client, fs, loc = lake
    return sync_table(url, client, loc, resolved(url, name), days, SyncOptions(**opts))


def lake_rows(lake, table, day) -> list[dict]:
    client, fs, loc = lake
    keys = [o["Key"] for o in LakeStore(client, loc)._list_keys(loc.partition_prefix(table, day))]
    rows = [
        r
        for k in sorted(keys)
        for r in pq.read_table(f"{loc.bucket}/{k}", filesystem=fs).to_pylist()
    ]
    return sorted(rows, key=lambda r: (r["id"], r["_synced_at"]))


def ids(rows):
    return [r["id"] for r in rows]


def test_backfill_splits_days_exactly(source, lake):
    record = run(source, lake, "users", [D1, D2, D3], replace=True)
    assert ids(lake_rows(lake, "users", D1)) == [1, 2]
    assert ids(lake_rows(lake, "users", D2)) == [3, 4]  # boundary rows in D2 only, once each
    eve = lake_rows(lake, "users", D3)
    assert eve[0]["score"] == Decimal("9999.99") and eve[0]["updated_at"] == at(D3, 12)
    assert record.rows == 5 and record.files == 3
    assert {d: p.source_rows for d, p in record.partitions.items()} == {
        D1.isoformat(): 2, D2.isoformat(): 2, D3.isoformat(): 1}  # fmt: skip
    key = record.partitions[D1.isoformat()].added[0].key
    assert key == f"postgres-sync/users/2025/10/23/incremental_{record.sync_id}.parquet"
    assert pq.ParquetFile(lake[1].open_input_file(f"{lake[2].bucket}/{key}")).metadata.row_group(
        0).column(0).compression == "SNAPPY"  # fmt: skip


def test_rematerializing_is_idempotent(source, lake):
    first = run(source, lake, "users", [D1, D2], replace=True, now=at(D3, 1))
    before = {d: [{k: v for k, v in r.items() if k != "_synced_at"} for r in lake_rows(lake, "users", d)]
              for d in (D1, D2)}  # fmt: skip
    again = run(source, lake, "users", [D2], replace=True, now=at(D3, 2))
    assert again.partitions[D2.isoformat()].superseded == [
        f.key for f in first.partitions[D2.isoformat()].added]  # fmt: skip
    after = {d: [{k: v for k, v in r.items() if k != "_synced_at"} for r in lake_rows(lake, "users", d)]
             for d in (D1, D2)}  # fmt: skip
    assert after == before
    # append on a complete day reads nothing and changes nothing
    noop = run(source, lake, "users", [D1], now=at(D3, 3))
    assert noop.partitions == {} and lake_rows(lake, "users", D1)[0]["_synced_at"] == at(D3, 1)


def test_empty_day_writes_no_file(source, lake):
    empty = dt.date(2025, 10, 20)
    record = run(source, lake, "users", [empty], replace=True)
    assert record.partitions[empty.isoformat()].files == []
    assert lake_rows(lake, "users", empty) == []


def test_late_commit_is_picked_up_once(source, lake):
    today = dt.datetime.now(dt.UTC).date()
    with pg.connection(source) as late, pg.connection(source) as early:
        late.execute("INSERT INTO users (id, name) VALUES (100, 'late')")  # open: stamped now
        early.execute("INSERT INTO users (id, name) VALUES (101, 'early')")
        early.commit()  # commits first, with a newer updated_at than row 100
        run(source, lake, "users", [today], now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
        assert 100 not in ids(lake_rows(lake, "users", today))
        late.commit()
    run(source, lake, "users", [today], now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20))
    with pg.connection(source) as conn:
        conn.execute("UPDATE users SET name = 'late v2', updated_at = now() WHERE id = 100")
    run(source, lake, "users", [today], now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10))
    rows = lake_rows(lake, "users", today)
    assert ids(rows) == [100, 100, 101]  # both versions of 100, each once; 101 once
    assert [r["name"] for r in rows if r["id"] == 100] == ["late", "late v2"]


def test_full_snapshot_of_today_supersedes_and_past_is_refused(source, lake):
    today = dt.datetime.now(dt.UTC).date()
    run(source, lake, "badges", [today], now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20))
    with pg.connection(source) as conn:
        conn.execute("DELETE FROM badges WHERE id = 5")
    second = run(
        source, lake, "badges", [today], now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    )
    assert ids(lake_rows(lake, "badges", today)) == [1, 2, 3, 4]
    assert second.partitions[today.isoformat()].added[0].key.split("/")[-1].startswith("full_")
    with pytest.raises(Exception, match="cannot be re-snapshotted"):
        run(source, lake, "badges", [today - dt.timedelta(days=3)])


CRASH = textwrap.dedent("""
    import os, sys, datetime as dt
    from sqlgym_pipelines.lib import lake_store
    lake_store.LakeStore.commit = lambda self, record, expected: os._exit(17)  # dies before commit
    sys.path.insert(0, {tests!r})
    from test_lake_sync import run, D1
    from sqlgym_pipelines.lib.lake_layout import LakeLocation
    from sqlgym_pipelines.local.provision import aws_client
    from sqlgym_pipelines.local.stack import StackInfo
    import json
    info = StackInfo(**json.loads({info!r}))
    from sqlgym_pipelines.resources.s3 import S3Resource
    fs = S3Resource(endpoint_url=info.s3_endpoint_url, region_name=info.region,
                    aws_access_key_id="testing", aws_secret_access_key="testing").pyarrow_filesystem()
    run({url!r}, (aws_client(info, "s3"), fs, LakeLocation({bucket!r})), "users", [D1], replace=True)
""")


def test_crash_between_write_and_commit_leaves_readers_unaffected(source, lake, stack):
    import json
    from dataclasses import asdict
    from pathlib import Path

    client, fs, loc = lake
    script = CRASH.format(tests=str(Path(__file__).parent), info=json.dumps(asdict(stack)),
                          url=source, bucket=loc.bucket)  # fmt: skip
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert crashed.returncode == 17, crashed.stderr
    store = LakeStore(client, loc)
    pending = client.list_multipart_uploads(Bucket=loc.bucket).get("Uploads", [])
    # the file was written: a pending upload at its final key, which no reader can see ...
    assert len(pending) == 1
    assert pending[0]["Key"].startswith("postgres-sync/users/2025/10/23/incremental_")
    assert lake_rows(lake, "users", D1) == [] and store.record_ids("users") == []  # ... not data
    run(source, lake, "users", [D1], replace=True)
    assert ids(lake_rows(lake, "users", D1)) == [1, 2]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)
    assert store.recover("users", later, dt.timedelta(hours=6))["rolled_back"]
    assert store._list_keys(loc.staging_prefix("users")) == []
    assert client.list_multipart_uploads(Bucket=loc.bucket).get("Uploads", []) == []
