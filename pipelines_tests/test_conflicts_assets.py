"""The conflict report through Dagster: fakesnow visits -> staging -> conflictvisitmaps,
chunks as dynamic steps, a failed chunk resumed by re-execution, checks, health and reset."""

import datetime as dt
import uuid

import dagster as dg
import pyarrow as pa
import pytest
from psycopg import sql

from pipelines_tests.run_events import check_evaluations, checks_passed, failure_messages, steps
from sqlgym_pipelines.defs.conflicts.assets import TABLE_KEY, VISITS_KEY, conflicts_assets
from sqlgym_pipelines.defs.conflicts.checks import conflicts_checks
from sqlgym_pipelines.defs.conflicts.jobs import conflicts_jobs
from sqlgym_pipelines.defs.conflicts.schedules import conflicts_schedules
from sqlgym_pipelines.defs.resources import build_resources
from sqlgym_pipelines.lib import conflict_rules, pg
from sqlgym_pipelines.lib.conflict_rules import Visit
from sqlgym_pipelines.local.demo_conflicts import put_visits, visit_rows
from sqlgym_pipelines.resources.snowflake import SnowflakeResource

pytest.importorskip("fakesnow")
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

DAY = dt.date(2026, 3, 2)
PARTITION = DAY.isoformat()
CHUNK_STEP = "process_conflict_chunk["
SMALL_CHUNKS = {"target_chunk_size": 40, "max_chunk_size": 80, "max_keys_per_chunk": 3}


@pytest.fixture(scope="module")
def fakesnow_dir(tmp_path_factory) -> str:
    # One for the module: Dagster caches a reconstructable job (and the resources it was
    # built with) per process, so every run of this module reads the same fakesnow files.
    return str(tmp_path_factory.mktemp("conflicts") / "fakesnow")


@pytest.fixture
def pipeline(stack, pg_db, tmp_path, monkeypatch, fakesnow_dir):
    """A fresh warehouse and fakesnow source, named in the environment as a user would."""
    schema = f"c_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SQLGYM_TARGET_PG_URL", pg_db)
    monkeypatch.setenv("SQLGYM_CONFLICTS_SCHEMA", schema)
    monkeypatch.setenv("SNOWFLAKE_FAKESNOW_DB_PATH", fakesnow_dir)
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "SQLGYM")
    monkeypatch.setenv("SNOWFLAKE_SCHEMA", "CONFLICTS")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    snowflake = SnowflakeResource(
        mode="fakesnow",
        database="SQLGYM",
        schema="CONFLICTS",
        fakesnow_db_path=fakesnow_dir,
    )
    visits = visit_rows(DAY, caregivers=12, seed=7)
    put_visits(snowflake, "VISITS", visits, replace=True)
    return {"url": pg_db, "schema": schema, "visits": visits, "snowflake": snowflake}


def _defs() -> dg.Definitions:
    return dg.Definitions.merge(
        conflicts_assets(),
        conflicts_checks(),
        conflicts_jobs(),
        conflicts_schedules(),
        dg.Definitions(
            resources=build_resources(),
            jobs=[
                dg.define_asset_job(
                    "conflicts_in_process",
                    selection=dg.AssetSelection.assets(VISITS_KEY, TABLE_KEY),
                    executor_def=dg.in_process_executor,
                )
            ],
        ),
    )


def in_process_job() -> dg.JobDefinition:
    """Module-level so Dagster can reconstruct it for re-execution."""
    return _defs().resolve_job_def("conflicts_in_process")


def _run_config(**task02) -> dict:
    return {
        "ops": {
            "postgres__conflicts__conflictvisitmaps": {
                "ops": {"plan_conflict_chunks": {"config": task02}}
            }
        }
    }


def _table(url: str, schema: str) -> dict:
    with pg.connection(url) as conn:
        cur = conn.execute(
            sql.SQL("SELECT {} FROM {}.conflictvisitmaps").format(
                sql.SQL(", ").join(map(sql.Identifier, conflict_rules.COLUMNS)),
                sql.Identifier(schema),
            )
        )
        rows = [dict(zip(conflict_rules.COLUMNS, r, strict=True)) for r in cur]
    return {tuple(r[k] for k in conflict_rules.KEY): r for r in rows}


def _expected(visits, run_ts) -> dict:
    as_visits = [Visit(**row) for row in visits.to_pylist()]
    keys = {(v.VisitDate, v.SSN) for v in as_visits}
    return conflict_rules.task02({}, as_visits, keys, run_ts, 30.0)


