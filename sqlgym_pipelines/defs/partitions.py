"""The daily partitions every dataset shares (UTC), starting at SQLGYM_PARTITION_START."""

import datetime as dt
import os

import dagster as dg

DEFAULT_START = "2025-01-01"


def partition_start() -> str:
    value = os.environ.get("SQLGYM_PARTITION_START") or DEFAULT_START
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"SQLGYM_PARTITION_START={value!r} is not a YYYY-MM-DD date") from exc
    return value


# end_offset=1: today's partition exists, so the hourly sync can fill it as the day goes on.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=partition_start(), timezone="UTC", end_offset=1
)


def days_of(context) -> list[dt.date]:
    """The run's days; a single-run backfill covers many (never context.partition_key)."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days)]


def forecast_horizon_days() -> int:
    value = os.environ.get("SQLGYM_FORECAST_HORIZON_DAYS") or "90"
    if not value.isdigit():
        raise ValueError(f"SQLGYM_FORECAST_HORIZON_DAYS={value!r} is not a number of days")
    return int(value)


# Forecasts are about days to come: partitions reach SQLGYM_FORECAST_HORIZON_DAYS past today.
forecast_partitions = dg.DailyPartitionsDefinition(
    start_date=partition_start(), timezone="UTC", end_offset=forecast_horizon_days()
)
