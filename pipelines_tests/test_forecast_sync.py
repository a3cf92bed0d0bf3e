"""The forecast sync's library: the seed's schema, the per-day upsert, status, change detection."""

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from sqlgym_pipelines.lib import forecast_athena, forecast_plan, forecast_sync, pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.s3_files import S3File

DAY = dt.date(2026, 2, 1)


def rows(day=DAY, n=3, y50=None, **overrides) -> pa.Table:
    data = {
        "restaurant_id": list(range(1, n + 1)),
        "inventory_item_id": [10] * n,
        "business_date": [day] * n,
        "dma_id": ["DMA-1"] * n,
        "dc_id": [7] * n,
        "state": ["CA"] * n,
        "y_05": [1.0] * n,
        "y_50": y50 or [2.0] * n,
        "y_95": [3.0] * n,
    }
    data.update(overrides)
    return pa.table(data)


@pytest.fixture
def neon_db(pg_db) -> str:
    with pg.connection(pg_db) as conn:
        forecast_sync.ensure_schema(conn)
    return pg_db


def load(url, table, day=DAY, **kw):
    with pg.connection(url) as conn:
        return forecast_sync.load_day(conn, day, table, **kw)


def table(
    url, query="SELECT restaurant_id, y_50, updated_at > '2001-01-01' FROM forecast_data ORDER BY 1"
):
    with pg.connection(url) as conn:
        return conn.execute(query).fetchall()


def test_schema_is_the_seeds_and_idempotent(neon_db):
    with pg.connection(neon_db) as conn:
        forecast_sync.ensure_schema(conn)  # a second time changes nothing
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'forecast_data' ORDER BY ordinal_position"
        ).fetchall()
        report = forecast_sync.index_report(conn)
        conn.execute("DROP INDEX idx_forecast_dc")
        assert forecast_sync.index_report(conn)["idx_forecast_dc"] == "missing"
        partial = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_forecast_dma'"
        ).fetchone()[0]
    assert [c[0] for c in columns] == [
        "id", "restaurant_id", "inventory_item_id", "business_date", "dma_id", "dc_id", "state",
        "y_05", "y_50", "y_95", "created_at", "updated_at",
    ]  # fmt: skip
    assert ("y_50", "numeric", "NO") in columns and ("state", "character varying", "NO") in columns
    assert report == dict.fromkeys(forecast_sync.INDEXES, "valid")
    assert "WHERE (dma_id IS NOT NULL)" in partial


def test_upsert_new_changed_unchanged_and_dropped_rows(neon_db):
    first = load(neon_db, rows(n=4))
    assert (first.inserted, first.updated) == (4, 0)
    with pg.connection(neon_db) as conn:
        conn.execute("UPDATE forecast_data SET updated_at = '2000-01-01'")
    # restaurant 2 changes, 3 is unchanged, 4 is gone from the source, 5 is new
    again = rows(n=5, y50=[2.0, 9.99, 2.0, 2.0, 2.0]).filter(
        pa.array([True, True, True, False, True])
    )
    second = load(neon_db, again)
    assert (second.inserted, second.updated, second.unchanged, second.deleted) == (1, 1, 2, 1)
    assert table(neon_db) == [
        (1, Decimal("2.00"), False), (2, Decimal("9.99"), True), (3, Decimal("2.00"), False),
        (5, Decimal("2.00"), True),
    ]  # fmt: skip


def test_other_days_are_untouched_and_an_empty_day_is_emptied(neon_db):
    load(neon_db, rows(n=2))
    load(neon_db, rows(day=DAY + dt.timedelta(days=1), n=3), day=DAY + dt.timedelta(days=1))
    counts = load(neon_db, rows(n=0))
    assert counts.deleted == 2
    assert table(neon_db, "SELECT business_date, count(*) FROM forecast_data GROUP BY 1") == [
        (DAY + dt.timedelta(days=1), 3)
    ]


def test_doubles_round_to_cents_and_bad_sources_are_refused(neon_db):
    load(neon_db, rows(n=1, y50=[2.345]))
    assert table(neon_db, "SELECT y_50 FROM forecast_data") == [(Decimal("2.35"),)]
    with pytest.raises(ConfigError, match="no column"):
        load(neon_db, rows().drop(["state"]))
    with pytest.raises(ConfigError, match="another business_date"):
        load(neon_db, rows(day=DAY + dt.timedelta(days=3)))


def test_batches_inside_one_transaction_give_the_same_rows(neon_db):
    counts = load(neon_db, rows(n=25), batch_size=4)
    assert counts.inserted == 25
    assert table(neon_db, "SELECT count(*) FROM forecast_data") == [(25,)]


def test_status_rows_and_last_successes(neon_db):
    forecast_sync.record_status(neon_db, "incremental", DAY, 3, "success")
    forecast_sync.record_status(neon_db, "full", DAY + dt.timedelta(days=1), None, "failed", "boom")
    with pg.connection(neon_db) as conn:
        synced = forecast_sync.last_successes(conn)
        failed = conn.execute(
            "SELECT sync_type, last_sync_date, records_synced, status, error_message "
            "FROM forecast_sync_status WHERE status = 'failed'"
        ).fetchall()
    assert list(synced) == [DAY]
    assert failed == [("full", DAY + dt.timedelta(days=1), None, "failed", "boom")]


def test_changed_days_and_contiguous_ranges():
    t0 = dt.datetime(2026, 2, 1, 12, tzinfo=dt.UTC)
    old = S3File("b", "forecast/a.parquet", "e1", 1, t0, None)
    new = S3File("b", "forecast/b.parquet", "e2", 1, t0 + dt.timedelta(hours=2), None)
    d1, d2, d3 = DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    synced = {d1: t0 + dt.timedelta(hours=1), d2: t0 + dt.timedelta(hours=1)}
    files = [(old, {d1, d2}), (new, {d2, d3})]
    assert forecast_plan.changed_days(files, synced) == [d2, d3]  # d1's file is older than its sync
    assert forecast_plan.contiguous([d3, d1, DAY + dt.timedelta(days=5), d2]) == [
        (d1, d3), (DAY + dt.timedelta(days=5), DAY + dt.timedelta(days=5))
    ]  # fmt: skip


def test_bucket_name_follows_the_seed(monkeypatch):
    monkeypatch.delenv("SQLGYM_DATALAKE_BUCKET", raising=False)
    monkeypatch.setenv("FORECAST_PROJECT_NAME", "acme")
    assert forecast_plan.datalake_bucket("production") == "acme-datalake-production-35315550"
    monkeypatch.setenv("SQLGYM_DATALAKE_BUCKET", "explicit")
    assert forecast_plan.datalake_bucket("dev") == "explicit"


def test_each_day_rows_hands_a_failed_read_to_the_caller_with_its_day():
    """The asset reads the next day in a background thread: a read's error must come back as
    an item naming its day (recorded against it), and nothing is read after it."""

    class Athena:  # the outermost edge: a service whose third query fails
        def __init__(self):
            self.asked = []

        def query(self, sql, params):
            self.asked.append(params[0])
            if len(self.asked) == 3:
                raise TimeoutError("Athena query timed out")
            return pa.table({"business_date": pa.array(params, pa.date32())})

    days = [dt.date(2026, 2, d) for d in range(1, 6)]
    athena = Athena()
    got = list(forecast_athena.each_day_rows(athena, days))
    assert [(d, r is not None, type(e).__name__) for d, r, e in got] == [
        (days[0], True, "NoneType"), (days[1], True, "NoneType"), (days[2], False, "TimeoutError")
    ]  # fmt: skip
    assert athena.asked == days[:3]
