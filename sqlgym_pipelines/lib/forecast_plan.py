"""Which business_dates a forecast sync should load: from the files in S3 and the sync status."""

import datetime as dt
import os
from collections.abc import Iterable

import pyarrow.compute as pc
import pyarrow.parquet as pq

from sqlgym_pipelines.lib.csv_config import Source
from sqlgym_pipelines.lib.s3_files import S3File, list_files

PREFIX = "forecast/"
DEFAULT_PROJECT = "sqlgym"
DEFAULT_SUFFIX = "35315550"


def datalake_bucket(environment: str) -> str:
    """SQLGYM_DATALAKE_BUCKET, else the seed's `{project}-datalake-{environment}-{suffix}`."""
    explicit = os.environ.get("SQLGYM_DATALAKE_BUCKET")
    if explicit:
        return explicit
    project = os.environ.get("FORECAST_PROJECT_NAME") or DEFAULT_PROJECT
    suffix = os.environ.get("SQLGYM_DATALAKE_SUFFIX") or DEFAULT_SUFFIX
    return f"{project}-datalake-{environment}-{suffix}"


def forecast_source(bucket: str) -> Source:
    """forecast/*.parquet, the seed's S3 event filter (prefix forecast/, suffix .parquet)."""
    return Source(bucket=bucket, prefix=PREFIX, pattern="*.parquet", date_from="last_modified")


def forecast_files(s3_client, bucket: str) -> list[S3File]:
    return list(list_files(s3_client, forecast_source(bucket)))


def days_in_file(filesystem, file: S3File) -> set[dt.date]:
    """The business_dates a Parquet file may hold, from its footer's row-group statistics
    (every day between each group's min and max; an extra day only makes the sync confirm
    that Neon has none). Without statistics, the column itself is read (ranged GETs)."""
    path = f"{file.bucket}/{file.key}"
    with filesystem.open_input_file(path) as handle:
        metadata = pq.ParquetFile(handle).metadata
        index = metadata.schema.names.index("business_date")
        days: set[dt.date] = set()
        for i in range(metadata.num_row_groups):
            stats = metadata.row_group(i).column(index).statistics
            if stats is None or not stats.has_min_max:
                break
            first, last = stats.min, stats.max
            days.update(first + dt.timedelta(days=n) for n in range((last - first).days + 1))
        else:
            return days
    column = pq.read_table(path, columns=["business_date"], filesystem=filesystem).column(0)
    return {d for d in pc.unique(column).to_pylist() if d is not None}


def contiguous(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as inclusive (first, last) runs of consecutive dates."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def changed_days(
    files: Iterable[tuple[S3File, set[dt.date]]], synced: dict[dt.date, dt.datetime]
) -> list[dt.date]:
    """Days with a file written after that day's last successful sync (or never synced)."""
    changed = set()
    for file, days in files:
        for day in days:
            last = synced.get(day)
            if last is None or file.last_modified > last:
                changed.add(day)
    return sorted(changed)
