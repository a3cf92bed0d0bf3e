"""The conflict report's jobs: the pipeline with max_concurrency parallel chunks, the seed's
connection tests (validate_config, test_postgres, test_snowflake), and the manual reset."""

import datetime as dt
import os
import pkgutil

import dagster as dg
from pydantic import Field

from sqlgym_pipelines.defs.conflicts.assets import TABLE_KEY, VISITS_KEY
from sqlgym_pipelines.defs.partitions import daily_partitions
from sqlgym_pipelines.lib import conflict_plan, conflict_status, conflict_task02, conflict_visits
from sqlgym_pipelines.lib.errors import ConfigError, SqlgymError
from sqlgym_pipelines.resources.postgres import PostgresResource
from sqlgym_pipelines.resources.snowflake import SnowflakeResource


def max_concurrency() -> int:
    """Read when definitions load (the executor needs it); the other settings at run time,
    so that validate_config can report them."""
    raw = os.environ.get("SQLGYM_CONFLICTS_MAX_CONCURRENCY") or "5"
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"SQLGYM_CONFLICTS_MAX_CONCURRENCY={raw!r} is not a positive integer")
    return int(raw)


@dg.op(description="The seed's validate_config: every conflict setting, all problems at once.")
def validate_config(context: dg.OpExecutionContext) -> dict:
    checks = {
        "chunk settings": lambda: conflict_plan.ChunkSettings.from_env(),
        "average speed (mph)": conflict_task02.average_mph,
        "Postgres schema": conflict_task02.schema_name,
        "source table": conflict_visits.source_table,
    }
    values, problems = {}, []
    for name, read in checks.items():
        try:
            values[name] = str(read())
        except SqlgymError as exc:
            problems.append(f"{name}: {exc}")
    if not os.environ.get("SQLGYM_TARGET_PG_URL"):
        problems.append("SQLGYM_TARGET_PG_URL (the Postgres of conflictvisitmaps) is not set")
    if problems:
        raise dg.Failure("conflict report is misconfigured:\n" + "\n".join(problems))
    for name, value in values.items():
        context.log.info(f"{name}: {value}")
    return values


@dg.op(description="The seed's test_postgres: connect, and create the schema if it may.")
def test_postgres(context: dg.OpExecutionContext, target_pg: PostgresResource, settings: dict):
    schema = settings["Postgres schema"]
    try:
        version = target_pg.server_version()
        with target_pg.get_connection() as conn:
            conflict_task02.ensure_schema(conn, schema)
    except Exception as exc:
        raise dg.Failure(f"Postgres {target_pg.redacted_url}: {exc}") from exc
    context.log.info(f"Postgres {version} at {target_pg.redacted_url}; schema {schema} ready")


@dg.op(description="The seed's test_snowflake: connect and find the visits table's columns.")
def test_snowflake(context: dg.OpExecutionContext, snowflake: SnowflakeResource, settings: dict):
    table = settings["source table"]
    try:
        columns = conflict_visits.check_source(snowflake.fetch_arrow, table)
    except Exception as exc:
        raise dg.Failure(f"Snowflake ({snowflake.mode}): {exc}") from exc
    context.log.info(f"Snowflake ({snowflake.mode}): {table} has {', '.join(columns)}")


class ResetConfig(dg.Config):
    """The seed's manual reset (UpdateFlag = NULL where it is 1), guarded."""

    confirm: bool = Field(default=False, description="must be true: nothing changes otherwise")
    start_date: str = Field(default="", description="YYYY-MM-DD; empty = every date")
    end_date: str = Field(default="", description="YYYY-MM-DD, exclusive; with start_date")


@dg.op(description="Release rows left locked (UpdateFlag = 1); needs confirm: true.")
def reset_update_flags(
    context: dg.OpExecutionContext, config: ResetConfig, target_pg: PostgresResource
) -> None:
    schema = conflict_task02.schema_name()
    try:
        start = dt.date.fromisoformat(config.start_date) if config.start_date else None
        end = dt.date.fromisoformat(config.end_date) if config.end_date else None
    except ValueError as exc:
        raise dg.Failure(f"start_date/end_date must be YYYY-MM-DD: {exc}") from exc
    if (start is None) != (end is None):
        raise dg.Failure("give both start_date and end_date, or neither (every date)")
    with target_pg.get_connection() as conn:
        if not config.confirm:
            locked = conflict_status.status_counts(
                conn, schema, start or dt.date.min, end or dt.date.max
            )["locked"]
            raise dg.Failure(
                f"not confirmed: {locked} row(s) of {schema}.conflictvisitmaps are locked; "
                "run again with confirm: true to release them"
            )
        released = conflict_status.reset_locks(conn, schema, start, end)
    context.log.info(f"released {released} locked row(s) of {schema}.conflictvisitmaps")
    context.add_output_metadata({"released": released})


def _preload_modules() -> list[str]:
    import sqlgym_pipelines.defs as defs_package

    found = pkgutil.walk_packages(defs_package.__path__, prefix="sqlgym_pipelines.defs.")
    return ["dagster", "sqlgym_pipelines.definitions", *sorted(m.name for m in found)]


@dg.definitions
def conflicts_jobs() -> dg.Definitions:
    @dg.job(description="Tests the conflict report's configuration, Postgres and Snowflake.")
    def conflicts_health_job():
        settings = validate_config()
        test_postgres(settings)
        test_snowflake(settings)

    @dg.job(description="The seed's manual reset of UpdateFlag locks, with confirmation.")
    def conflicts_reset_job():
        reset_update_flags()

    pipeline = dg.define_asset_job(
        "conflicts_job",
        selection=dg.AssetSelection.assets(VISITS_KEY, TABLE_KEY),
        description="Task 01 then Task 02, chunks SQLGYM_CONFLICTS_MAX_CONCURRENCY at a time.",
        # A chunk step is a process: forked from a server that has imported Dagster and every
        # defs module (pyarrow, polars, boto3...), it starts in well under a second.
        executor_def=dg.multiprocess_executor.configured(
            {
                "max_concurrent": max_concurrency(),
                "start_method": {"forkserver": {"preload_modules": _preload_modules()}},
            }
        ),
    )
    checks_only = dg.define_asset_job(
        "conflicts_checks_job",
        selection=dg.AssetSelection.checks_for_assets(TABLE_KEY),
        partitions_def=daily_partitions,
        description="Only the status checks of conflictvisitmaps (CI, after a manual fix).",
    )
    return dg.Definitions(jobs=[conflicts_health_job, conflicts_reset_job, pipeline, checks_only])
