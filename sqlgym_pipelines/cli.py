"""The seeds' operations: `python -m sqlgym_pipelines.cli lake-sync|lake-validate|lake-monitor|lake-athena-ddl|forecast-sync`.

Runs go through Dagster (the instance in $DAGSTER_HOME), so they show in the UI. The local
stack's endpoints (.local/stack.env) fill in whatever the environment does not set.
"""

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

STACK_ENV = (
    Path(os.environ.get("SQLGYM_LOCAL_DIR") or Path(__file__).resolve().parents[1] / ".local")
    / "stack.env"
)


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _instance():
    import dagster as dg

    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def _keys(tables: str | None):
    import dagster as dg

    from sqlgym_pipelines.defs.postgres_sync.assets import lake_key, sync_config

    names = [t.strip() for t in tables.split(",")] if tables else None
    chosen = [sync_config().table(n) for n in names] if names else sync_config().enabled_tables()
    return [dg.AssetKey(lake_key(t).path) for t in chosen]


def lake_sync(date: str, full: bool, tables: str | None) -> int:
    from sqlgym_pipelines.definitions import defs

    job = defs().resolve_job_def("postgres_sync_full_job" if full else "postgres_sync_job")
    result = job.execute_in_process(
        instance=_instance(),
        partition_key=date,
        asset_selection=_keys(tables),
        raise_on_error=False,
    )
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        meta = {
            k: m.metadata[k].value
            for k in ("rows", "files", "bytes", "duration_s")
            if k in m.metadata
        }
        print(f"  {m.asset_key.path[-1]:20} {date}  {meta}")
    print(("ok" if result.success else "FAILED") + f": {job.name} for {date}")
    return 0 if result.success else 1


def lake_validate(date: str, tables: str | None) -> int:
    from sqlgym_pipelines.definitions import defs

    job = defs().resolve_job_def("postgres_sync_checks_job")
    keys = set(_keys(tables))
    result = job.execute_in_process(
        instance=_instance(), tags={"dagster/partition": date}, raise_on_error=False
    )
    failed = 0
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        ev = event.asset_check_evaluation_data
        if ev.asset_key not in keys:
            continue
        status = "pass" if ev.passed else f"FAIL ({ev.severity.value})"
        failed += not ev.passed and ev.severity.value == "ERROR"
        print(f"  {status:13} {ev.check_name:40} {ev.description or ''}")
    ok = result.success and not failed
    print(("ok" if ok else "FAILED") + f": lake checks for {date}")
    return 0 if ok else 1


def lake_monitor(history: int) -> int:
    from sqlgym_pipelines.defs.postgres_sync.assets import sync_config
    from sqlgym_pipelines.defs.resources import build_resources
    from sqlgym_pipelines.lib.lake_monitor import table_report

    with build_resources()["lake"].process_config_and_initialize_cm() as lake:
        store = lake.store()
    now = dt.datetime.now(dt.UTC)
    print(f"{'table':20} {'last sync':16} {'status':10} {'rows':>10} {'bytes':>12} {'secs':>7} "
          f"{'fails':>5} {'synced through':26} lag")  # fmt: skip
    for table in sync_config().enabled_tables():
        r = table_report(store, table.name, now, history)
        print(f"{table.name:20} {r.last_sync or '-':16} {r.status or 'never':10} {r.rows:>10} "
              f"{r.bytes:>12} {r.duration_s:>7.1f} {r.failures:>5} {r.synced_through or '-':26} "
              f"{r.lag or '-'}")  # fmt: skip
    return 0


