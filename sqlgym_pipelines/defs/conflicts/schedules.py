"""Daily re-evaluation of the recent VisitDates: EVV times and cancellations arrive late."""

import datetime as dt
import os

import dagster as dg

from sqlgym_pipelines.lib.errors import ConfigError


def lookback_days() -> int:
    """SQLGYM_CONFLICTS_LOOKBACK_DAYS: past days the schedule re-evaluates with today (3)."""
    raw = os.environ.get("SQLGYM_CONFLICTS_LOOKBACK_DAYS") or "3"
    if not raw.isdigit():
        raise ConfigError(f"SQLGYM_CONFLICTS_LOOKBACK_DAYS={raw!r} is not a number of days")
    return int(raw)


def _status() -> dg.DefaultScheduleStatus:
    running = os.environ.get("SQLGYM_SENSORS_DEFAULT_STATUS", "").lower() == "running"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


@dg.definitions
def conflicts_schedules() -> dg.Definitions:
    days = lookback_days()

    @dg.schedule(
        job_name="conflicts_job",
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=_status(),
        description=f"Daily: Task 01 + Task 02 over the last {days} days and today, one run.",
    )
    def conflicts_job_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(dt.UTC).date()
        first = today - dt.timedelta(days=days)
        return dg.RunRequest(
            run_key=today.isoformat(),
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": today.isoformat(),
            },
        )

    return dg.Definitions(schedules=[conflicts_job_schedule])
