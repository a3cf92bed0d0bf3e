"""The forecast sync (seed 002): forecast Parquet in S3 -> Athena -> Neon `forecast_data`.

A business_date is the unit of work: its rows are read from the Athena view, upserted on the
natural key (restaurant_id, inventory_item_id, business_date) in one transaction, and rows of
that day that the source no longer has are deleted, so Neon holds exactly Athena's day.
Every attempt is recorded in `forecast_sync_status` (the seed's table), failures included.
"""

import dataclasses
import datetime as dt
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from sqlgym_pipelines.lib import pg, pg_load
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.pg_load import TableRef

SQL_DIR = Path(__file__).parent / "sql"
TABLE = TableRef("public", "forecast_data")
NATURAL_KEY = ("restaurant_id", "inventory_item_id", "business_date")
# The view's columns and the types forecast_data stores them as (seed 002 §4).
SCHEMA = pa.schema(
    [
        ("restaurant_id", pa.int32()),
        ("inventory_item_id", pa.int32()),
        ("business_date", pa.date32()),
        ("dma_id", pa.string()),
        ("dc_id", pa.int32()),
        ("state", pa.string()),
        ("y_05", pa.decimal128(10, 2)),
        ("y_50", pa.decimal128(10, 2)),
        ("y_95", pa.decimal128(10, 2)),
    ]
)
COLUMNS = tuple(SCHEMA.names)
INDEXES = (
    "idx_forecast_business_date",
    "idx_forecast_state",
    "idx_forecast_state_date",
    "idx_forecast_dma",
    "idx_forecast_dc",
    "idx_forecast_composite",
)
DEFAULT_BATCH_SIZE = 10_000


@dataclasses.dataclass
class DayResult:
    day: dt.date
    source_rows: int
    counts: pg_load.MergeCounts
    seconds: float


def ensure_schema(conn: psycopg.Connection, *, indexes: bool = True) -> None:
    """forecast_data, forecast_sync_status and (unless told not to) the six indexes."""
    conn.execute(pg.load_sql(SQL_DIR / "forecast_schema.sql"))
    if indexes:
        ensure_indexes(conn)


def ensure_indexes(conn: psycopg.Connection) -> None:
    conn.execute(pg.load_sql(SQL_DIR / "forecast_indexes.sql"))


def index_report(conn: psycopg.Connection) -> dict[str, str]:
    """{index: 'valid' | 'invalid' | 'missing'} for the six indexes the seed names."""
    rows = conn.execute(
        "SELECT c.relname, i.indisvalid AND i.indisready FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s",
        (TABLE.schema, TABLE.name),
    ).fetchall()
    found = dict(rows)
    return {
        name: "missing" if name not in found else ("valid" if found[name] else "invalid")
        for name in INDEXES
    }


def conform(table: pa.Table) -> pa.Table:
    """The source rows in forecast_data's types; a missing column or a lossy value is an error."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"the forecast source has no column(s) {', '.join(missing)} "
            f"(columns: {', '.join(table.column_names)})"
        )
    arrays = []
    for field in SCHEMA:
        column = table.column(field.name)
        try:
            arrays.append(pc.cast(column, field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if pa.types.is_decimal(field.type) and pa.types.is_floating(column.type):
                # forecasts come as doubles: round half-even to cents, as numeric(10,2) would
                arrays.append(pc.cast(pc.round(column, 2), field.type, safe=False))
                continue
            raise ConfigError(f"forecast column {field.name!r} ({column.type}): {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def load_day(
    conn: psycopg.Connection,
    day: dt.date,
    rows: pa.Table,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pg_load.MergeCounts:
    """Upsert the day's rows (updated_at bumped only on change), delete the day's rows the
    source dropped: one transaction, the caller's."""
    day_where = sql.SQL("business_date = {}").format(sql.Literal(day))
    if rows.num_rows == 0:
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE ").format(TABLE.ident) + day_where
        ).rowcount
        return pg_load.MergeCounts(deleted=deleted)
    other_days = pc.sum(pc.not_equal(rows.column("business_date"), pa.scalar(day))).as_py()
    if other_days:
        raise ConfigError(f"{other_days} source row(s) for {day} have another business_date")
    return pg_load.load_arrow(
        conn,
        TABLE,
        conform(rows),
        mode="upsert",
        key=NATURAL_KEY,
        touch_column="updated_at",
        batch_rows=batch_size,
        partition_where=day_where,
        delete_missing=True,
    )


def record_status(
    url: str,
    sync_type: str,
    day: dt.date | None,
    records: int | None,
    status: str,
    error: str | None = None,
) -> None:
    """One row of forecast_sync_status, in its own transaction (a failed load still records)."""
    with pg.connection(url) as conn:
        conn.execute(
            "INSERT INTO forecast_sync_status (sync_type, last_sync_timestamp, last_sync_date, "
            "records_synced, status, error_message) VALUES (%s, now() AT TIME ZONE 'UTC', %s, "
            "%s, %s, %s)",
            (sync_type, day, records, status, error[:4000] if error else None),
        )


def loaded_days(conn: psycopg.Connection) -> set[dt.date]:
    """The business_dates forecast_data holds rows for (idx_forecast_business_date)."""
    rows = conn.execute("SELECT DISTINCT business_date FROM forecast_data").fetchall()
    return {r[0] for r in rows}


def last_successes(conn: psycopg.Connection) -> dict[dt.date, dt.datetime]:
    """The last successful sync (UTC) of every business_date that has one."""
    rows = conn.execute(
        "SELECT last_sync_date, max(last_sync_timestamp) FROM forecast_sync_status "
        "WHERE status = 'success' AND last_sync_date IS NOT NULL GROUP BY 1"
    ).fetchall()
    return {day: stamp.replace(tzinfo=dt.UTC) for day, stamp in rows}
