"""Task 02 of seed 003 as set-based SQL over a set of (VisitDate, SSN) keys.

The monolithic run and every chunk run the same statements; only the keys differ (all the
keys of the window, or one chunk's), which is what makes the chunked result equal the
monolithic one. Each call runs in the caller's transaction: the seed's two-phase protocol
(mark with UpdateFlag = 1, then update and release) commits or rolls back as a whole, so
no row is ever left locked by a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError

SQL_DIR = Path(__file__).parent / "sql"
DEFAULT_SCHEMA = "conflicts"
DEFAULT_MPH = 30.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


@dataclass
class Task02Counts:
    """Rows marked (locked), updated and released, inserted as new, and resolved as gone."""

    marked: int = 0
    updated: int = 0
    inserted: int = 0
    gone: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def schema_name() -> str:
    """SQLGYM_CONFLICTS_SCHEMA: the Postgres schema of the conflict tables (default conflicts)."""
    value = os.environ.get("SQLGYM_CONFLICTS_SCHEMA") or DEFAULT_SCHEMA
    if not _IDENTIFIER.match(value):
        raise ConfigError(f"SQLGYM_CONFLICTS_SCHEMA={value!r} is not a plain Postgres identifier")
    return value


def average_mph() -> float:
    """SQLGYM_CONFLICTS_AVG_MPH: the travel speed behind ETATravelMinutes and DistanceFlag."""
    value = os.environ.get("SQLGYM_CONFLICTS_AVG_MPH") or str(DEFAULT_MPH)
    try:
        mph = float(value)
    except ValueError:
        mph = 0.0
    if not mph > 0 or mph == float("inf"):
        raise ConfigError(f"SQLGYM_CONFLICTS_AVG_MPH={value!r} is not a positive speed in mph")
    return mph


def statement(name: str, schema: str) -> sql.Composed:
    return pg.load_sql(SQL_DIR / f"conflicts_{name}.sql").format(schema=sql.Identifier(schema))


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    """The staging, target and plan tables and the rule functions (idempotent)."""
    # Concurrent runs creating the same objects would race in the catalog: one at a time.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('sqlgym_conflicts_schema'))")
    conn.execute(statement("schema", schema))


def create_keys(conn: psycopg.Connection) -> None:
    conn.execute(
        'CREATE TEMP TABLE _conflict_keys ("VisitDate" date, "SSN" text, '
        'PRIMARY KEY ("VisitDate", "SSN")) ON COMMIT DROP'
    )


def keys_of_window(conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date) -> int:
    """Fill _conflict_keys with every key of [start, end): in the staged visits or the table."""
    create_keys(conn)
    cur = conn.execute(
        sql.SQL(
            'INSERT INTO _conflict_keys SELECT "VisitDate", "SSN" FROM {s}.visits '
            'WHERE "VisitDate" >= %(start)s AND "VisitDate" < %(end)s AND "SSN" IS NOT NULL '
            'UNION SELECT "VisitDate", "SSN" FROM {s}.conflictvisitmaps '
            'WHERE "VisitDate" >= %(start)s AND "VisitDate" < %(end)s'
        ).format(s=sql.Identifier(schema)),
        {"start": start, "end": end},
    )
    return cur.rowcount


def run_keys(
    conn: psycopg.Connection, schema: str, *, run_ts: dt.datetime, mph: float
) -> Task02Counts:
    """Task 02 over the keys in _conflict_keys: mark, compute, update and release, insert."""
    conn.execute("ANALYZE _conflict_keys")
    counts = Task02Counts()
    counts.marked = conn.execute(statement("mark", schema)).rowcount
    conn.execute(statement("pairs", schema), {"mph": mph})
    # Statistics of the join columns only: the other 25 cost more to gather than they help.
    conn.execute('ANALYZE _conflict_pairs ("VisitDate", "SSN", "VisitID", "ConVisitID", flagged)')
    existing = counts.marked > 0
    params = {"run_ts": run_ts, "existing": existing}
    # Keys without rows yet (a first run) have nothing to update, look up or resolve: no
    # join with the table at all, whose statistics lag behind the rows this run adds.
    if existing:
        counts.updated = conn.execute(statement("update", schema), params).rowcount
    counts.inserted = conn.execute(statement("insert", schema), params).rowcount
    if existing:
        counts.gone = conn.execute(statement("release_gone", schema), params).rowcount
    conn.execute("DROP TABLE _conflict_pairs")
    conn.execute("DROP TABLE _conflict_keys")
    return counts


def monolithic(
    conn: psycopg.Connection,
    schema: str,
    start: dt.date,
    end: dt.date,
    *,
    run_ts: dt.datetime,
    mph: float,
) -> Task02Counts:
    """The seed's monolithic Task 02: every key of [start, end) in one statement set."""
    keys_of_window(conn, schema, start, end)
    return run_keys(conn, schema, run_ts=run_ts, mph=mph)
