"""The lake sync through real Dagster runs: a 3-day single-run backfill, checks, the _current view."""

import datetime as dt
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines_tests.run_events import checks_passed
from sqlgym_pipelines.defs.postgres_sync import assets as sync_assets
from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.lake_athena import register_lake_table
from sqlgym_pipelines.lib.lake_layout import LakeLocation
from sqlgym_pipelines.lib.lake_store import LakeStore
from sqlgym_pipelines.local.demo_sqlgym import seed_sqlgym
from sqlgym_pipelines.local.provision import aws_client
from sqlgym_pipelines.resources.athena import AthenaResource

TODAY = dt.datetime.now(dt.UTC).date()
DAYS = [TODAY - dt.timedelta(days=n) for n in (2, 1, 0)]
USERS = dg.AssetKey(["lake", "postgres_sync", "users"])
CONFIG = {
    "defaults": {"lag_seconds": 0},
    "tables": {
        "users": {
            "pk": "id",
            "updated_col": "updated_at",
            "sync_type": "incremental",
            "priority": 1,
        },
        "badges": {"pk": "id", "sync_type": "full", "priority": 2},
    },
}


@pytest.fixture
def project(stack, pg_db, s3_bucket, tmp_path, monkeypatch):
    """The project's definitions pointed at a seeded source, a fresh bucket and a test config."""
    seed_sqlgym(pg_db, scale=0.3, days=3)
    config = tmp_path / "pipeline_config.json"
    config.write_text(json.dumps(CONFIG))
    monkeypatch.setenv("SQLGYM_SOURCE_PG_URL", pg_db)
    monkeypatch.setenv("SQLGYM_LAKE_BUCKET", s3_bucket)
    monkeypatch.setenv("SQLGYM_SYNC_CONFIG", str(config))
    sync_assets.sync_config.cache_clear()
    from sqlgym_pipelines.definitions import defs

    yield defs(), pg_db, LakeLocation(s3_bucket)
    sync_assets.sync_config.cache_clear()


def _ranged(defs, keys, days, **tags):
    job = defs.resolve_job_def("postgres_sync_job")
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=keys,
        tags={
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
            **tags,
        },
        raise_on_error=False,
    )


def _lake_ids(stack, loc, day) -> list[int]:
    s3 = aws_client(stack, "s3")
    store = LakeStore(s3, loc)
    state = store.partition_state("users", day)
    ids = []
    for f in state[1].files if state else []:
        body = s3.get_object(Bucket=loc.bucket, Key=f.key)["Body"].read()
        ids += pq.read_table(pa.BufferReader(body)).column("id").to_pylist()
    return sorted(ids)


def test_three_day_backfill_one_run_exact_days_and_checks_pass(project, stack):
    defs, url, loc = project
    result = _ranged(defs, [USERS], DAYS, **{"dagster/backfill": "test-backfill"})
    assert result.success
    mats = result.asset_materializations_for_node("lake__postgres_sync__users")
    assert len(mats) == 3  # one materialization per partition of the single run
    meta = mats[0].metadata
    assert meta["preview"].value.startswith("| id | public_id | username")
    assert meta["rows"].value == meta["dagster/row_count"].value > 0
    assert meta["s3_uris"].value[0].startswith(f"s3://{loc.bucket}/postgres-sync/users/")
    with pg.connection(url) as conn:
        for day in DAYS:
            expected = [r[0] for r in conn.execute(
                "SELECT id FROM users WHERE updated_at >= %s AND updated_at < %s ORDER BY id",
                (day, day + dt.timedelta(days=1)),
            )]  # fmt: skip
            assert _lake_ids(stack, loc, day) == expected and expected
    checks = checks_passed(result)
    assert checks and all(checks.values()), checks


def test_checks_fail_on_a_corrupted_partition(project, stack):
    defs, url, loc = project
    assert _ranged(defs, [USERS], DAYS[:1]).success
    s3 = aws_client(stack, "s3")
    key = LakeStore(s3, loc).partition_state("users", DAYS[0])[1].files[0].key
    table = pq.read_table(pa.BufferReader(s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read()))
    doubled = pa.BufferOutputStream()
    pq.write_table(
        pa.concat_tables([table, table]), doubled
    )  # every row twice: the file no longer matches
    s3.put_object(Bucket=loc.bucket, Key=key, Body=doubled.getvalue().to_pybytes())

    checks_job = defs.resolve_job_def("postgres_sync_checks_job")
    result = checks_job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=None,
        tags={"dagster/partition": DAYS[0].isoformat()}, raise_on_error=False,
    )  # fmt: skip
    checks = checks_passed(result)
    assert checks["users_rows_match_source"] is False
    assert checks["users_versions_unique"] is False
    assert checks["users_columns_complete"] is True


