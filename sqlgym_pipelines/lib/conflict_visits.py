"""Task 01 of seed 003: a window's visits from Snowflake into the Postgres staging table,
one VisitDate at a time, each day replaced as a whole (so a re-run is idempotent)."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from sqlgym_pipelines.lib import pg_load
from sqlgym_pipelines.lib.conflict_rules import VISIT_COLUMNS
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed

DEFAULT_SOURCE_TABLE = "VISITS"
# A Snowflake name, optionally database- and schema-qualified; unquoted or "quoted".
_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"[^"]+")'
_TABLE = re.compile(rf"^{_PART}(?:\.{_PART}){{0,2}}$")
# What each source column becomes in Postgres; Task 01 casts to these.
ARROW_TYPES = {
    "VisitID": pa.int64(),
    "ProviderID": pa.int64(),
    "PatientID": pa.int64(),
    "SSN": pa.string(),
    "VisitDate": pa.date32(),
    "SchStartTime": pa.timestamp("us"),
    "SchEndTime": pa.timestamp("us"),
    "VisitStartTime": pa.timestamp("us"),
    "VisitEndTime": pa.timestamp("us"),
    "PatientLatitude": pa.float64(),
    "PatientLongitude": pa.float64(),
    "ProviderName": pa.string(),
    "PatientName": pa.string(),
    "ServiceCode": pa.string(),
}
assert tuple(ARROW_TYPES) == VISIT_COLUMNS


def source_table() -> str:
    """SQLGYM_CONFLICTS_SOURCE_TABLE: the Snowflake visits table (default VISITS)."""
    value = os.environ.get("SQLGYM_CONFLICTS_SOURCE_TABLE") or DEFAULT_SOURCE_TABLE
    if not _TABLE.match(value):
        raise ConfigError(
            f"SQLGYM_CONFLICTS_SOURCE_TABLE={value!r} is not a Snowflake table name "
            "(table, schema.table or database.schema.table)"
        )
    return value


def missing_columns(available: Iterable[str]) -> list[str]:
    """The contract's columns the source lacks (Snowflake names compare case-insensitively)."""
    have = {name.upper() for name in available}
    return [name for name in VISIT_COLUMNS if name.upper() not in have]


def check_source(run_query: Callable[[str], pa.Table], table: str) -> list[str]:
    """The source table's columns; a ConfigError names the missing ones and what exists."""
    try:
        columns = run_query(f"SELECT * FROM {table} LIMIT 0").schema.names
    except QueryFailed as exc:
        raise ConfigError(f"cannot read the visits table {table}: {exc}") from exc
    missing = missing_columns(columns)
    if missing:
        raise ConfigError(
            f"the visits table {table} lacks column(s) {', '.join(missing)} "
            f"(it has: {', '.join(columns)})"
        )
    return columns


def day_query(table: str, columns: Iterable[str] = VISIT_COLUMNS) -> str:
    """One day's visits; `columns` are the source's own names (as check_source returns them),
    quoted, so a table created with quoted mixed-case names reads as well as an unquoted one."""
    actual = {name.upper(): name for name in columns}
    quoted = [_quote(actual.get(name.upper(), name.upper())) for name in VISIT_COLUMNS]
    date = quoted[VISIT_COLUMNS.index("VisitDate")]
    return f"SELECT {', '.join(quoted)} FROM {table} WHERE {date} = %s"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def conform(raw: pa.Table, day: dt.date) -> pa.Table:
    """The source rows with the contract's names and types; a value that does not fit names
    its column and day."""
    by_upper = {name.upper(): i for i, name in enumerate(raw.schema.names)}
    columns = []
    for name, arrow_type in ARROW_TYPES.items():
        column = raw.column(by_upper[name.upper()])
        try:
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = column.cast(pa.timestamp(column.type.unit))  # UTC wall time
            columns.append(column.cast(arrow_type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConfigError(
                f"visits of {day}: column {name} ({column.type}) does not convert to "
                f"{arrow_type}: {exc}"
            ) from exc
    return pa.Table.from_arrays(columns, names=list(ARROW_TYPES))


def stage_days(
    conn: psycopg.Connection,
    schema: str,
    days: Iterable[dt.date],
    fetch_day: Callable[[dt.date], pa.Table],
) -> dict[dt.date, int]:
    """Replace each day's staged visits with the source's (caller's transaction); rows per day."""
    target = pg_load.TableRef(schema, "visits")
    rows = {}
    for day in days:
        data = conform(fetch_day(day), day)
        conn.execute(sql.SQL('DELETE FROM {} WHERE "VisitDate" = %s').format(target.ident), (day,))
        try:
            rows[day] = pg_load.copy_arrow(conn, target, data)
        except QueryFailed as exc:
            if "duplicate key" in str(exc):
                raise ConfigError(
                    f"the visits of {day} repeat a VisitID, which must identify one visit: {exc}"
                ) from exc
            raise
    return rows


def fetcher(
    snowflake: Any, table: str, columns: Iterable[str] = VISIT_COLUMNS
) -> Callable[[dt.date], pa.Table]:
    """fetch_day for stage_days, from a SnowflakeResource."""
    query = day_query(table, columns)
    return lambda day: snowflake.fetch_arrow(query, (day,))
