"""The manual Athena -> Neon ETL (seed 001) as a launchpad job of the seed's five steps:
configuration -> schema -> data -> validation -> reporting, each an op with its own logs."""

import datetime as dt
import json
import os
import re
import time

import dagster as dg
from pydantic import Field

from sqlgym_pipelines.defs.forecast.assets import batch_size, location
from sqlgym_pipelines.defs.run_helpers import failing_fast
from sqlgym_pipelines.lib import (
    etl_params,
    etl_report,
    etl_steps,
    etl_validation,
    forecast_athena,
    pg,
)
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.resources.athena import AthenaResource
from sqlgym_pipelines.resources.neon import NeonResource
from sqlgym_pipelines.resources.s3 import S3Resource

CONNECTION_ENV = "SQLGYM_ETL_CONNECTION_STRING"  # the seed's connectionString, never run config
_ERRORS = (ConfigError, QueryFailed)


class EtlRunConfig(dg.Config):
    """The seed's workflow_dispatch inputs."""

    target_branch: str = Field(default="", description="Neon branch to write; empty = main")
    data_mode: str = Field(default="full", description="full | schema-only | test-data")
    table_filter: str = Field(default="", description="tables and/or states, e.g. 'CA,TX'")
    date_range_days: int = Field(default=0, description="days of history; 0 = all")
    create_branch: bool = Field(default=True, description="create a missing branch from main")
    performance_threshold_ms: float = Field(default=1000.0, description="sample query limit")
    validate_only: bool = Field(
        default=False, description="the seed's validate:etl: check the branch, change nothing"
    )


def _params(inputs: dict) -> etl_params.EtlParams:
    """The run's parameters from the configuration step's output (the launchpad's values)."""
    return etl_params.parse(
        inputs["target_branch"], inputs["data_mode"], inputs["table_filter"],
        inputs["date_range_days"], os.environ.get(CONNECTION_ENV) or None,
    )  # fmt: skip


DATA_CHECKS = ("record_count", "schema", "integrity", "date_range_coverage", "index_verification")


def branch_table_key(branch: str) -> dg.AssetKey:
    """The branch's forecast_data as an asset: its checks show on that asset in the UI."""
    return dg.AssetKey(["neon_branch", re.sub(r"[^A-Za-z0-9_]", "_", branch), "forecast_data"])


def _url(params: etl_params.EtlParams, neon: NeonResource) -> str:
    return params.connection_string or neon.connection_url(params.target_branch)


@dg.op(description="Check the parameters, resolve (and if asked, create) the target branch.")
def etl_configuration(
    context: dg.OpExecutionContext, config: EtlRunConfig, neon: NeonResource
) -> dict:
    inputs = config.model_dump()
    with failing_fast(_ERRORS):
        params = _params(inputs)
        if params.connection_string:
            context.log.info(f"target: {pg.redact(params.connection_string)} (connection string)")
        else:
            parent = "main" if config.create_branch and params.target_branch != "main" else None
            existed = params.target_branch in {b.name for b in neon.list_branches()}
            branch = neon.ensure_branch(params.target_branch, parent)
            context.log.info(f"target Neon branch {branch.name} (parent {branch.parent or '-'})")
            if not existed and params.data_mode != "full":
                # a new branch starts as a copy of its parent: production rows must not stay
                with pg.connection(neon.connection_url(branch.name)) as conn:
                    emptied = etl_steps.empty_copied_tables(conn)
                context.log.info(
                    f"{params.data_mode}: emptied the rows copied from {parent}: {emptied}"
                )
    return {"inputs": inputs, "params": params.as_report(), "started": time.time()}


@dg.op(description="Create the mode's tables and indexes.")
def etl_schema(context: dg.OpExecutionContext, neon: NeonResource, setup: dict) -> dict:
    if setup["inputs"]["validate_only"]:
        context.log.info("validate only: the schema is left as it is")
        return {**setup, "indexes_created": []}
    with failing_fast(_ERRORS):
        params = _params(setup["inputs"])
        with pg.connection(_url(params, neon)) as conn:
            created = etl_steps.create_schema(conn, params)
    context.log.info(f"{params.data_mode}: tables ready, indexes created now: {created or 'none'}")
    return {**setup, "indexes_created": created}


@dg.op(description="Load the data of the mode (Athena upsert, nothing, or synthetic rows).")
def etl_data(
    context: dg.OpExecutionContext, neon: NeonResource, athena: AthenaResource, schema: dict
) -> dict:
    today = dt.datetime.now(dt.UTC).date()
    with failing_fast(_ERRORS):
        params = _params(schema["inputs"])
        url = _url(params, neon)
        if schema["inputs"]["validate_only"]:
            result = etl_steps.DataResult(rows_per_table={})
            context.log.info("validate only: no rows are loaded")
        elif params.data_mode == "full":
            forecast_athena.ensure_tables(athena, location(neon))
            result = etl_steps.load_full(url, athena, params, today, batch_size(), context.log.info)
        elif params.data_mode == "test-data":
            result = etl_steps.load_test_data(url, params, today, context.run_id, context.log.info)
        else:
            result = etl_steps.DataResult(rows_per_table={"forecast_data": 0})
            context.log.info("schema-only: no rows are loaded")
    if not schema["inputs"]["validate_only"] and params.data_mode != "schema-only":
        context.log_event(
            dg.AssetMaterialization(
                asset_key=branch_table_key(params.target_branch),
                metadata={
                    "branch": params.target_branch,
                    "data_mode": params.data_mode,
                    "inserted": result.inserted,
                    "updated": result.updated,
                    "unchanged": result.unchanged,
                    "days": result.days,
                },  # fmt: skip
            )
        )
    return {**schema, "data": {**result.__dict__, "seconds": round(result.seconds, 3)}}


