"""End to end on the local stack: forecast files land -> sensor -> Athena (duckdb) -> Neon
(a local preview branch) -> checks; the schedule's incremental choice; failures recorded."""

import datetime as dt
import io
import uuid
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines_tests.run_events import check_evaluations, checks_passed
from pipelines_tests.test_athena_boto import inject, row
from sqlgym_pipelines.defs import resources as resources_defs
from sqlgym_pipelines.defs.forecast import assets, checks, sensors
from sqlgym_pipelines.lib import forecast_athena, pg
from sqlgym_pipelines.lib.athena_boto import BotoAthena
from sqlgym_pipelines.lib.neon_local import LocalNeon
from sqlgym_pipelines.local.demo_forecast import SCHEMA, forecast_rows
from sqlgym_pipelines.local.provision import aws_client

D1 = dt.date(2026, 2, 1)


def day(n: int) -> dt.date:
    return D1 + dt.timedelta(days=n)


@pytest.fixture
def forecast(stack, s3_bucket, monkeypatch):
    """Definitions writing to a fresh preview branch and reading a fresh bucket."""
    branch = f"preview/pr-{uuid.uuid4().int % 10**8}"
    monkeypatch.setenv("SQLGYM_DATALAKE_BUCKET", s3_bucket)
    monkeypatch.setenv("SQLGYM_GIT_BRANCH", branch)
    defs = dg.Definitions.merge(
        assets.forecast_assets(),
        checks.forecast_checks_defs(),
        sensors.forecast_triggers(),
        resources_defs.resources(),
    )
    yield defs, branch
    neon = LocalNeon(stack.pg_url)
    if branch in {b.name for b in neon.list_branches()}:
        neon.delete_branch(branch)


def upload(stack, bucket: str, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    aws_client(stack, "s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def neon_url(stack, branch: str) -> str:
    return LocalNeon(stack.pg_url).connection_uri(branch)


def run(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("forecast_sync_job")
    return job.execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config, raise_on_error=False
    )


def sensor_tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("forecast_arrivals_sensor")
    resources = resources_defs.build_resources()
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"s3": resources["s3"], "neon": resources["neon"]},
    )
    return sensor(context)


def table_metadata(result) -> dict:
    mats = result.asset_materializations_for_node("neon__public__forecast_data")
    return {k: v.value for k, v in mats[0].metadata.items()}


def test_files_to_neon_through_the_sensor_with_checks(forecast, stack, s3_bucket):
    defs, branch = forecast
    upload(stack, s3_bucket, "forecast/a.parquet", forecast_rows([day(0), day(1)], 6, 5, seed=1))
    upload(stack, s3_bucket, "forecast/b.parquet", forecast_rows([day(2)], 6, 5, seed=2))
    with dg.instance_for_test() as instance:
        first = sensor_tick(defs, instance, None)
        assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in first.run_requests] == [(str(day(0)), str(day(2)))]  # fmt: skip
        result = run(defs, instance, first.run_requests[0])
        assert result.success
        meta = table_metadata(result)
        assert (meta["neon_branch"], meta["environment"], meta["git_branch"]) == (
            branch,
            "dev",
            branch,
        )
        assert (meta["days"], meta["inserted"]) == (3, 90)
        assert checks_passed(result) == {
            "forecast_data_rows_match_athena": True, "forecast_data_indexes_valid": True,
            "forecast_data_y_50_not_null": True, "forecast_data_quantiles_ordered": True,
            "forecast_data_state_is_two_letters": True, "forecast_data_natural_key_unique": True,
        }  # fmt: skip
        # one file rewritten with other medians: only its day is synced again
        changed = forecast_rows([day(2)], 6, 5, seed=3)
        upload(stack, s3_bucket, "forecast/b.parquet", changed)
        second = sensor_tick(defs, instance, first.cursor)
        assert [r.tags["dagster/asset_partition_range_start"] for r in second.run_requests] == [
            str(day(2))
        ]
        again = run(defs, instance, second.run_requests[0])
        meta = table_metadata(again)
        assert (meta["inserted"], meta["updated"] + meta["unchanged"]) == (0, 30)
        assert meta["updated"] > 0
        assert isinstance(sensor_tick(defs, instance, second.cursor).skip_reason, dg.SkipReason)
    with pg.connection(neon_url(stack, branch)) as conn:
        got = conn.execute(
            "SELECT y_50 FROM forecast_data WHERE business_date = %s ORDER BY restaurant_id, "
            "inventory_item_id",
            (day(2),),
        ).fetchall()
        status = conn.execute(
            "SELECT last_sync_date, status FROM forecast_sync_status ORDER BY id"
        ).fetchall()
    expected = sorted(zip(changed["restaurant_id"].to_pylist(), changed["inventory_item_id"].to_pylist(),
                          changed["y_50"].to_pylist(), strict=True))  # fmt: skip
    assert [g[0] for g in got] == [
        Decimal(str(round(e[2], 2))).quantize(Decimal("0.01")) for e in expected
    ]
    assert status == [
        (day(0), "success"),
        (day(1), "success"),
        (day(2), "success"),
        (day(2), "success"),
    ]


