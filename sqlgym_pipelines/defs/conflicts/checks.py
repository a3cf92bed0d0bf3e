"""Checks of conflictvisitmaps per VisitDate: the seed's status queries and the status rules."""

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


@dg.definitions
def conflicts_checks() -> dg.Definitions:
    @dg.asset_check(
        asset=TABLE_KEY,
        partitions_def=daily_partitions,
        description="The seed's status query: no row locked (UpdateFlag = 1), none pending.",
    )
    def conflictvisitmaps_all_rows_processed(
        context, target_pg: PostgresResource
    ) -> dg.AssetCheckResult:
        start, end = window(context)
        with target_pg.get_connection() as conn:
            counts = conflict_status.status_counts(conn, conflict_task02.schema_name(), start, end)
        return dg.AssetCheckResult(
            passed=counts["locked"] == 0 and counts["pending"] == 0,
            description=(
                f"{counts['locked']} locked, {counts['pending']} pending: resume the failed run "
                "(re-execute from failure) or release locks with conflicts_reset_job"
                if counts["locked"] or counts["pending"]
                else f"{counts['completed']} rows completed"
            ),
            metadata=counts,
        )

    @dg.asset_check(
        asset=TABLE_KEY,
        partitions_def=daily_partitions,
        description="No chunk of the newest plan is left pending (the seed's stuck chunks).",
    )
    def conflictvisitmaps_no_stuck_chunks(
        context, target_pg: PostgresResource
    ) -> dg.AssetCheckResult:
        start, end = window(context)
        with target_pg.get_connection() as conn:
            stuck = conflict_status.unfinished_chunks(
                conn, conflict_task02.schema_name(), start, end
            )
        return dg.AssetCheckResult(
            passed=not stuck,
            description=f"{len(stuck)} chunk(s) pending" if stuck else "every chunk done",
            metadata={"stuck_chunks": dg.MetadataValue.json(stuck[:50])},
        )

    @dg.asset_check(
        asset=TABLE_KEY,
        partitions_def=daily_partitions,
        description="StatusFlag is 'resolved' exactly when no conflict flag is 'Y'.",
    )
    def conflictvisitmaps_status_matches_flags(
        context, target_pg: PostgresResource
    ) -> dg.AssetCheckResult:
        start, end = window(context)
        with target_pg.get_connection() as conn:
            bad = _status_disagrees(conn, conflict_task02.schema_name(), start, end)
        return dg.AssetCheckResult(
            passed=bad == 0, description=f"{bad} row(s) disagree", metadata={"violations": bad}
        )

    return dg.Definitions(
        asset_checks=[
            conflictvisitmaps_all_rows_processed,
            conflictvisitmaps_no_stuck_chunks,
            conflictvisitmaps_status_matches_flags,
        ]
    )
