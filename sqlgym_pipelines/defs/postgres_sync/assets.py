"""One lake asset per enabled table of the sync config: Postgres rows -> daily Parquet partitions."""

import functools
import random

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from sqlgym_pipelines.defs.partitions import daily_partitions, days_of
from sqlgym_pipelines.defs.run_helpers import markdown_table
from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConnectionFailed
from sqlgym_pipelines.lib.lake_store import CommitConflict
from sqlgym_pipelines.lib.lake_sync import SyncOptions, sync_table
from sqlgym_pipelines.lib.sync_config import (
    SyncConfig,
    TableConfig,
    load_sync_config,
    validate_against_catalog,
)
from sqlgym_pipelines.resources.lake import LakeResource
from sqlgym_pipelines.resources.postgres import PostgresResource

GROUP = "postgres_sync"
KEY_PREFIX = ["lake", "postgres_sync"]
TRANSIENT = (ConnectionFailed, CommitConflict, BotoCoreError)


class LakeSyncConfig(dg.Config):
    """mode: 'append' reads from the partition's last committed cursor (the hourly sync);
    'replace' re-extracts whole days and supersedes their files (backfills, invoke-full);
    'auto' = replace inside a backfill, append otherwise."""

    mode: str = "auto"


def source_key(table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey(["postgres", table.schema, table.source_table])


def lake_key(table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey([*KEY_PREFIX, table.name])


def _replace(context: dg.AssetExecutionContext, mode: str) -> bool:
    if mode not in ("auto", "append", "replace"):
        raise dg.Failure(f"mode {mode!r} is not one of auto, append, replace")
    return mode == "replace" or (mode == "auto" and "dagster/backfill" in context.run.tags)


def _metadata(record, location) -> dict:
    parts = record.partitions
    files = [f for p in parts.values() for f in p.added]
    windows = {d: f"[{p.lower}, {p.upper})" if p.lower else "snapshot" for d, p in parts.items()}
    duration = max(record.duration_s, 1e-6)
    return {
        "dagster/row_count": record.rows,
        "rows": record.rows,
        "bytes": record.bytes,
        "files": record.files,
        "duration_s": round(duration, 3),
        "rows_per_s": round(record.rows / duration),
        "sync_id": record.sync_id,
        "mode": record.mode,
        "windows": dg.MetadataValue.json(windows),
        "safe_upper": record.source.get("safe_upper") or "",
        "safe_upper_method": record.source.get("safe_upper_method") or "",
        "schema_hash": record.schema_hash or "",
        "s3_uris": dg.MetadataValue.json([location.uri(f.key) for f in files][:50]),
        "record": location.uri(location.record_key(record.table, record.sync_id)),
        "preview": dg.MetadataValue.md(_markdown(getattr(record, "preview", None))),
    }


def _markdown(table) -> str:
    if table is None or table.num_rows == 0:
        return "(no rows)"
    rows = (tuple(row.values()) for row in table.to_pylist())
    return markdown_table(table.column_names, rows)


def build_lake_asset(table: TableConfig, config_path: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=lake_key(table),
        deps=[source_key(table)],
        group_name=GROUP,
        kinds={"postgres", "s3", "parquet"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # the multiprocess executor starts higher values first: config priority 1 goes first
        op_tags={"dagster/priority": str(-table.priority)},
        pool=f"lake_sync_{table.name}",  # one sync per table at a time (dagster.yaml pools)
        description=f"{table.qualified_name} as daily Parquet partitions ({table.sync_type} sync).",
        metadata={"sync_type": table.sync_type, "pk": list(table.pk), "config": config_path},
        # a full table's partition D is the snapshot taken on D: only today's can be made
        tags={"sqlgym/partition_semantics": "snapshot"} if not table.incremental else None,
    )
    def _lake_table(
        context: dg.AssetExecutionContext,
        config: LakeSyncConfig,
        source_pg: PostgresResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        sync_config = load_sync_config(config_path)
        with pg.connection(source_pg.url) as conn:
            resolved = validate_against_catalog(conn, _only(sync_config, table.name))[0]
        options = SyncOptions(replace=_replace(context, config.mode), run_id=context.run_id)
        if table.batch_size_bytes:  # per-table memory knobs from the sync config
            options.batch_size_hint_bytes = table.batch_size_bytes
        if table.batch_rows:
            options.row_group_rows = table.batch_rows
        try:
            record = sync_table(
                source_pg.url,
                lake.s3.get_client(),
                lake.location,
                resolved,
                days_of(context),
                options,
            )
        except (*TRANSIENT, ClientError) as exc:
            if isinstance(exc, ClientError) and not _transient_s3(exc):
                raise
            raise dg.RetryRequested(max_retries=3, seconds_to_wait=_backoff(context)) from exc
        context.log.info(
            f"{table.name}: {record.rows} rows in {record.files} files, {len(record.partitions)} "
            f"partitions touched, sync {record.sync_id} ({record.source.get('safe_upper_method')})"
        )
        return dg.MaterializeResult(metadata=_metadata(record, lake.location))

    return _lake_table


def _only(config: SyncConfig, name: str) -> SyncConfig:
    return SyncConfig(tables=(config.table(name),), source=config.source)


def _transient_s3(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= 500 or exc.response["Error"]["Code"] in ("SlowDown", "RequestTimeout")


def _backoff(context: dg.AssetExecutionContext) -> float:
    """Exponential with jitter: 5, 10, 20 s (±50%)."""
    return 5 * 2 ** (context.retry_number) * random.uniform(0.5, 1.5)


def build_source_spec(table: TableConfig) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=source_key(table),
        group_name=GROUP,
        kinds={"postgres"},
        description=f"Source table {table.qualified_name} (read by the lake sync).",
    )


@functools.cache
def sync_config() -> SyncConfig:
    """The config named by SQLGYM_SYNC_CONFIG (or the repo's), read once per process."""
    return load_sync_config()


@dg.definitions
def postgres_sync_assets() -> dg.Definitions:
    tables = sync_config().enabled_tables()
    sources = {source_key(t): build_source_spec(t) for t in tables}
    lake = [build_lake_asset(t, sync_config().source) for t in tables]
    return dg.Definitions(assets=[*sources.values(), *lake])