def test_schedule_syncs_only_days_whose_files_changed(forecast, stack, s3_bucket):
    defs, _ = forecast
    schedule = defs.resolve_schedule_def("forecast_sync_job_schedule")
    resources = resources_defs.build_resources()

    def tick(instance):
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime.now(dt.UTC),
            resources={"s3": resources["s3"], "neon": resources["neon"]},
            repository_def=defs.get_repository_def(),
        )
        return schedule.evaluate_tick(context)

    upload(stack, s3_bucket, "forecast/a.parquet", forecast_rows([day(0), day(1)], 3, 2, seed=1))
    upload(stack, s3_bucket, "forecast/c.parquet", forecast_rows([day(5)], 3, 2, seed=5))

    def ranges(requests):
        return [(r.tags["dagster/asset_partition_range_start"],
                 r.tags["dagster/asset_partition_range_end"]) for r in requests]  # fmt: skip

    with dg.instance_for_test() as instance:
        first = tick(instance).run_requests
        assert ranges(first) == [(str(day(0)), str(day(1))), (str(day(5)), str(day(5)))]
        assert run(defs, instance, first[0]).success
        # day 5's file is older than day 0's sync, but day 5 never synced: still changed
        assert ranges(tick(instance).run_requests) == [(str(day(5)), str(day(5)))]
        assert run(defs, instance, first[1]).success
        assert tick(instance).run_requests == []  # every day is in sync
        # a.parquet now holds day 1 only: day 1 changed, day 0 must be emptied in Neon
        upload(stack, s3_bucket, "forecast/a.parquet", forecast_rows([day(1)], 3, 2, seed=7))
        again = tick(instance).run_requests
        assert ranges(again) == [(str(day(0)), str(day(1)))]
        meta = table_metadata(run(defs, instance, again[0]))
        assert (meta["days"], meta["deleted"]) == (2, 6)


def test_a_failed_sync_is_recorded_and_not_retried(forecast, stack, s3_bucket):
    defs, branch = forecast
    bad = forecast_rows([day(9)], 2, 2, seed=9).set_column(
        SCHEMA.get_field_index("y_50"), "y_50", pa.array(["n/a"] * 4)
    )
    upload(stack, s3_bucket, "forecast/bad.parquet", bad)
    request = dg.RunRequest(tags={"dagster/asset_partition_range_start": str(day(9)),
                                  "dagster/asset_partition_range_end": str(day(9))})  # fmt: skip
    with dg.instance_for_test() as instance:
        result = run(defs, instance, request)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    with pg.connection(neon_url(stack, branch)) as conn:
        status = conn.execute(
            "SELECT sync_type, last_sync_date, status, error_message FROM forecast_sync_status"
        ).fetchall()
    assert [(s[0], s[1], s[2]) for s in status] == [("incremental", day(9), "failed")]
    assert "n/a" in status[0][3] or "y_50" in status[0][3]


