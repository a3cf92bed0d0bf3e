"""Conflict report (seed 003): Snowflake visits -> Postgres staging (Task 01) ->
conflictvisitmaps (Task 02, monolithic or chunked in parallel), by VisitDate."""

import datetime as dt

import dagster as dg
import psycopg
from pydantic import Field

from sqlgym_pipelines.defs.partitions import daily_partitions, days_of
from sqlgym_pipelines.defs.run_helpers import failing_fast
from sqlgym_pipelines.lib import conflict_plan, conflict_status, conflict_task02, conflict_visits
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.resources.postgres import PostgresResource
from sqlgym_pipelines.resources.snowflake import SnowflakeResource

GROUP = "conflicts"
SOURCE_KEY = dg.AssetKey(["snowflake", "visits"])
VISITS_KEY = dg.AssetKey(["postgres", "conflicts", "visits"])
TABLE_KEY = dg.AssetKey(["postgres", "conflicts", "conflictvisitmaps"])
# Transient Snowflake / Postgres errors (a dropped connection, a deadlock) back off and retry.
RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
MODES = ("chunked", "monolithic")
_DATA_ERRORS = (ConfigError, psycopg.DataError, psycopg.IntegrityError)


class Task02Config(dg.Config):
    """How Task 02 runs; 0 keeps the SQLGYM_CONFLICTS_* setting (else the seed's default)."""

    mode: str = Field(default="chunked", description="'chunked' (parallel) or 'monolithic'")
    target_chunk_size: int = Field(default=0, description="rows per chunk aimed at (10,000)")
    max_chunk_size: int = Field(default=0, description="rows a chunk may not pass (50,000)")
    max_keys_per_chunk: int = Field(default=0, description="(VisitDate, SSN) keys (1,000)")


def window(context) -> tuple[dt.date, dt.date]:
    days = days_of(context)
    return days[0], days[-1] + dt.timedelta(days=1)


@dg.op(
    out={
        "chunks": dg.DynamicOut(tuple, description="(plan_id, chunk_id), one per chunk"),
        "monolithic": dg.Out(dict, description="monolithic mode's counts; {} when chunked"),
    },
    ins={"visits": dg.In(dg.Nothing)},
    retry_policy=RETRY,
    description="Task 02: plan the window's chunks in Postgres (or run it monolithic).",
)
def plan_conflict_chunks(
    context: dg.OpExecutionContext, config: Task02Config, target_pg: PostgresResource
):
    start, end = window(context)
    schema = conflict_task02.schema_name()
    run_ts = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with failing_fast(_DATA_ERRORS):
        if config.mode not in MODES:
            raise ConfigError(f"Task 02 mode {config.mode!r} is not one of {', '.join(MODES)}")
        settings = conflict_plan.ChunkSettings.from_env(**config.model_dump(exclude={"mode"}))
        mph = conflict_task02.average_mph()
        with target_pg.get_connection() as conn:
            conflict_task02.ensure_schema(conn, schema)
        with target_pg.get_connection() as conn:
            if config.mode == "monolithic":
                counts = conflict_task02.monolithic(
                    conn, schema, start, end, run_ts=run_ts, mph=mph
                )
                context.log.info(f"monolithic Task 02 over {start}..{end}: {counts.as_dict()}")
                yield dg.Output(counts.as_dict(), "monolithic")
                return
            plan = conflict_plan.create_plan(
                conn, schema, start, end, settings, run_ts=run_ts, mph=mph, run_id=context.run_id
            )
    context.log.info(
        f"plan {plan.plan_id}: {len(plan.chunks)} chunks of "
        f"{sum(len(c.keys) for c in plan.chunks)} (VisitDate, SSN) keys, "
        f"{sum(c.est_rows for c in plan.chunks)} estimated rows, {start}..{end}"
    )
    yield dg.Output({}, "monolithic")
    for chunk in plan.chunks:
        yield dg.DynamicOutput(
            (plan.plan_id, chunk.chunk_id),
            output_name="chunks",
            mapping_key=f"chunk_{chunk.chunk_id}",
        )


