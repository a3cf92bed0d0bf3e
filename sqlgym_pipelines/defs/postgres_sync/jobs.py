"""Jobs and the hourly schedule of the lake sync (the seed's invoke / invoke-full / validate)."""

import datetime as dt

import dagster as dg

from sqlgym_pipelines.defs.partitions import daily_partitions
from sqlgym_pipelines.defs.postgres_sync.assets import lake_key, sync_config


def _lake_keys() -> list[dg.AssetKey]:
    return [lake_key(t) for t in sync_config().enabled_tables()]


def _replace_config() -> dict:
    ops = {lake_key(t).to_python_identifier(): {"config": {"mode": "replace"}}
           for t in sync_config().enabled_tables()}  # fmt: skip
    return {"ops": ops}


# The first ticks of a day also finish yesterday: rows updated between its last hourly sync
# and midnight (or held back by a transaction open across midnight) belong to yesterday's
# partition, which today's runs never read. On a complete day the append sync reads nothing.
CLOSE_YESTERDAY_HOURS = 3


def hourly_requests(tick: dt.datetime) -> list[dg.RunRequest]:
    now = tick.astimezone(dt.UTC)
    days = [now.date()]
    if now.hour < CLOSE_YESTERDAY_HOURS:
        days.insert(0, now.date() - dt.timedelta(days=1))
    stamp = now.strftime("%Y%m%dT%H%M")
    return [dg.RunRequest(partition_key=d.isoformat(), run_key=f"{stamp}:{d}") for d in days]


@dg.definitions
def postgres_sync_jobs() -> dg.Definitions:
    lake = dg.AssetSelection.assets(*_lake_keys())
    sync_job = dg.define_asset_job(
        "postgres_sync_job",
        selection=lake,
        partitions_def=daily_partitions,
        description="Incremental sync of every enabled table (make invoke).",
    )
    full_job = dg.define_asset_job(
        "postgres_sync_full_job",
        selection=lake,
        partitions_def=daily_partitions,
        config=_replace_config(),
        description="Re-extract the partitions' whole days and supersede their files (make invoke-full).",
    )
    checks_job = dg.define_asset_job(
        "postgres_sync_checks_job",
        selection=dg.AssetSelection.checks_for_assets(*_lake_keys()),
        partitions_def=daily_partitions,
        description="Only the data-quality checks of the lake (make validate, CI).",
    )

    @dg.schedule(job=sync_job, cron_schedule="0 * * * *", execution_timezone="UTC")
    def postgres_sync_job_schedule(context: dg.ScheduleEvaluationContext):
        """Hourly: today's partition of every table (incremental catch-up, today's snapshot)."""
        return hourly_requests(context.scheduled_execution_time)

    return dg.Definitions(
        jobs=[sync_job, full_job, checks_job], schedules=[postgres_sync_job_schedule]
    )