def test_the_boto3_athena_path_returns_forecast_types(stack):
    client = aws_client(stack, "athena")
    columns = [("restaurant_id", "integer", 10, 0), ("inventory_item_id", "integer", 10, 0),
               ("business_date", "date", 0, 0), ("dma_id", "varchar", 50, 0),
               ("dc_id", "integer", 10, 0), ("state", "varchar", 2, 0),
               ("y_05", "decimal", 10, 2), ("y_50", "decimal", 10, 2), ("y_95", "decimal", 10, 2)]  # fmt: skip
    header = row(*[c[0] for c in columns])
    inject(
        stack, [header, row("1", "2", "2026-02-01", None, "3", "CA", "1.50", "2.25", None)], columns
    )
    athena = BotoAthena(
        client, database="sqlgym", output_location="s3://sqlgym-athena-results-local/"
    )
    table = forecast_athena.day_rows(athena, D1)
    assert table.to_pylist() == [{
        "restaurant_id": 1, "inventory_item_id": 2, "business_date": D1, "dma_id": None, "dc_id": 3,
        "state": "CA", "y_05": Decimal("1.50"), "y_50": Decimal("2.25"), "y_95": None,
    }]  # fmt: skip
    client.close()


def test_the_rule_checks_count_what_breaks_them(forecast, stack, s3_bucket):
    """Rows damaged in Neon after a sync: each rule's check fails with the rows breaking it,
    duplicate keys included once the seed's UNIQUE constraint is gone."""
    defs, branch = forecast
    upload(stack, s3_bucket, "forecast/a.parquet", forecast_rows([day(0)], 4, 5, seed=4))
    tags = {"dagster/asset_partition_range_start": str(day(0)),
            "dagster/asset_partition_range_end": str(day(0))}  # fmt: skip
    checks_only = dg.define_asset_job(
        "forecast_checks_only", selection=dg.AssetSelection.checks_for_assets(assets.TABLE_KEY)
    )
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks_only]))
    with dg.instance_for_test() as instance:
        assert run(defs, instance, dg.RunRequest(tags=tags)).success
        with pg.connection(neon_url(stack, branch)) as conn:
            conn.execute(
                "UPDATE forecast_data SET state = 'ca' WHERE restaurant_id = 1 AND "
                "inventory_item_id <= 2"
            )
            conn.execute(
                "UPDATE forecast_data SET y_05 = y_50 + 1 WHERE restaurant_id = 2 AND "
                "inventory_item_id = 1"
            )
            conn.execute("ALTER TABLE forecast_data ALTER y_50 DROP NOT NULL")
            conn.execute("UPDATE forecast_data SET y_50 = NULL WHERE restaurant_id = 3")
            name = conn.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'forecast_data'::regclass "
                "AND contype = 'u'"
            ).fetchone()[0]
            conn.execute(f'ALTER TABLE forecast_data DROP CONSTRAINT "{name}"')
            conn.execute(
                "INSERT INTO forecast_data (restaurant_id, inventory_item_id, business_date, "
                "state, y_50) SELECT restaurant_id, inventory_item_id, business_date, state, y_50 "
                "FROM forecast_data WHERE restaurant_id = 4 AND inventory_item_id <= 3"
            )
        result = defs.resolve_job_def("forecast_checks_only").execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        )
    evaluations = check_evaluations(result)
    violations = {
        name: ev.metadata["violations"].value for name, ev in evaluations.items()
        if "violations" in ev.metadata
    }  # fmt: skip
    assert violations == {
        "forecast_data_state_is_two_letters": 2,
        "forecast_data_quantiles_ordered": 1,
        "forecast_data_y_50_not_null": 5,  # restaurant 3's five items
        "forecast_data_natural_key_unique": 3,
    }
    assert not any(evaluations[name].passed for name in violations)
    # 20 rows + 3 duplicates in Neon, Athena's 20: the counts differ too
    assert evaluations["forecast_data_rows_match_athena"].passed is False