@dg.op(retry_policy=RETRY, description="Task 02 over one chunk: mark, update and release.")
def process_conflict_chunk(
    context: dg.OpExecutionContext, target_pg: PostgresResource, chunk: tuple
) -> dict:
    plan_id, chunk_id = chunk
    with failing_fast(_DATA_ERRORS):
        result = conflict_plan.process_chunk(
            target_pg.get_connection, conflict_task02.schema_name(), plan_id, chunk_id
        )
    for line in result.log_lines():
        context.log.info(line)
    return {"status": result.status, "seconds": result.seconds, **result.counts.as_dict()}


# Nothing: the table is the output; no IO manager (it could not store a multi-day backfill).
@dg.op(
    out=dg.Out(dg.Nothing),
    description="Totals of the chunks (or the monolithic run); the asset's materialization.",
)
def conflictvisitmaps_totals(
    context: dg.OpExecutionContext, target_pg: PostgresResource, results: list, monolithic: dict
):
    done = [r for r in results if r["status"] == "done"]
    totals = {
        name: sum(r[name] for r in done) + monolithic.get(name, 0)
        for name in ("marked", "updated", "inserted", "gone")
    }
    start, end = window(context)
    with target_pg.get_connection() as conn:
        statuses = conflict_status.flag_status_counts(
            conn, conflict_task02.schema_name(), start, end
        )
    return dg.Output(
        None,
        metadata={
            "dagster/row_count": sum(statuses.values()),
            "rows_by_status": dg.MetadataValue.json(statuses),
            "mode": "monolithic" if monolithic else "chunked",
            "chunks": len(results),
            "chunks_skipped_as_done": len(results) - len(done),
            **totals,
            "slowest_chunk_s": round(max((r["seconds"] for r in done), default=0.0), 3),
        },
    )


@dg.definitions
def conflicts_assets() -> dg.Definitions:
    source = dg.AssetSpec(
        key=SOURCE_KEY,
        group_name=GROUP,
        kinds={"snowflake"},
        description="The source visits table in Snowflake (SQLGYM_CONFLICTS_SOURCE_TABLE).",
    )

    @dg.asset(
        key=VISITS_KEY,
        deps=[SOURCE_KEY],
        group_name=GROUP,
        kinds={"snowflake", "postgres"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        description="Task 01: each VisitDate's visits copied from Snowflake into Postgres.",
    )
    def visits(
        context: dg.AssetExecutionContext,
        snowflake: SnowflakeResource,
        target_pg: PostgresResource,
    ) -> dg.MaterializeResult:
        schema = conflict_task02.schema_name()
        with failing_fast(_DATA_ERRORS):
            table = conflict_visits.source_table()
            columns = conflict_visits.check_source(snowflake.fetch_arrow, table)
            with target_pg.get_connection() as conn:
                conflict_task02.ensure_schema(conn, schema)
            with target_pg.get_connection() as conn:
                rows = conflict_visits.stage_days(
                    conn,
                    schema,
                    days_of(context),
                    conflict_visits.fetcher(snowflake, table, columns),
                )
        return dg.MaterializeResult(
            metadata={
                "source": table,
                "target": f"{schema}.visits",
                "dagster/row_count": sum(rows.values()),
                "rows_per_day": dg.MetadataValue.json({str(d): n for d, n in rows.items()}),
            }
        )

    @dg.graph_asset(
        key=TABLE_KEY,
        ins={"visits": dg.AssetIn(key=VISITS_KEY, dagster_type=dg.Nothing)},
        group_name=GROUP,
        kinds={"postgres"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Task 02: conflicting visit pairs per VisitDate (lib/conflict_rules.py).",
    )
    def conflictvisitmaps(visits):
        chunks, monolithic = plan_conflict_chunks(visits)
        return conflictvisitmaps_totals(chunks.map(process_conflict_chunk).collect(), monolithic)

    return dg.Definitions(assets=[source, visits, conflictvisitmaps])
