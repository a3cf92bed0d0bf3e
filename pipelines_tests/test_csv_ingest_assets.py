"""The Dagster side of the CSV ingestion: real runs, blocking checks, retries, the arrivals sensor."""

import datetime as dt
import threading
import time

import dagster as dg
import pytest
from psycopg import sql

from pipelines_tests.run_events import checks_passed
from sqlgym_pipelines.defs import resources as resources_defs
from sqlgym_pipelines.defs.csv_ingest import assets, checks, sensors
from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.s3_files import LOOKBACK, ArrivalCursor, S3File, new_arrivals
from sqlgym_pipelines.local.provision import aws_client

DAY = "2026-01-15"
CONFIG = """
datasets:
  items:
    source: {{bucket: {bucket}, prefix: items/}}
    schema:
      id: {{type: bigint, nullable: false}}
      name: string
      qty: integer
    transforms:
      - case: {{name: upper}}
    rules:
      - {{check: range, column: qty, min: 0}}
      - {{check: min_rows, value: 1}}
    max_reject_ratio: 0.34
    target: {{schema: shop, table: items, key: [id], mode: upsert}}
"""


@pytest.fixture
def csv_defs(stack, pg_db, s3_bucket, tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(bucket=s3_bucket))
    monkeypatch.setenv("SQLGYM_CSV_CONFIG", str(path))
    monkeypatch.setenv("SQLGYM_TARGET_PG_URL", pg_db)
    assets.csv_config.cache_clear()
    yield dg.Definitions.merge(
        assets.csv_ingest_assets(),
        checks.csv_ingest_checks(),
        sensors.csv_ingest_sensors(),
        resources_defs.resources(),
    )
    assets.csv_config.cache_clear()


@pytest.fixture
def s3(stack):
    return aws_client(stack, "s3")


def run(defs: dg.Definitions, day: str = DAY, instance=None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("csv_ingest_items_job")
    if instance is not None:
        return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
    with dg.instance_for_test() as instance:
        return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)


def retried(instance) -> bool:
    return any(
        e.dagster_event and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
        for r in instance.get_runs()
        for e in instance.all_logs(r.run_id)
    )


def metadata(result, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[0].metadata.items()} if mats else {}


def table(url: str):
    with pg.connection(url) as conn:
        return conn.execute("SELECT id, name, qty FROM shop.items ORDER BY id").fetchall()


def test_job_stages_checks_and_publishes_with_metadata(csv_defs, s3, s3_bucket, pg_db):
    s3.put_object(
        Bucket=s3_bucket, Key=f"items/{DAY}.csv", Body=b"id,name,qty\n1,a,1\n2,b,-1\n3,c,3\n"
    )
    result = run(csv_defs)
    assert result.success
    staged = metadata(result, "csv_ingest__staged__items")
    assert (staged["rows_read"], staged["rejected_rows"], staged["dagster/row_count"]) == (3, 1, 2)
    assert staged["reject_reasons"] == {"outside range [0, ]": 1}
    assert staged["files"] == [f"s3://{s3_bucket}/items/{DAY}.csv"]
    assert "| 1 | A | 1 |" in staged["preview"]
    published = metadata(result, "warehouse__shop__items")
    assert (published["inserted"], published["updated"], published["loaded"]) == (2, 0, 2)
    assert checks_passed(result) == {
        "items_reject_ratio_within_limit": True,
        "items_min_rows": True,
        "items_key_unique": True,
    }
    assert table(pg_db) == [(1, "A", 1), (3, "C", 3)]


def test_a_failed_blocking_check_keeps_bad_data_out(csv_defs, s3, s3_bucket, pg_db):
    s3.put_object(Bucket=s3_bucket, Key=f"items/{DAY}.csv", Body=b"id,name,qty\n1,a,1\n")
    assert run(csv_defs).success
    s3.put_object(Bucket=s3_bucket, Key=f"items/{DAY}.csv", Body=b"id,name,qty\n1,z,x\n2,b,y\n")
    result = run(csv_defs)
    assert not result.success
    assert metadata(result, "warehouse__shop__items") == {}  # publish never ran
    assert table(pg_db) == [(1, "A", 1)]


