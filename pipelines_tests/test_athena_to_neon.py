"""The manual Athena -> Neon ETL, each mode end to end on the local stack (Athena on DuckDB,
a local Neon branch), its validation report on a broken branch, branch lifecycle, secrets."""

import datetime as dt
import io
import json
import uuid

import dagster as dg
import pyarrow.parquet as pq
import pytest

from pipelines_tests.run_events import check_evaluations
from sqlgym_pipelines.defs import resources as resources_defs
from sqlgym_pipelines.defs.athena_to_neon import branches, jobs
from sqlgym_pipelines.lib import etl_params, etl_report, pg
from sqlgym_pipelines.lib.errors import BranchError
from sqlgym_pipelines.lib.etl_params import EtlParamError
from sqlgym_pipelines.lib.neon_local import LocalNeon
from sqlgym_pipelines.local.demo_forecast import forecast_rows
from sqlgym_pipelines.local.provision import aws_client

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def etl(stack, s3_bucket, tmp_path, monkeypatch):
    """Definitions over a fresh bucket of forecasts (10 days to today, 5 states); the test's
    branches are deleted afterwards."""
    monkeypatch.setenv("SQLGYM_DATALAKE_BUCKET", s3_bucket)
    monkeypatch.setenv("SQLGYM_ETL_ARTIFACTS", str(tmp_path / "artifacts"))
    table = forecast_rows([TODAY - dt.timedelta(days=n) for n in range(10)], 10, 4, seed=3)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    aws_client(stack, "s3").put_object(
        Bucket=s3_bucket, Key="forecast/f.parquet", Body=buffer.getvalue()
    )
    defs = dg.Definitions.merge(
        jobs.athena_to_neon_jobs(), branches.neon_branch_jobs(), resources_defs.resources()
    )
    made: list[str] = []

    def branch() -> str:
        made.append(f"etl-test-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield defs, branch, table, tmp_path / "artifacts"
    neon = LocalNeon(stack.pg_url)
    existing = {b.name for b in neon.list_branches()}
    for name in made:
        if name in existing:
            neon.delete_branch(name)


def run_etl(defs, **config) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("athena_to_neon_etl_job")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            instance=instance,
            run_config={"ops": {"etl_configuration": {"config": config}}},
            raise_on_error=False,
        )


def query(stack, branch: str, sql: str, args=()):
    with pg.connection(LocalNeon(stack.pg_url).connection_uri(branch)) as conn:
        return conn.execute(sql, args).fetchall()


def test_full_mode_loads_athenas_rows_for_the_filters(etl, stack):
    defs, new_branch, table, artifacts = etl
    branch = new_branch()
    result = run_etl(
        defs, target_branch=branch, data_mode="full", table_filter="CA,tx", date_range_days=3
    )
    assert result.success
    report = result.output_for_node("etl_reporting")
    floor = TODAY - dt.timedelta(days=3)
    expected = [
        r for r in table.to_pylist() if r["state"] in ("CA", "TX") and r["business_date"] >= floor
    ]
    assert report["rows_per_table"] == {"forecast_data": len(expected)} and expected
    rows = query(
        stack,
        branch,
        "SELECT state, business_date, restaurant_id, inventory_item_id FROM forecast_data",
    )
    assert sorted(rows) == sorted((r["state"], r["business_date"], r["restaurant_id"],
                                   r["inventory_item_id"]) for r in expected)  # fmt: skip
    assert report["data"]["indexes_built_after_load"] is True
    indexes = {
        r[0]
        for r in query(
            stack, branch, "SELECT indexname FROM pg_indexes WHERE tablename = 'forecast_data'"
        )
    }
    assert {"idx_forecast_business_date", "idx_forecast_dma", "idx_forecast_composite"} <= indexes
    files = {p.name: p for p in (artifacts / result.run_id).iterdir()}
    assert set(files) == {"etl-manual.log", "etl-report.json", "etl-validation-report.json"}
    validation = json.loads(files["etl-validation-report.json"].read_text())
    assert validation["status"] == "success"
    assert {c["name"] for c in validation["checks"]} == {
        "table_existence", "record_count", "schema", "integrity", "date_range_coverage",
        "index_verification", "performance",
    }  # fmt: skip
    count = next(c for c in validation["checks"] if c["name"] == "record_count")
    assert count["rows"] == count["expected"] == len(expected)
    evaluations = check_evaluations(result)
    assert set(evaluations) == set(jobs.DATA_CHECKS)
    assert {ev.asset_key for ev in evaluations.values()} == {jobs.branch_table_key(branch)}
    assert all(ev.passed for ev in evaluations.values())
    text = "".join(p.read_text() for p in files.values())
    password = stack.pg_url.split(":")[2].split("@")[0]
    assert password not in text and "etl_data" in files["etl-manual.log"].read_text()