def lake_athena_ddl(apply: bool) -> int:
    """Print (or run, on the configured Athena engine) the DDL and _current view of every table."""
    import pyarrow as pa

    from sqlgym_pipelines.defs.postgres_sync.assets import sync_config
    from sqlgym_pipelines.defs.resources import build_resources
    from sqlgym_pipelines.lib import pg
    from sqlgym_pipelines.lib.lake_athena import (
        create_table_ddl,
        current_view_sql,
        register_lake_table,
    )
    from sqlgym_pipelines.lib.lake_writer import SYNCED_AT
    from sqlgym_pipelines.lib.pg_arrow import plan_columns, target_schema
    from sqlgym_pipelines.lib.pg_catalog import table_columns
    from sqlgym_pipelines.lib.sync_config import validate_against_catalog

    resources = build_resources()
    with resources["source_pg"].process_config_and_initialize_cm() as source, \
            resources["lake"].process_config_and_initialize_cm() as lake, \
            resources["athena"].process_config_and_initialize_cm() as athena:  # fmt: skip
        start_year = int(os.environ.get("SQLGYM_PARTITION_START", "2025")[:4])
        with pg.connection(source.url) as conn:
            for t in validate_against_catalog(conn, sync_config()):
                columns = [c for c in table_columns(conn, t.config.schema, t.config.source_table)
                           if c.name in set(t.columns)]  # fmt: skip
                schema = target_schema(plan_columns(columns))
                lake_schema = schema.append(pa.field(SYNCED_AT, pa.timestamp("us", tz="UTC")))
                cursor = t.config.updated_col if not t.config.cursor else None
                args = (t.name, lake_schema, lake.location)
                if apply:
                    register_lake_table(athena, *args, list(t.config.pk), cursor,
                                        t.config.sync_type, start_year=start_year)  # fmt: skip
                    print(f"registered {athena.database}.{t.name} and {t.name}_current")
                    continue
                print(create_table_ddl(*args, athena.database, start_year=start_year) + ";\n")
                print(current_view_sql(t.name, schema.names, list(t.config.pk), cursor,
                                       t.config.sync_type, athena.database) + ";\n")  # fmt: skip
    return 0


ENVIRONMENT_BRANCH = {"production": "main", "dev": "dev"}


def forecast_sync(environment: str | None, git_branch: str | None, mode: str) -> int:
    """The seed's "after a successful deployment" trigger: sync the environment's Neon branch."""
    if git_branch or environment:
        os.environ["SQLGYM_GIT_BRANCH"] = git_branch or ENVIRONMENT_BRANCH[environment]
    from sqlgym_pipelines.definitions import defs
    from sqlgym_pipelines.defs.forecast.assets import TABLE_KEY
    from sqlgym_pipelines.defs.forecast.sensors import JOB, changed_days, requests_for
    from sqlgym_pipelines.defs.partitions import forecast_partitions
    from sqlgym_pipelines.defs.resources import build_resources
    from sqlgym_pipelines.lib import forecast_plan

    resources = build_resources()
    with resources["s3"].process_config_and_initialize_cm() as s3, \
            resources["neon"].process_config_and_initialize_cm() as neon:  # fmt: skip
        target = neon.target()
        print(f"git branch {target.git_branch} -> {target.environment}, Neon {target.neon_branch}")
        if mode == "full":
            bucket = forecast_plan.datalake_bucket(target.environment)
            fs = s3.pyarrow_filesystem()
            days = set().union(*[forecast_plan.days_in_file(fs, f)
                                 for f in forecast_plan.forecast_files(s3.get_client(), bucket)])  # fmt: skip
        else:
            days = changed_days(s3, neon)
    valid = set(forecast_partitions.get_partition_keys())
    requests, outside = requests_for(days, valid, sync_type=mode, key_prefix=None)
    if outside:
        print(f"skipped (no partition): {', '.join(map(str, outside))}")
    if not requests:
        print("ok: every business_date is in sync")
        return 0
    job = defs().resolve_job_def(JOB)
    failed = False
    for request in requests:
        result = job.execute_in_process(
            instance=_instance(), tags=request.tags, run_config=request.run_config,
            raise_on_error=False,
        )  # fmt: skip
        span = f"{request.tags['dagster/asset_partition_range_start']}..{request.tags['dagster/asset_partition_range_end']}"
        mats = result.asset_materializations_for_node(TABLE_KEY.to_python_identifier())
        meta = {k: v.value for k, v in mats[0].metadata.items()} if mats else {}
        summary = {k: meta[k] for k in ("inserted", "updated", "unchanged", "deleted") if k in meta}
        print(f"  {span}: {'ok' if result.success else 'FAILED'} {summary}")
        failed |= not result.success
    print(("FAILED" if failed else "ok") + f": forecast {mode} sync of {len(days)} day(s)")
    return 1 if failed else 0