def _run_ts(table: dict) -> dt.datetime:
    (run_ts,) = {row["CreatedDate"] for row in table.values()}
    return run_ts


def _execute(instance, run_config, tags=None, **kwargs):
    return dg.execute_job(
        dg.reconstructable(in_process_job), instance=instance, run_config=run_config,
        tags=tags or {"dagster/partition": PARTITION}, raise_on_error=False, **kwargs,
    )  # fmt: skip


def test_chunked_run_writes_the_rules_result_and_shows_each_chunk(pipeline):
    with dg.instance_for_test() as instance:
        result = _execute(instance, _run_config(**SMALL_CHUNKS))
        assert result.success
        chunk_steps = steps(result, "STEP_SUCCESS", CHUNK_STEP)
        assert len(chunk_steps) > 3  # one step per chunk, visible in the UI
        table = _table(pipeline["url"], pipeline["schema"])
        assert table and table == _expected(pipeline["visits"], _run_ts(table))
        (materialization,) = [
            e.materialization for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == TABLE_KEY
        ]  # fmt: skip
        assert materialization.metadata["dagster/row_count"].value == len(table)
        assert materialization.metadata["inserted"].value == len(table)
        assert checks_passed(result) == {
            "conflictvisitmaps_all_rows_processed": True,
            "conflictvisitmaps_no_stuck_chunks": True,
            "conflictvisitmaps_status_matches_flags": True,
        }


def test_monolithic_mode_writes_the_same_table(pipeline):
    with dg.instance_for_test() as instance:
        assert _execute(instance, _run_config(mode="monolithic")).success
    table = _table(pipeline["url"], pipeline["schema"])
    assert table == _expected(pipeline["visits"], _run_ts(table))


def test_a_failed_chunk_resumes_by_reexecution_and_ends_as_an_uninterrupted_run(pipeline):
    url, schema = pipeline["url"], pipeline["schema"]
    victim = sorted(set(pipeline["visits"].column("SSN").to_pylist()))[5]
    with pg.connection(url) as conn:  # the schema exists once Task 01 has run
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    with dg.instance_for_test() as instance:
        first = _execute(instance, _run_config(**SMALL_CHUNKS))
        assert first.success
        # a data error in one caregiver's rows, raised by the database mid-chunk
        with pg.connection(url) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.\"SSN\" = {victim} THEN RAISE EXCEPTION 'injected failure' "
                    "USING ERRCODE = '22023'; END IF; RETURN NEW; END $$; "
                    "CREATE TRIGGER fail BEFORE UPDATE ON {s}.conflictvisitmaps "
                    "FOR EACH ROW EXECUTE FUNCTION {s}.fail()"
                ).format(s=sql.Identifier(schema), victim=sql.Literal(victim))
            )
        failed = _execute(instance, _run_config(**SMALL_CHUNKS))
        assert not failed.success
        failed_steps = steps(failed, "STEP_FAILURE")
        assert len(failed_steps) == 1 and CHUNK_STEP in next(iter(failed_steps))
        with pg.connection(url) as conn:
            locked = conn.execute(
                sql.SQL('SELECT count(*) FROM {}.conflictvisitmaps WHERE "UpdateFlag" = 1').format(
                    sql.Identifier(schema)
                )
            ).fetchone()[0]
            assert locked == 0  # the failed chunk rolled back its marks
            conn.execute(sql.SQL("DROP TRIGGER fail ON {}.conflictvisitmaps").format(
                sql.Identifier(schema)))  # fmt: skip
        resumed = _execute(
            instance,
            _run_config(**SMALL_CHUNKS),
            reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance),
        )
        assert resumed.success
        assert (
            steps(resumed, "STEP_SUCCESS", CHUNK_STEP) == failed_steps
        )  # only the failed chunk ran again
    table = _table(url, schema)
    run_ts = max(row["UpdatedDate"] for row in table.values())
    # what one uninterrupted second run gives: the first run's rows, re-dated
    first_table = _expected(pipeline["visits"], _run_ts(table))
    assert table == {k: {**row, "UpdatedDate": run_ts} for k, row in first_table.items()}