def test_schema_only_creates_tables_and_key_indexes_and_copies_no_rows(etl, stack):
    defs, new_branch, _, _ = etl
    branch = new_branch()
    result = run_etl(defs, target_branch=branch, data_mode="schema-only")
    assert result.success
    assert query(stack, branch, "SELECT count(*) FROM forecast_data") == [(0,)]
    indexes = {
        r[0]
        for r in query(
            stack, branch, "SELECT indexname FROM pg_indexes WHERE tablename = 'forecast_data'"
        )
    }
    assert not {i for i in indexes if i.startswith("idx_forecast")}
    assert len(indexes) == 2  # the primary key and the natural key's unique index


def test_test_data_mode_generates_valid_tagged_rows(etl, stack):
    defs, new_branch, _, _ = etl
    branch = new_branch()
    result = run_etl(
        defs, target_branch=branch, data_mode="test-data", table_filter="NY,WA", date_range_days=4
    )
    assert result.success
    rows = query(
        stack, branch,
        "SELECT count(*), count(*) FILTER (WHERE y_05 <= y_50 AND y_50 <= y_95), "
        "count(DISTINCT business_date), array_agg(DISTINCT state ORDER BY state), "
        "count(DISTINCT test_scenario_id), bool_and(is_generated) FROM forecast_data",
    )  # fmt: skip
    total, ordered, days, states, scenarios, generated = rows[0]
    assert total == ordered > 0 and days == 4 and states == ["NY", "WA"]
    assert scenarios == 1 and generated is True
    scenario = query(stack, branch, "SELECT scenario_id, rows_generated FROM test_scenarios")
    assert scenario == [(f"etl-{result.run_id[:8]}", total)]


def test_validation_report_fails_on_a_broken_branch(etl, stack):
    defs, new_branch, _, artifacts = etl
    branch = new_branch()
    assert run_etl(defs, target_branch=branch, data_mode="full").success
    middle = TODAY - dt.timedelta(days=5)
    with pg.connection(LocalNeon(stack.pg_url).connection_uri(branch)) as conn:
        conn.execute("DROP INDEX idx_forecast_state")
        conn.execute("ALTER TABLE forecast_data DROP CONSTRAINT "
                     "forecast_data_restaurant_id_inventory_item_id_business_date_key")  # fmt: skip
        conn.execute("INSERT INTO forecast_data (restaurant_id, inventory_item_id, business_date, "
                     "state, y_50) SELECT restaurant_id, inventory_item_id, business_date, state, y_50 "
                     "FROM forecast_data LIMIT 1")  # fmt: skip
        conn.execute("DELETE FROM forecast_data WHERE business_date = %s", (middle,))
    result = run_etl(defs, target_branch=branch, data_mode="full", validate_only=True)
    assert not result.success
    report = json.loads((artifacts / result.run_id / "etl-validation-report.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["status"] == "failed"
    assert checks["integrity"]["duplicate_keys"] == 1
    assert checks["date_range_coverage"]["gaps"] == [str(middle)]
    assert checks["index_verification"]["problems"] == {"idx_forecast_state": "missing"}
    assert checks["index_verification"]["natural_key_unique_index"] == "missing or invalid"
    assert checks["record_count"]["rows"] == checks["record_count"]["expected"] - 40 + 1
    assert checks["table_existence"]["status"] == checks["schema"]["status"] == "pass"


def test_parameters_are_checked_before_anything_is_touched(etl, stack, tmp_path):
    defs, new_branch, _, _ = etl
    branch = new_branch()
    result = run_etl(defs, target_branch=branch, data_mode="everything")
    assert not result.success
    assert branch not in {b.name for b in LocalNeon(stack.pg_url).list_branches()}
    for bad, message in [
        (dict(data_mode="fast"), "data_mode 'fast': use one of full, schema-only, test-data"),
        (dict(date_range_days=-2), "date_range_days -2"),
        (dict(table_filter="CA,Texas"), "table_filter: 'Texas' is neither a table"),
        (dict(target_branch="feature//x"), "target_branch 'feature//x'"),
    ]:
        with pytest.raises(EtlParamError, match=message):
            etl_params.parse(**bad)
    config = tmp_path / "etl-config.json"
    config.write_text(json.dumps({"targetBranch": "feature/x", "dataMode": "test-data",
                                  "tableFilter": "CA,TX", "dateRangeDays": 30}))  # fmt: skip
    params = etl_params.from_config_file(config)
    assert (params.target_branch, params.data_mode, params.states, params.date_range_days) == (
        "feature/x",
        "test-data",
        ("CA", "TX"),
        30,
    )
    config.write_text(json.dumps({"targetBranch": "x", "dataModus": "full"}))
    with pytest.raises(EtlParamError, match="unknown field"):
        etl_params.from_config_file(config)


def test_branch_lifecycle_jobs_and_refusals(etl, stack):
    defs, new_branch, _, _ = etl
    name = new_branch()

    def run(job_name: str, op: str, **config):
        job = defs.resolve_job_def(job_name)
        with dg.instance_for_test() as instance:
            return job.execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"ops": {op: {"config": {"name": name, **config}}}},
            )  # fmt: skip

    created = run("neon_branch_create_job", "create_neon_branch", parent="main")
    assert created.success and name in {b.name for b in LocalNeon(stack.pg_url).list_branches()}
    shown = run("neon_branch_connection_job", "neon_branch_connection").output_for_node(
        "neon_branch_connection"
    )
    password = stack.pg_url.split(":")[2].split("@")[0]
    assert "***" in shown and password not in shown
    assert run("neon_branch_delete_job", "delete_neon_branch").success
    assert name not in {b.name for b in LocalNeon(stack.pg_url).list_branches()}
    job = defs.resolve_job_def("neon_branch_delete_job")
    with dg.instance_for_test() as instance:
        refused = job.execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"delete_neon_branch": {"config": {"name": "main"}}}},
        )  # fmt: skip
    assert not refused.success
    with pytest.raises(BranchError):
        LocalNeon(stack.pg_url).delete_branch("main")