def etl_manual(config_path: str | None, overrides: dict, validate_only: bool) -> int:
    """The seed's direct script execution: the ETL job from etl-config.json and/or flags."""
    from sqlgym_pipelines.definitions import defs
    from sqlgym_pipelines.defs.athena_to_neon.jobs import CONNECTION_ENV
    from sqlgym_pipelines.lib import etl_params

    params = etl_params.from_config_file(config_path) if config_path else etl_params.parse()
    values = {
        "target_branch": params.target_branch,
        "data_mode": params.data_mode,
        "table_filter": ",".join([*params.tables, *params.states]),
        "date_range_days": params.date_range_days,
        **{k: v for k, v in overrides.items() if v is not None},
        "validate_only": validate_only,
    }
    etl_params.parse(*(values[k] for k in ("target_branch", "data_mode", "table_filter",
                                          "date_range_days")))  # fmt: skip
    if params.connection_string:  # handed to the job by environment, never in run config
        os.environ[CONNECTION_ENV] = params.connection_string
    job = defs().resolve_job_def("athena_to_neon_etl_job")
    result = job.execute_in_process(
        instance=_instance(),
        run_config={"ops": {"etl_configuration": {"config": values}}},
        raise_on_error=False,
    )
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            print(f"  {event.step_key}: {event.step_failure_data.error.message.strip()[:500]}")
    from sqlgym_pipelines.lib.etl_report import location

    print(f"artifacts: {location(result.run_id)}")
    print(("ok" if result.success else "FAILED") + f": manual ETL ({values['data_mode']}) "
          f"to {values['target_branch']}")  # fmt: skip
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    if STACK_ENV.exists():
        load_dotenv(STACK_ENV, override=False)  # what the user exported wins
    parser = argparse.ArgumentParser(prog="python -m sqlgym_pipelines.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("lake-sync", help="sync the lake for a date (make invoke / invoke-full)")
    sync.add_argument("--date", default=_today())
    sync.add_argument("--full", action="store_true", help="re-extract whole days (replace mode)")
    sync.add_argument("--tables", help="comma-separated config table names (default: all)")
    val = sub.add_parser(
        "lake-validate", help="run the lake's data checks for a date (make validate)"
    )
    val.add_argument("--date", default=_today())
    val.add_argument("--tables")
    mon = sub.add_parser(
        "lake-monitor", help="sync history per table from _metadata (make monitor)"
    )
    mon.add_argument("--history", type=int, default=24, help="records per table to read")
    ddl = sub.add_parser(
        "lake-athena-ddl", help="Athena DDL + <table>_current views (make athena-ddl)"
    )
    ddl.add_argument(
        "--apply", action="store_true", help="run them on the configured Athena engine"
    )
    fc = sub.add_parser(
        "forecast-sync", help="sync forecast_data for an environment (make forecast-sync ENV=)"
    )
    fc.add_argument(
        "--env", choices=sorted(ENVIRONMENT_BRANCH), help="production -> main, dev -> dev"
    )
    fc.add_argument("--git-branch", help="a git branch instead (e.g. preview/pr-12)")
    fc.add_argument("--mode", choices=("incremental", "full"), default="incremental")
    etl = sub.add_parser("etl-manual", help="manual Athena -> Neon ETL (make etl-manual CONFIG=)")
    etl.add_argument("--config", help="the seed's etl-config.json")
    etl.add_argument("--target-branch")
    etl.add_argument("--data-mode", choices=("full", "schema-only", "test-data"))
    etl.add_argument("--table-filter")
    etl.add_argument("--date-range-days", type=int)
    etl.add_argument("--validate-only", action="store_true", help="the seed's validate:etl")
    args = parser.parse_args(argv)
    if args.command == "etl-manual":
        overrides = {"target_branch": args.target_branch, "data_mode": args.data_mode,
                     "table_filter": args.table_filter, "date_range_days": args.date_range_days}  # fmt: skip
        return etl_manual(args.config, overrides, args.validate_only)
    if args.command == "forecast-sync":
        return forecast_sync(args.env, args.git_branch, args.mode)
    if args.command == "lake-sync":
        return lake_sync(args.date, args.full, args.tables)
    if args.command == "lake-validate":
        return lake_validate(args.date, args.tables)
    if args.command == "lake-athena-ddl":
        return lake_athena_ddl(args.apply)
    return lake_monitor(args.history)


if __name__ == "__main__":
    sys.exit(main())