def test_health_job_names_what_is_missing(pipeline, monkeypatch):
    defs = _defs()
    assert defs.resolve_job_def("conflicts_health_job").execute_in_process().success
    put_visits(
        pipeline["snowflake"], "VISITS", pipeline["visits"].drop_columns(["PatientLatitude"]),
        replace=True,
    )  # fmt: skip
    monkeypatch.setenv("SQLGYM_CONFLICTS_TARGET_CHUNK_SIZE", "lots")
    result = (
        _defs().resolve_job_def("conflicts_health_job").execute_in_process(raise_on_error=False)
    )
    failures = failure_messages(result)
    assert len(failures) == 1
    assert "SQLGYM_CONFLICTS_TARGET_CHUNK_SIZE='lots' is not a positive integer" in failures[0]
    monkeypatch.delenv("SQLGYM_CONFLICTS_TARGET_CHUNK_SIZE")
    result = (
        _defs().resolve_job_def("conflicts_health_job").execute_in_process(raise_on_error=False)
    )
    failures = failure_messages(result)
    assert len(failures) == 1 and "lacks column(s) PatientLatitude" in failures[0]


def test_reset_job_needs_confirmation_then_releases_locks(pipeline):
    url, schema = pipeline["url"], pipeline["schema"]
    with dg.instance_for_test() as instance:
        assert _execute(instance, _run_config(mode="monolithic")).success
    with pg.connection(url) as conn:  # what a crashed Lambda of the seed left behind
        conn.execute(sql.SQL('UPDATE {}.conflictvisitmaps SET "UpdateFlag" = 1').format(
            sql.Identifier(schema)))  # fmt: skip
    locked = len(_table(url, schema))
    job = _defs().resolve_job_def("conflicts_reset_job")
    refused = job.execute_in_process(raise_on_error=False)
    assert not refused.success
    (message,) = failure_messages(refused)
    assert f"{locked} row(s)" in message and "confirm: true" in message
    assert all(row["UpdateFlag"] == 1 for row in _table(url, schema).values())
    done = job.execute_in_process(
        run_config={"ops": {"reset_update_flags": {"config": {"confirm": True}}}}
    )
    assert done.success
    assert all(row["UpdateFlag"] is None for row in _table(url, schema).values())


def test_a_date_range_is_one_run_over_every_day(pipeline):
    next_day = visit_rows(DAY + dt.timedelta(days=1), caregivers=5, seed=8, first_id=10_000)
    visits = pa.concat_tables([pipeline["visits"], next_day])
    put_visits(pipeline["snowflake"], "VISITS", visits, replace=True)
    tags = {
        "dagster/asset_partition_range_start": PARTITION,
        "dagster/asset_partition_range_end": (DAY + dt.timedelta(days=1)).isoformat(),
    }
    with dg.instance_for_test() as instance:
        assert _execute(instance, _run_config(**SMALL_CHUNKS), tags=tags).success
    table = _table(pipeline["url"], pipeline["schema"])
    assert {key[0] for key in table} == {DAY, DAY + dt.timedelta(days=1)}
    assert table == _expected(visits, _run_ts(table))


def test_the_daily_schedule_reevaluates_the_last_days_in_one_run(pipeline, monkeypatch):
    monkeypatch.setenv("SQLGYM_CONFLICTS_LOOKBACK_DAYS", "2")
    defs = _defs()
    schedule = defs.resolve_schedule_def("conflicts_job_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 3, 5, 3, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-03"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-05"
    assert request.run_key == "2026-03-05"


def test_the_checks_fail_on_locked_rows_stuck_chunks_and_contradicting_status(pipeline):
    url, schema = pipeline["url"], pipeline["schema"]
    with dg.instance_for_test() as instance:
        assert _execute(instance, _run_config(**SMALL_CHUNKS)).success
    with pg.connection(url) as conn:  # a crashed writer's leftovers, as the seed could leave
        s = sql.Identifier(schema)
        conn.execute(
            sql.SQL(
                'UPDATE {}.conflictvisitmaps SET "UpdateFlag" = 1 WHERE "VisitID" % 2 = 0'
            ).format(s)
        )
        conn.execute(
            sql.SQL(
                """UPDATE {}.conflictvisitmaps SET "StatusFlag" = 'resolved' WHERE "VisitID" % 2 = 1"""
            ).format(s)
        )
        conn.execute(
            sql.SQL("UPDATE {}.conflict_chunks SET status = 'pending' WHERE chunk_id = 1").format(s)
        )
    result = (
        _defs()
        .resolve_job_def("conflicts_checks_job")
        .execute_in_process(tags={"dagster/partition": PARTITION}, raise_on_error=False)
    )
    outcomes = check_evaluations(result)
    assert checks_passed(result) == {
        "conflictvisitmaps_all_rows_processed": False,
        "conflictvisitmaps_no_stuck_chunks": False,
        "conflictvisitmaps_status_matches_flags": False,
    }
    assert "conflicts_reset_job" in outcomes["conflictvisitmaps_all_rows_processed"].description