@dg.op(
    description="Validate the branch: existence, counts, schema, integrity, dates, indexes, speed."
)
def etl_validation_step(
    context: dg.OpExecutionContext, neon: NeonResource, athena: AthenaResource, data: dict
) -> dict:
    today = dt.datetime.now(dt.UTC).date()
    with failing_fast(_ERRORS):
        params = _params(data["inputs"])
        expected_rows, expected_days = None, []
        if params.data_mode == "full":
            forecast_athena.ensure_tables(athena, location(neon))
            per_day = etl_steps.athena_days(athena, params, today)
            expected_rows, expected_days = sum(per_day.values()), sorted(per_day)
        elif params.data_mode == "test-data" and not data["inputs"]["validate_only"]:
            expected_rows = data["data"]["rows_per_table"]["forecast_data"]
            days = params.date_range_days or 7
            expected_days = [today - dt.timedelta(days=n) for n in range(days)]
        with pg.connection(_url(params, neon)) as conn:
            checks = etl_validation.validate(
                conn, params, today, expected_rows=expected_rows, expected_days=expected_days,
                threshold_ms=data["inputs"]["performance_threshold_ms"],
            )  # fmt: skip
    for check in checks:
        context.log.info(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.details}")
        if check.name in DATA_CHECKS:  # about the data: asset checks of the branch's table
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=branch_table_key(params.target_branch),
                    check_name=check.name,
                    passed=check.passed,
                    metadata={
                        "details": dg.MetadataValue.json(
                            json.loads(json.dumps(check.details, default=str))
                        )
                    },
                    description=f"{params.data_mode} ETL to {params.target_branch}",
                )
            )
    return {**data, "validation": [c.as_dict() for c in checks]}


@dg.op(description="Write etl-manual.log, etl-report.json, etl-validation-report.json.")
def etl_reporting(context: dg.OpExecutionContext, s3: S3Resource, validated: dict) -> dg.Output:
    checks = validated["validation"]
    status = "success" if all(c["status"] == "pass" for c in checks) else "failed"
    report = {
        "run_id": context.run_id,
        "parameters": validated["params"],
        "branch": validated["params"]["target_branch"],
        "status": status,
        "rows_per_table": validated["data"]["rows_per_table"],
        "data": {k: v for k, v in validated["data"].items() if k != "rows_per_table"},
        "indexes_created_with_schema": validated["indexes_created"],
        "duration_s": round(time.time() - validated["started"], 3),
    }
    logs = [
        f"{dt.datetime.fromtimestamp(e.timestamp, dt.UTC):%Y-%m-%dT%H:%M:%SZ} {e.step_key or '-'} "
        f"{e.user_message}"
        for e in context.instance.all_logs(context.run_id)
        if e.user_message
    ]
    where = etl_report.location(context.run_id)
    uris = etl_report.write(
        where,
        {
            "etl-manual.log": "\n".join(logs) + "\n",
            "etl-report.json": etl_report.as_json(report),
            "etl-validation-report.json": etl_report.as_json({"status": status, "checks": checks}),
        },
        s3.get_client() if where.startswith("s3://") else None,
    )
    summary = "\n".join(f"- {'✅' if c['status'] == 'pass' else '❌'} {c['name']}" for c in checks)
    if status != "success":
        raise dg.Failure(
            description=f"validation failed: {', '.join(c['name'] for c in checks if c['status'] != 'pass')}",
            metadata={
                "artifacts": dg.MetadataValue.json(uris),
                "summary": dg.MetadataValue.md(summary),
            },
            allow_retries=False,
        )
    return dg.Output(
        report,
        metadata={
            "status": status,
            "branch": report["branch"],
            "data_mode": report["parameters"]["data_mode"],
            "rows": dg.MetadataValue.json(report["rows_per_table"]),
            "artifacts": dg.MetadataValue.json(uris),
            "summary": dg.MetadataValue.md(summary),
        },
    )


@dg.definitions
def athena_to_neon_jobs() -> dg.Definitions:
    @dg.job(
        name="athena_to_neon_etl_job",
        description="Manual Athena -> Neon ETL (seed 001): set target_branch, data_mode, "
        "table_filter, date_range_days in the etl_configuration op's config.",
        tags={"sqlgym/pipeline": "athena_to_neon"},
    )
    def athena_to_neon_etl_job():
        setup = etl_configuration()
        etl_reporting(etl_validation_step(etl_data(etl_schema(setup))))

    return dg.Definitions(jobs=[athena_to_neon_etl_job])