def test_current_view_equals_the_source(project, stack):
    defs, url, loc = project
    # the seed spreads updated_at over the last 3 x 24 h: four calendar days hold every row
    every_day = [TODAY - dt.timedelta(days=3), *DAYS]
    assert _ranged(defs, [USERS], every_day, **{"dagster/backfill": "b"}).success
    athena = AthenaResource(engine="duckdb", s3_endpoint_url=stack.s3_endpoint_url,
                            region=stack.region, aws_access_key_id="testing",
                            aws_secret_access_key="testing", database="sqlgym")  # fmt: skip
    state = LakeStore(aws_client(stack, "s3"), loc).partition_state("users", DAYS[0])
    s3 = aws_client(stack, "s3")
    schema = pq.read_schema(pa.BufferReader(
        s3.get_object(Bucket=loc.bucket, Key=state[1].files[0].key)["Body"].read()))  # fmt: skip
    register_lake_table(athena, "users", schema, loc, ["id"], "updated_at", "incremental")
    lake = athena.query("SELECT id, username, xp, updated_at FROM users_current ORDER BY id")
    with pg.connection(url) as conn:
        source = conn.execute(
            "SELECT id, username, xp, updated_at FROM users ORDER BY id"
        ).fetchall()
    assert [tuple(r.values()) for r in lake.to_pylist()] == source


def test_make_invoke_validate_monitor_commands(project, capsys):
    from sqlgym_pipelines import cli

    defs, url, loc = project
    today = TODAY.isoformat()
    assert cli.main(["lake-sync", "--date", today, "--tables", "users,badges"]) == 0
    out = capsys.readouterr().out
    assert "ok: postgres_sync_job" in out and "badges" in out
    assert cli.main(["lake-sync", "--full", "--date", today, "--tables", "users"]) == 0
    assert cli.main(["lake-validate", "--date", today, "--tables", "users"]) == 0
    out = capsys.readouterr().out
    assert "pass          users_rows_match_source" in out and "ok: lake checks" in out
    assert cli.main(["lake-monitor"]) == 0
    report = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert report["users"][2] == "committed" and report["badges"][2] == "committed"
    with pytest.raises(RuntimeError, match="cannot be re-snapshotted"):
        raise_on_past_snapshot(defs)


def raise_on_past_snapshot(defs):
    """A past partition of a full table is refused through Dagster too."""
    job = defs.resolve_job_def("postgres_sync_job")
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=(TODAY - dt.timedelta(days=5)).isoformat(),
        asset_selection=[dg.AssetKey(["lake", "postgres_sync", "badges"])],
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    raise RuntimeError(failure.step_failure_data.error.to_string())


def test_athena_ddl_command(project, capsys):
    from sqlgym_pipelines import cli

    assert cli.main(["lake-athena-ddl"]) == 0
    out = capsys.readouterr().out
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `sqlgym`.`users`" in out
    assert "'storage.location.template'=" in out and "PARTITIONED BY" in out
    assert "CREATE OR REPLACE VIEW" in out and "users_current" in out


def test_backfill_from_the_dagster_cli_with_partition_range(project, stack, tmp_path):
    import os
    import subprocess

    defs, url, loc = project
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}  # an empty home: a throwaway instance
    span = f"{DAYS[0].isoformat()}...{DAYS[-1].isoformat()}"
    done = subprocess.run(
        [os.path.join(os.path.dirname(os.sys.executable), "dagster"), "asset", "materialize",
         "-m", "sqlgym_pipelines.definitions", "--select", "lake/postgres_sync/users",
         "--partition-range", span],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with pg.connection(url) as conn:
        for day in DAYS:
            (n,) = conn.execute(
                "SELECT count(*) FROM users WHERE updated_at >= %s AND updated_at < %s",
                (day, day + dt.timedelta(days=1)),
            ).fetchone()
            assert len(_lake_ids(stack, loc, day)) == n


def test_hourly_schedule_also_finishes_yesterday_after_midnight():
    from sqlgym_pipelines.defs.postgres_sync.jobs import hourly_requests

    early = hourly_requests(dt.datetime(2025, 10, 25, 0, 0, tzinfo=dt.UTC))
    assert [r.partition_key for r in early] == ["2025-10-24", "2025-10-25"]
    noon = hourly_requests(dt.datetime(2025, 10, 25, 12, 0, tzinfo=dt.UTC))
    assert [r.partition_key for r in noon] == ["2025-10-25"]
    assert len({r.run_key for r in early + noon}) == 3
    from sqlgym_pipelines.definitions import defs

    definitions = defs()
    schedule = definitions.resolve_schedule_def("postgres_sync_job_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 10, 25, 1, 0, tzinfo=dt.UTC),
        repository_def=definitions.get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2025-10-24", "2025-10-25"]
