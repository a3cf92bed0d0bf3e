"""Checks of conflictvisitmaps per VisitDate: the seed's status queries and the status rules."""

from collections.abc import Callable

import dagster as dg
from psycopg import sql

from sqlgym_pipelines.defs.conflicts.assets import TABLE_KEY, window
from sqlgym_pipelines.defs.partitions import daily_partitions
from sqlgym_pipelines.lib import conflict_status, conflict_task02
from sqlgym_pipelines.lib.conflict_rules import FLAGS
from sqlgym_pipelines.resources.postgres import PostgresResource


def _status_disagrees(conn, schema: str, start, end) -> int:
    """Rows whose StatusFlag contradicts their flags (resolved with a flag, or open without)."""
    any_flag = sql.SQL(" OR ").join(sql.SQL("{} = 'Y'").format(sql.Identifier(f)) for f in FLAGS)
    return conn.execute(
        sql.SQL(
            'SELECT count(*) FROM {}.conflictvisitmaps WHERE "VisitDate" >= %s '
            'AND "VisitDate" < %s AND ("StatusFlag" = \'resolved\') = ({})'
        ).format(sql.Identifier(schema), any_flag),
        (start, end),
    ).fetchone()[0]


def _processed(counts: dict) -> dg.AssetCheckResult:
    open_rows = counts["locked"] or counts["pending"]
    return dg.AssetCheckResult(
        passed=not open_rows,
        description=(
            f"{counts['locked']} locked, {counts['pending']} pending: resume the failed run "
            "(re-execute from failure) or release locks with conflicts_reset_job"
            if open_rows
            else f"{counts['completed']} rows completed"
        ),
        metadata=counts,
    )


def _no_stuck(stuck: list[dict]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not stuck,
        description=f"{len(stuck)} chunk(s) pending" if stuck else "every chunk done",
        metadata={"stuck_chunks": dg.MetadataValue.json(stuck[:50])},
    )


def _agrees(bad: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=bad == 0, description=f"{bad} row(s) disagree", metadata={"violations": bad}
    )


# name -> (what it asks of the window, how the answer reads, what it checks)
CHECKS: dict[str, tuple[Callable, Callable[..., dg.AssetCheckResult], str]] = {
    "conflictvisitmaps_all_rows_processed": (
        conflict_status.status_counts,
        _processed,
        "The seed's status query: no row locked (UpdateFlag = 1), none pending.",
    ),
    "conflictvisitmaps_no_stuck_chunks": (
        conflict_status.unfinished_chunks,
        _no_stuck,
        "No chunk of the newest plan is left pending (the seed's stuck chunks).",
    ),
    "conflictvisitmaps_status_matches_flags": (
        _status_disagrees,
        _agrees,
        "StatusFlag is 'resolved' exactly when no conflict flag is 'Y'.",
    ),
}


def _check(name: str, query: Callable, verdict: Callable, description: str):
    @dg.asset_check(
        name=name, asset=TABLE_KEY, partitions_def=daily_partitions, description=description
    )
    def _run(context, target_pg: PostgresResource) -> dg.AssetCheckResult:
        start, end = window(context)
        with target_pg.get_connection() as conn:
            return verdict(query(conn, conflict_task02.schema_name(), start, end))

    return _run


@dg.definitions
def conflicts_checks() -> dg.Definitions:
    return dg.Definitions(asset_checks=[_check(name, *spec) for name, spec in CHECKS.items()])
