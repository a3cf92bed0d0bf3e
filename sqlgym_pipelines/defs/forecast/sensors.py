"""The seed's triggers: S3 arrivals (the event notification), every 6 hours (incremental), and
the job that deployments and people launch (`make forecast-sync`, the launchpad)."""

import datetime as dt
import hashlib
import os

import dagster as dg

from sqlgym_pipelines.defs.forecast.assets import ATHENA_KEY, FILES_KEY, TABLE_KEY
from sqlgym_pipelines.defs.partitions import forecast_partitions
from sqlgym_pipelines.lib import forecast_plan, forecast_sync, pg
from sqlgym_pipelines.lib.s3_files import ArrivalCursor, S3File, new_arrivals
from sqlgym_pipelines.resources.neon import NeonResource
from sqlgym_pipelines.resources.s3 import S3Resource

JOB = "forecast_sync_job"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def requests_for(
    days: set[dt.date], valid: set[str], *, sync_type: str, key_prefix: str | None
) -> tuple[list[dg.RunRequest], list[dt.date]]:
    """One run per run of consecutive days (a single-run backfill of that range); days outside
    the partitions are returned apart. key_prefix makes the run keys (None: no run key)."""
    inside = {d for d in days if d.isoformat() in valid}
    requests = []
    for first, last in forecast_plan.contiguous(inside):
        tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
        requests.append(
            dg.RunRequest(
                run_key=f"{key_prefix}:{first}:{last}" if key_prefix else None,
                tags=tags,
                run_config={
                    "ops": {TABLE_KEY.to_python_identifier(): {"config": {"sync_type": sync_type}}}
                },
            )
        )
    return requests, sorted(days - inside)


def _valid_keys(instance) -> set[str]:
    return set(forecast_partitions.get_partition_keys(dynamic_partitions_store=instance))


def _digest(files: list[S3File]) -> str:
    text = "\n".join(sorted(f"{f.key}@{f.etag}" for f in files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_days(s3: S3Resource, neon: NeonResource) -> set[dt.date]:
    """Days whose files changed since that day's last successful sync (forecast_sync_status)."""
    target = neon.target()
    files = forecast_plan.forecast_files(
        s3.get_client(), forecast_plan.datalake_bucket(target.environment)
    )
    with pg.connection(neon.connection_url(neon.ensure_target(target).name)) as conn:
        forecast_sync.ensure_schema(conn, indexes=False)
        synced = forecast_sync.last_successes(conn)
        loaded = forecast_sync.loaded_days(conn)
    filesystem = s3.pyarrow_filesystem()  # footers only: a never-synced day counts as changed
    per_file = [(f, forecast_plan.days_in_file(filesystem, f)) for f in files]
    in_files = set().union(*(days for _, days in per_file))
    # a day Neon holds that no file has any more: its sync deletes the rows
    return set(forecast_plan.changed_days(per_file, synced)) | (loaded - in_files)


def _running() -> bool:
    return os.environ.get("SQLGYM_SENSORS_DEFAULT_STATUS", "").lower() == "running"


def _status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if _running() else dg.DefaultSensorStatus.STOPPED


@dg.definitions
def forecast_triggers() -> dg.Definitions:
    job = dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.assets(ATHENA_KEY, TABLE_KEY),
        partitions_def=forecast_partitions,
        description="Athena -> Neon forecast_data for the run's business_dates (+ checks).",
    )

    @dg.sensor(
        name="forecast_arrivals_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=_status(),
        description="forecast/*.parquet created or changed -> sync the business_dates it holds.",
    )
    def forecast_arrivals_sensor(
        context: dg.SensorEvaluationContext, s3: S3Resource, neon: NeonResource
    ):
        bucket = forecast_plan.datalake_bucket(neon.target().environment)
        cursor = ArrivalCursor.parse(context.cursor)
        fresh, advanced = new_arrivals(
            forecast_plan.forecast_files(s3.get_client(), bucket), cursor
        )
        filesystem = s3.pyarrow_filesystem()
        days = set()
        for f in fresh:
            days |= forecast_plan.days_in_file(filesystem, f)
        requests, outside = requests_for(
            days, _valid_keys(context.instance), sync_type="incremental", key_prefix=_digest(fresh)
        )
        if outside:
            context.log.warning(f"no partition for business_date(s) {', '.join(map(str, outside))}")
        observations = (
            [
                dg.AssetObservation(
                    asset_key=FILES_KEY,
                    metadata={
                        "files": dg.MetadataValue.json([f.uri for f in fresh][:100]),
                        "business_dates": dg.MetadataValue.json(sorted(map(str, days))),
                    },  # fmt: skip
                )
            ]
            if fresh
            else []
        )
        return dg.SensorResult(
            run_requests=requests,
            cursor=advanced.dump(),
            asset_events=observations,
            skip_reason=None if requests else "no new or changed forecast file",
        )

    @dg.schedule(
        job=job,
        cron_schedule="0 */6 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if _running()
        else dg.DefaultScheduleStatus.STOPPED,
        name="forecast_sync_job_schedule",
    )
    def forecast_sync_job_schedule(
        context: dg.ScheduleEvaluationContext, s3: S3Resource, neon: NeonResource
    ):
        """Every 6 hours: the days whose files changed since their last successful sync."""
        days = changed_days(s3, neon)
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        requests, _ = requests_for(
            days, _valid_keys(context.instance), sync_type="incremental", key_prefix=stamp
        )
        return requests or dg.SkipReason("every business_date is in sync")

    return dg.Definitions(
        jobs=[job], sensors=[forecast_arrivals_sensor], schedules=[forecast_sync_job_schedule]
    )
