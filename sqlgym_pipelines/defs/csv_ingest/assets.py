"""Per dataset of config.yaml: the landing files, their staged rows, and the published table."""

import functools
import time

import dagster as dg
import psycopg

from sqlgym_pipelines.defs.partitions import daily_partitions, days_of
from sqlgym_pipelines.defs.run_helpers import failing_fast, markdown_table
from sqlgym_pipelines.lib import csv_ingest, pg
from sqlgym_pipelines.lib.csv_config import CsvConfig, Dataset, load_csv_config
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.resources.postgres import PostgresResource
from sqlgym_pipelines.resources.s3 import S3Resource
from sqlgym_pipelines.resources.secrets import SecretsResource

GROUP = "csv_ingest"
# Transient S3 / Postgres errors are retried (exponential backoff with jitter); data and
# config errors are raised as Failure(allow_retries=False): retrying cannot fix a bad file.
RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
_DATA_ERRORS = (csv_ingest.CsvDataError, ConfigError, QueryFailed, psycopg.DataError,
                psycopg.IntegrityError, psycopg.ProgrammingError)  # fmt: skip


@functools.cache
def csv_config() -> CsvConfig:
    """The config named by SQLGYM_CSV_CONFIG (or the repo's), read once per process."""
    return load_csv_config()


def files_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(["s3", "csv_landing", dataset.name])


def staged_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(["csv_ingest", "staged", dataset.name])


def table_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", dataset.target.schema_, dataset.table])


def target_url(dataset: Dataset, target_pg: PostgresResource, secrets: SecretsResource) -> str:
    """The dataset's own secret (target.secret) if it names one, else SQLGYM_TARGET_PG_URL."""
    if dataset.target.secret:
        secret = secrets.get_json(dataset.target.secret)
        return csv_ingest.url_from_secret(secret, dataset.target.secret)
    return target_pg.url


def failing_fast_on_bad_data():
    """Bad data or config: a Failure that is not retried. Anything else: retried by RETRY."""
    return failing_fast(_DATA_ERRORS)


def _stage_metadata(results: list[csv_ingest.StageResult], seconds: float) -> dict:
    files = [f for r in results for f in r.files]
    read = sum(r.rows_read for r in results)
    rejected = sum(r.rejected_rows for r in results)
    reasons: dict[str, int] = {}
    for r in results:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    last = results[-1]
    return {
        "files": dg.MetadataValue.json([f.uri for f in files]),
        "etags": dg.MetadataValue.json({f.key: f.etag for f in files}),
        "bytes": sum(r.bytes for r in results),
        "rows_read": read,
        "rejected_rows": rejected,
        "reject_ratio": round(rejected / read, 6) if read else 0.0,
        "reject_reasons": dg.MetadataValue.json(reasons),
        "dagster/row_count": sum(r.staged_rows for r in results),
        "staging_table": str(last.staging),
        "duration_s": round(seconds, 3),
        "preview": dg.MetadataValue.md(_markdown(last.preview)),
        "rejects_preview": dg.MetadataValue.md(_markdown(last.reject_preview)),
    }


def _markdown(frame) -> str:
    return "(none)" if frame is None else markdown_table(frame.columns, frame.iter_rows())


def build_assets(dataset: Dataset) -> list:
    config_path = csv_config().path
    files = dg.AssetSpec(
        key=files_key(dataset),
        group_name=GROUP,
        kinds={"s3", "csv"},
        description=f"CSV files landing in s3://{dataset.source.bucket}/{dataset.source.prefix}"
        f"{dataset.source.pattern} (watched by the arrivals sensor).",
    )

    @dg.asset(
        key=staged_key(dataset),
        deps=[files.key],
        group_name=GROUP,
        kinds={"postgres", "csv"},
        partitions_def=daily_partitions,
        retry_policy=RETRY,
        pool=f"csv_ingest_{dataset.name}",
        description=f"The day's {dataset.name} rows, typed, transformed and checked, in staging; "
        "failures in the quarantine.",
        metadata={"config": config_path, "mode": dataset.target.mode},
    )
    def _staged(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        target_pg: PostgresResource,
        secrets: SecretsResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        results = []
        with failing_fast_on_bad_data():
            url = target_url(dataset, target_pg, secrets)
            client = s3.get_client()
            for day in days_of(context):
                with pg.connection(url) as conn:
                    result = csv_ingest.stage(
                        conn, client, csv_config(), dataset, day, context.run_id
                    )
                results.append(result)
                context.log.info(
                    f"{dataset.name} {day}: {len(result.files)} file(s), {result.rows_read} rows "
                    f"read, {result.rejected_rows} rejected, {result.staged_rows} staged "
                    f"({result.reasons or 'no rejects'})"
                )
        return dg.MaterializeResult(metadata=_stage_metadata(results, time.monotonic() - started))

    @dg.asset(
        key=table_key(dataset),
        deps=[_staged],
        group_name=GROUP,
        kinds={"postgres"},
        partitions_def=daily_partitions,
        retry_policy=RETRY,
        pool=f"csv_ingest_{dataset.name}",
        description=f"{dataset.target.schema_}.{dataset.table}: {dataset.name} rows that passed "
        f"every check ({dataset.target.mode}).",
        metadata={"mode": dataset.target.mode, "key": list(dataset.target.key)},
    )
    def _published(
        context: dg.AssetExecutionContext, target_pg: PostgresResource, secrets: SecretsResource
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        totals: dict[str, int] = {}
        with failing_fast_on_bad_data():
            url = target_url(dataset, target_pg, secrets)
            for day in days_of(context):
                with pg.connection(url) as conn:
                    counts = csv_ingest.publish(conn, csv_config(), dataset, day, context.run_id)
                context.log.info(f"{dataset.name} {day}: {counts.as_dict()}")
                for name, value in counts.as_dict().items():
                    totals[name] = totals.get(name, 0) + value
        return dg.MaterializeResult(
            metadata={
                **totals,
                "loaded": totals.get("inserted", 0) + totals.get("updated", 0),
                "dagster/row_count": totals.get("inserted", 0) + totals.get("updated", 0),
                "table": f"{dataset.target.schema_}.{dataset.table}",
                "duration_s": round(time.monotonic() - started, 3),
            }
        )

    return [files, _staged, _published]


@dg.definitions
def csv_ingest_assets() -> dg.Definitions:
    return dg.Definitions(
        assets=[a for d in csv_config().datasets.values() for a in build_assets(d)]
    )
