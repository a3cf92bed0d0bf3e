"""Forecast sync (seed 002): the forecast files in S3, the Athena view over them, and
`forecast_data` in the git branch's Neon branch, by business_date."""

import contextlib
import os
import time

import dagster as dg
import psycopg
from pydantic import Field

from sqlgym_pipelines.defs.partitions import days_of, forecast_partitions
from sqlgym_pipelines.defs.run_helpers import failing_fast
from sqlgym_pipelines.lib import forecast_athena, forecast_sync, pg
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.lib.forecast_plan import PREFIX, datalake_bucket
from sqlgym_pipelines.lib.prefetch import prefetch
from sqlgym_pipelines.resources.athena import AthenaResource
from sqlgym_pipelines.resources.neon import NeonResource

GROUP = "forecast"
FILES_KEY = dg.AssetKey(["s3", "datalake", "forecast"])
ATHENA_KEY = dg.AssetKey(["athena", "athena_forecast"])
TABLE_KEY = dg.AssetKey(["neon", "public", "forecast_data"])
# The seed's Lambda retried twice; transient Athena / Postgres errors back off exponentially.
RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
SYNC_TYPES = ("incremental", "full")
_DATA_ERRORS = (ConfigError, QueryFailed, psycopg.DataError, psycopg.IntegrityError)


def batch_size() -> int:
    value = os.environ.get("BATCH_SIZE") or str(forecast_sync.DEFAULT_BATCH_SIZE)
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"BATCH_SIZE={value!r} is not a positive number of rows")
    return int(value)


class ForecastSyncConfig(dg.Config):
    """The launchpad's manual sync. The target branch is the neon resource's git_branch
    (SQLGYM_GIT_BRANCH, else the checkout), so the checks read what the run wrote."""

    sync_type: str = Field(
        default="incremental",
        description="recorded in forecast_sync_status: 'incremental' or 'full' (recovery)",
    )
    batch_size: int = Field(default=0, description="rows per upsert batch; 0 = BATCH_SIZE")


def failing_fast_on_bad_data():
    """Data and config errors are not retried (a Failure); anything else may be transient."""
    return failing_fast(_DATA_ERRORS)


def location(neon: NeonResource) -> str:
    target = neon.target()
    return f"s3://{datalake_bucket(target.environment)}/{PREFIX}"


@dg.definitions
def forecast_assets() -> dg.Definitions:
    files = dg.AssetSpec(
        key=FILES_KEY,
        group_name=GROUP,
        kinds={"s3", "parquet"},
        description="Forecast Parquet under forecast/ in the environment's datalake bucket.",
    )

    @dg.asset(
        key=ATHENA_KEY,
        deps=[FILES_KEY],
        group_name=GROUP,
        kinds={"athena"},
        partitions_def=forecast_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        description="The Athena table over forecast/*.parquet and the athena_forecast view.",
    )
    def athena_forecast(
        context: dg.AssetExecutionContext, athena: AthenaResource, neon: NeonResource
    ) -> dg.MaterializeResult:
        with failing_fast_on_bad_data():
            where = location(neon)
            statements = forecast_athena.ensure_tables(athena, where)
            counts = forecast_athena.day_counts(athena, days_of(context))
        return dg.MaterializeResult(
            metadata={
                "location": where,
                "dagster/row_count": sum(counts.values()),
                "rows_per_day": dg.MetadataValue.json({str(d): n for d, n in counts.items()}),
                "ddl": dg.MetadataValue.md("\n\n".join(f"```sql\n{s}\n```" for s in statements)),
            }
        )

    @dg.asset(
        key=TABLE_KEY,
        deps=[ATHENA_KEY],
        group_name=GROUP,
        kinds={"postgres", "neon"},
        partitions_def=forecast_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        pool="forecast_sync",  # one sync writes forecast_data at a time
        description="forecast_data in the git branch's Neon branch, upserted per business_date.",
    )
    def forecast_data(
        context: dg.AssetExecutionContext,
        config: ForecastSyncConfig,
        athena: AthenaResource,
        neon: NeonResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        with failing_fast_on_bad_data():
            if config.sync_type not in SYNC_TYPES:
                raise ConfigError(f"sync_type {config.sync_type!r} is not one of {SYNC_TYPES}")
            target = neon.target()
            branch = neon.ensure_target(target)
            url = neon.connection_url(target.neon_branch)
            context.log.info(
                f"git branch {target.git_branch} -> environment {target.environment}, "
                f"Neon branch {branch.name}"
            )
            with pg.connection(url) as conn:
                forecast_sync.ensure_schema(conn)
            forecast_athena.ensure_tables(athena, location(neon))
            totals = _sync_days(context, config, athena, url)
        seconds = time.monotonic() - started
        return dg.MaterializeResult(
            metadata={
                "git_branch": target.git_branch,
                "environment": target.environment,
                "neon_branch": target.neon_branch,
                "sync_type": config.sync_type,
                **totals,
                "dagster/row_count": totals["source_rows"],
                "duration_s": round(seconds, 3),
            }
        )

    return dg.Definitions(assets=[files, athena_forecast, forecast_data])


def _sync_days(context, config: ForecastSyncConfig, athena, url: str) -> dict[str, int]:
    totals = {"days": 0, "source_rows": 0, "inserted": 0, "updated": 0, "unchanged": 0,
              "deleted": 0}  # fmt: skip
    size = config.batch_size or batch_size()
    # The next day's Athena read runs while this day loads: on two cores they overlap.
    reads = prefetch(forecast_athena.each_day_rows(athena, days_of(context)), depth=1)
    started = time.monotonic()
    with contextlib.closing(reads):  # a failed load stops the reads at once
        for day, rows, error in reads:
            try:
                if error is not None:
                    raise error
                with pg.connection(url) as conn:
                    counts = forecast_sync.load_day(conn, day, rows, batch_size=size)
            except Exception as exc:
                forecast_sync.record_status(url, config.sync_type, day, None, "failed", str(exc))
                raise
            synced = counts.inserted + counts.updated + counts.deleted
            forecast_sync.record_status(url, config.sync_type, day, synced, "success")
            context.log.info(
                f"{day}: {rows.num_rows} rows from Athena; {counts.inserted} inserted, "
                f"{counts.updated} updated, {counts.unchanged} unchanged, {counts.deleted} "
                f"deleted in {time.monotonic() - started:.2f}s"
            )
            started = time.monotonic()
            totals["days"] += 1
            totals["source_rows"] += rows.num_rows
            for name in ("inserted", "updated", "unchanged", "deleted"):
                totals[name] += getattr(counts, name)
    return totals
