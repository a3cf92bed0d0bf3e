"""The seed's status queries (locked / completed / pending, stuck chunks) and manual reset."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

_WINDOW = 'AND "VisitDate" >= %(start)s AND "VisitDate" < %(end)s'


def _count_by(
    conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date, label: str, zeros: tuple
) -> dict[str, int]:
    """The window's rows counted by the SQL expression `label`; every name in zeros present."""
    rows = conn.execute(
        sql.SQL(
            "SELECT " + label + ", count(*) FROM {}.conflictvisitmaps WHERE true "
            + _WINDOW + " GROUP BY 1"
        ).format(sql.Identifier(schema)),
        {"start": start, "end": end},
    ).fetchall()  # fmt: skip
    return {**dict.fromkeys(zeros, 0), **dict(rows)}


def status_counts(conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date) -> dict:
    """The seed's processing status of the window's rows: locked (UpdateFlag = 1), completed
    (processed at least once: UpdatedDate set), pending (never processed)."""
    label = (
        "CASE WHEN \"UpdateFlag\" = 1 THEN 'locked' "
        "WHEN \"UpdatedDate\" IS NOT NULL THEN 'completed' ELSE 'pending' END"
    )
    return _count_by(conn, schema, start, end, label, ("locked", "completed", "pending"))


def flag_status_counts(
    conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date
) -> dict[str, int]:
    """Rows of the window by StatusFlag (new / conflicting / resolved)."""
    return _count_by(conn, schema, start, end, '"StatusFlag"', ("new", "conflicting", "resolved"))


def unfinished_chunks(
    conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date
) -> list[dict]:
    """Pending chunks of the newest plan of each window overlapping [start, end): a run that
    failed or was stopped, to resume (re-execute from failure) or supersede (run again)."""
    cur = conn.execute(
        sql.SQL(
            "WITH newest AS (SELECT DISTINCT ON (window_start, window_end) plan_id, run_id "
            "FROM {s}.conflict_plans WHERE window_start < %(end)s AND window_end > %(start)s "
            "ORDER BY window_start, window_end, plan_id DESC) "
            "SELECT c.plan_id, n.run_id, c.chunk_id, c.est_rows, c.attempts "
            "FROM {s}.conflict_chunks c JOIN newest n USING (plan_id) "
            "WHERE c.status = 'pending' ORDER BY 1, 3"
        ).format(s=sql.Identifier(schema)),
        {"start": start, "end": end},
    )
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def reset_locks(
    conn: psycopg.Connection, schema: str, start: dt.date | None, end: dt.date | None
) -> int:
    """The seed's manual reset: UpdateFlag = NULL where it is 1 (in the window, if given)."""
    where = sql.SQL(_WINDOW if start and end else "")
    return conn.execute(
        sql.SQL(
            'UPDATE {}.conflictvisitmaps SET "UpdateFlag" = NULL WHERE "UpdateFlag" = 1 '
        ).format(sql.Identifier(schema))
        + where,
        {"start": start, "end": end},
    ).rowcount