def test_secrets_are_scrubbed_from_artifacts():
    text = etl_report.scrub(
        "postgresql://neondb_owner:s3cr3t@ep-x.neon.tech/neondb api_key=abc123 "
        '{"password": "hunter2"} host=h password=pw2'
    )
    for secret in ("s3cr3t", "abc123", "hunter2", "pw2"):
        assert secret not in text


def test_direct_script_execution_from_etl_config_json(etl, stack, tmp_path, capsys):
    from sqlgym_pipelines import cli

    _, new_branch, _, artifacts = etl
    branch = new_branch()
    config = tmp_path / "etl-config.json"
    config.write_text(json.dumps({"targetBranch": branch, "dataMode": "test-data",
                                  "tableFilter": "CA", "dateRangeDays": 2}))  # fmt: skip
    assert cli.main(["etl-manual", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"ok: manual ETL (test-data) to {branch}" in out
    assert query(stack, branch, "SELECT count(DISTINCT business_date), min(state), max(state) "
                 "FROM forecast_data") == [(2, "CA", "CA")]  # fmt: skip
    assert cli.main(["etl-manual", "--config", str(config), "--validate-only"]) == 0
    config.write_text(json.dumps({"targetBranch": branch, "dataMode": "bulk"}))
    with pytest.raises(EtlParamError, match="data_mode 'bulk'"):
        cli.main(["etl-manual", "--config", str(config)])


def test_artifacts_can_go_to_an_s3_prefix(etl, stack, s3_bucket, monkeypatch):
    defs, new_branch, _, _ = etl
    monkeypatch.setenv("SQLGYM_ETL_ARTIFACTS", f"s3://{s3_bucket}/etl-runs")
    result = run_etl(defs, target_branch=new_branch(), data_mode="schema-only")
    assert result.success
    s3 = aws_client(stack, "s3")
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"etl-runs/{result.run_id}/")
    names = sorted(o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", []))
    assert names == ["etl-manual.log", "etl-report.json", "etl-validation-report.json"]
    body = s3.get_object(Bucket=s3_bucket, Key=f"etl-runs/{result.run_id}/etl-report.json")
    report = json.loads(body["Body"].read())
    assert report["status"] == "success" and report["parameters"]["data_mode"] == "schema-only"
    password = stack.pg_url.split(":")[2].split("@")[0]
    log = s3.get_object(Bucket=s3_bucket, Key=f"etl-runs/{result.run_id}/etl-manual.log")
    assert password not in log["Body"].read().decode()