def test_a_transient_postgres_outage_is_retried(csv_defs, s3, s3_bucket, pg_db, stack):
    s3.put_object(Bucket=s3_bucket, Key=f"items/{DAY}.csv", Body=b"id,name,qty\n1,a,1\n")
    dbname = pg.conninfo_to_dict(pg.conninfo(pg_db))["dbname"]
    rename = "ALTER DATABASE {} RENAME TO {}"
    with pg.connection(stack.pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL(rename).format(sql.Identifier(dbname), sql.Identifier(dbname + "_x")))

    def back_after_the_first_failure(instance) -> None:
        deadline = time.monotonic() + 60
        while not retried(instance) and time.monotonic() < deadline:
            time.sleep(0.1)
        with pg.connection(stack.pg_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL(rename).format(sql.Identifier(dbname + "_x"), sql.Identifier(dbname))
            )

    with dg.instance_for_test() as instance:
        restorer = threading.Thread(target=back_after_the_first_failure, args=(instance,))
        restorer.start()
        try:
            result = run(csv_defs, instance=instance)
        finally:
            restorer.join()
        assert retried(instance), "the first attempt should have failed and been retried"
    assert result.success
    assert table(pg_db) == [(1, "A", 1)]


def test_bad_data_fails_at_once_without_retries(csv_defs, s3, s3_bucket):
    s3.put_object(Bucket=s3_bucket, Key=f"items/{DAY}.csv", Body=b"id,label\n1,a\n")
    result = run(csv_defs)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "requires column(s) name, qty; the header has id, label" in str(
        failure.step_failure_data.error.message
    )


def tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("csv_items_arrivals_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"s3": resources_defs.build_resources()["s3"]}
    )
    outcome = sensor(context)
    return outcome, context.cursor


def test_sensor_runs_each_new_or_changed_day_once(csv_defs, s3, s3_bucket):
    put = s3.put_object
    put(Bucket=s3_bucket, Key="items/2026-01-15.csv", Body=b"id,name,qty\n1,a,1\n")
    put(Bucket=s3_bucket, Key="items/2026-01-16_part1.csv", Body=b"id,name,qty\n2,b,1\n")
    put(Bucket=s3_bucket, Key="items/2026-01-16_part2.csv", Body=b"id,name,qty\n3,c,1\n")
    put(Bucket=s3_bucket, Key="items/notes.txt", Body=b"not a csv")
    put(Bucket=s3_bucket, Key="items/no-date.csv", Body=b"id,name,qty\n")
    with dg.instance_for_test() as instance:
        first, cursor = tick(csv_defs, instance, None)
        assert [r.partition_key for r in first] == ["2026-01-15", "2026-01-16"]
        assert (
            first[1].tags["sqlgym/csv_files"]
            == "items/2026-01-16_part1.csv,items/2026-01-16_part2.csv"
        )
        again, cursor = tick(csv_defs, instance, cursor)
        assert isinstance(again, dg.SkipReason)
        # the same bytes sent again: same ETag, nothing to do; changed bytes: one run for that day
        put(Bucket=s3_bucket, Key="items/2026-01-15.csv", Body=b"id,name,qty\n1,a,1\n")
        resent, cursor = tick(csv_defs, instance, cursor)
        assert isinstance(resent, dg.SkipReason)
        put(Bucket=s3_bucket, Key="items/2026-01-16_part2.csv", Body=b"id,name,qty\n3,c,2\n")
        changed, cursor = tick(csv_defs, instance, cursor)
        assert [r.partition_key for r in changed] == ["2026-01-16"]
        assert changed[0].run_key != first[1].run_key
    # a run key is the day plus every (key, ETag): the first tick's request, made again from a
    # lost cursor, has the same key, so Dagster does not launch it twice
    with dg.instance_for_test() as instance:
        replay, _ = tick(csv_defs, instance, None)
        assert replay[0].run_key == first[0].run_key


def test_cursor_stays_bounded_by_the_lookback_window():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    files = [
        S3File("b", f"k{i}.csv", f"e{i}", 1, start + dt.timedelta(minutes=10 * i), None)
        for i in range(500)
    ]
    cursor = ArrivalCursor()
    for i in range(0, 500, 50):  # ticks that each see the listing as it was then
        fresh, cursor = new_arrivals(files[: i + 50], cursor)
        assert [f.key for f in fresh] == [f"k{j}.csv" for j in range(i, i + 50)]
    assert cursor.watermark == files[-1].last_modified
    assert len(cursor.seen) == LOOKBACK // dt.timedelta(minutes=10) + 1
    assert ArrivalCursor.parse(cursor.dump()) == cursor
