"""Per dataset: a job (stage -> checks -> publish) and a sensor on S3 arrivals that runs it
for each day whose files are new or changed."""

import datetime as dt
import hashlib
import os

import dagster as dg

from sqlgym_pipelines.defs.csv_ingest.assets import csv_config, staged_key, table_key
from sqlgym_pipelines.defs.partitions import daily_partitions
from sqlgym_pipelines.lib.csv_config import Dataset
from sqlgym_pipelines.lib.s3_files import ArrivalCursor, S3File, list_files, new_arrivals
from sqlgym_pipelines.resources.s3 import S3Resource

SENSOR_INTERVAL_S = 30


def job_name(dataset: Dataset) -> str:
    return f"csv_ingest_{dataset.name}_job"


def run_requests(
    fresh: list[S3File], partition_keys: set[str], dataset: Dataset
) -> tuple[list[dg.RunRequest], list[str]]:
    """One run per day with new or changed files; its run key is the day plus every (key, ETag)
    that triggered it, so a file sent again unchanged never runs twice. Also what was skipped."""
    by_day: dict[dt.date, list[S3File]] = {}
    skipped = []
    for f in fresh:
        if f.day is None or f.day.isoformat() not in partition_keys:
            skipped.append(f"{f.uri}: no partition for {f.day or 'a key without a date'}")
            continue
        by_day.setdefault(f.day, []).append(f)
    requests = []
    for day, files in sorted(by_day.items()):
        digest = hashlib.sha256(
            "\n".join(sorted(f"{f.key}@{f.etag}" for f in files)).encode()
        ).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                partition_key=day.isoformat(),
                run_key=f"{dataset.name}:{day}:{digest}",
                tags={"sqlgym/csv_files": ",".join(sorted(f.key for f in files))[:1000]},
            )
        )
    return requests, skipped


def build_sensor(dataset: Dataset, job) -> dg.SensorDefinition:
    status = os.environ.get("SQLGYM_SENSORS_DEFAULT_STATUS", "stopped").lower()

    @dg.sensor(
        name=f"csv_{dataset.name}_arrivals_sensor",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING
        if status == "running"
        else dg.DefaultSensorStatus.STOPPED,
        description=f"New or changed CSV files under s3://{dataset.source.bucket}/"
        f"{dataset.source.prefix} -> a run for each file's day.",
    )
    def _sensor(context: dg.SensorEvaluationContext, s3: S3Resource):
        cursor = ArrivalCursor.parse(context.cursor)
        files = list_files(s3.get_client(), dataset.source)
        fresh, advanced = new_arrivals(files, cursor)
        keys = set(daily_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        requests, skipped = run_requests(fresh, keys, dataset)
        for reason in skipped:
            context.log.warning(f"skipped {reason}")
        context.update_cursor(advanced.dump())
        if not requests:
            return dg.SkipReason(f"no new or changed file ({len(skipped)} skipped)")
        return requests

    return _sensor


@dg.definitions
def csv_ingest_sensors() -> dg.Definitions:
    jobs, sensors = [], []
    for dataset in csv_config().datasets.values():
        job = dg.define_asset_job(
            job_name(dataset),
            selection=dg.AssetSelection.assets(staged_key(dataset), table_key(dataset)),
            partitions_def=daily_partitions,
            description=f"Stage, audit and publish a day of {dataset.name}.",
        )
        jobs.append(job)
        sensors.append(build_sensor(dataset, job))
    return dg.Definitions(jobs=jobs, sensors=sensors)
