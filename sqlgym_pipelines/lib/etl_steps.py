"""The manual ETL's schema and data steps (seed 001), per data mode, on one Neon branch.

full:        the seed's tables; Athena's rows for the filters, upserted day by day; the six
             indexes built after the load when the table started empty (faster bulk load).
schema-only: the tables with their primary / unique keys only; no rows.
test-data:   the tables, test columns (test_scenario_id, is_generated) and test_scenarios;
             synthetic rows that satisfy every constraint, tagged with their scenario.
No mode but full reads Athena: schema-only and test-data never copy production rows.
"""

import dataclasses
import datetime as dt
import random
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
from psycopg import sql

from sqlgym_pipelines.lib import forecast_athena, forecast_sync, pg, pg_load
from sqlgym_pipelines.lib.etl_params import EtlParams

SQL_DIR = Path(__file__).parent / "sql"
SOURCE_COLUMNS = forecast_athena.COLUMNS


@dataclasses.dataclass
class DataResult:
    rows_per_table: dict[str, int]
    days: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    indexes_built_after_load: bool = False
    scenario_id: str | None = None


def create_schema(conn: psycopg.Connection, params: EtlParams) -> list[str]:
    """The tables of the mode; returns the indexes it created now (full builds them later
    when the table is empty)."""
    forecast_sync.ensure_schema(conn, indexes=False)
    if params.data_mode == "test-data":
        conn.execute(pg.load_sql(SQL_DIR / "etl_test_data_schema.sql"))
    if params.data_mode == "schema-only":
        return []
    if params.data_mode == "full" and _empty(conn):
        return []  # built after the bulk load
    forecast_sync.ensure_indexes(conn)
    return list(forecast_sync.INDEXES)


def empty_copied_tables(conn: psycopg.Connection) -> list[str]:
    """TRUNCATE the forecast tables a new branch copied from its parent (schema-only and
    test-data never hold production rows); the tables that were emptied."""
    present = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_name = ANY(%s)", (["forecast_data", "forecast_sync_status", "test_scenarios"],),
    ).fetchall()]  # fmt: skip
    if present:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in present))
        )
    return present


def _empty(conn) -> bool:
    return not conn.execute("SELECT EXISTS (SELECT 1 FROM forecast_data)").fetchone()[0]


def date_floor(params: EtlParams, today: dt.date) -> dt.date | None:
    return today - dt.timedelta(days=params.date_range_days) if params.date_range_days else None


def athena_filter(params: EtlParams, today: dt.date) -> tuple[str, list]:
    """The WHERE clause (Athena SQL, `?` parameters) of the run's filters."""
    clauses, values = [], []
    if params.states:
        clauses.append("state IN (" + ", ".join("?" for _ in params.states) + ")")
        values.extend(params.states)
    floor = date_floor(params, today)
    if floor:
        clauses.append("business_date >= ?")
        values.append(floor)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def athena_days(athena, params: EtlParams, today: dt.date) -> dict[dt.date, int]:
    """Rows per business_date in Athena for the run's filters (the full mode's expectation)."""
    where, values = athena_filter(params, today)
    table = athena.query(
        f"SELECT business_date, count(*) AS n FROM {forecast_athena.VIEW}{where} "  # noqa: S608
        "GROUP BY business_date ORDER BY business_date",
        values,
    )
    return dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))


def load_full(
    url: str, athena, params: EtlParams, today: dt.date, batch_size: int, log
) -> DataResult:
    """Athena's rows for the filters, one business_date per transaction, upserted."""
    started = time.monotonic()
    result = DataResult(rows_per_table={"forecast_data": 0})
    with pg.connection(url) as conn:
        was_empty = _empty(conn)
    expected = athena_days(athena, params, today)
    states = sql.SQL("")
    if params.states:
        states = sql.SQL(" AND state = ANY({})").format(sql.Literal(list(params.states)))
    for day in expected:
        where, values = athena_filter(params, today)
        clause = (where + " AND " if where else " WHERE ") + "business_date = ?"
        rows = athena.query(
            f"SELECT {', '.join(SOURCE_COLUMNS)} FROM {forecast_athena.VIEW}{clause}",  # noqa: S608
            [*values, day],
        )
        with pg.connection(url) as conn:
            counts = pg_load.load_arrow(
                conn, forecast_sync.TABLE, forecast_sync.conform(rows), mode="upsert",
                key=forecast_sync.NATURAL_KEY, touch_column="updated_at", batch_rows=batch_size,
                partition_where=sql.SQL("business_date = {}").format(sql.Literal(day)) + states,
            )  # fmt: skip
        log(f"{day}: {rows.num_rows} rows ({counts.inserted} new, {counts.updated} changed)")
        result.days += 1
        result.inserted += counts.inserted
        result.updated += counts.updated
        result.unchanged += counts.unchanged
    if was_empty:
        with pg.connection(url) as conn:
            forecast_sync.ensure_indexes(conn)
        result.indexes_built_after_load = True
    result.rows_per_table["forecast_data"] = sum(expected.values())
    result.seconds = time.monotonic() - started
    return result


def synthetic_rows(params: EtlParams, today: dt.date, seed: int, per_day: int = 200) -> pa.Table:
    """Rows that satisfy forecast_data's constraints and the forecast invariants."""
    rng = random.Random(seed)
    days = params.date_range_days or 7
    states = params.states or ("CA", "TX", "NY", "FL", "WA")
    data: dict[str, list] = {c: [] for c in SOURCE_COLUMNS}
    for offset in range(days):
        day = today - dt.timedelta(days=offset)
        for n in range(per_day):
            median = Decimal(rng.randrange(100, 50_000)) / 100
            low = (median * Decimal(rng.uniform(0.5, 1.0))).quantize(Decimal("0.01"))
            high = (median * Decimal(rng.uniform(1.0, 1.6))).quantize(Decimal("0.01"))
            values = (n // 20 + 1, n % 20 + 1, day, f"DMA-{n % 9}" if n % 3 else None,
                      n % 6 or None, states[n % len(states)], min(low, median), median,
                      max(high, median))  # fmt: skip
            for column, value in zip(SOURCE_COLUMNS, values, strict=True):
                data[column].append(value)
    return forecast_sync.conform(pa.table(data))


def load_test_data(url: str, params: EtlParams, today: dt.date, run_id: str, log) -> DataResult:
    started = time.monotonic()
    scenario = f"etl-{run_id[:8]}"
    seed = int(run_id.replace("-", "")[:12], 16) if run_id else 0
    rows = synthetic_rows(params, today, seed)
    rows = rows.append_column("test_scenario_id", pa.array([scenario] * rows.num_rows))
    rows = rows.append_column("is_generated", pa.array([True] * rows.num_rows))
    dates = rows.column("business_date").to_pylist()
    with pg.connection(url) as conn:
        counts = pg_load.load_arrow(
            conn, forecast_sync.TABLE, rows, mode="upsert", key=forecast_sync.NATURAL_KEY,
            touch_column="updated_at",
        )  # fmt: skip
        conn.execute(
            "INSERT INTO test_scenarios (scenario_id, description, rows_generated, first_date, "
            "last_date, states, seed) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (scenario_id) DO UPDATE SET rows_generated = EXCLUDED.rows_generated",
            (scenario, f"synthetic forecasts for {params.date_range_days or 7} day(s)",
             rows.num_rows, min(dates), max(dates), list(params.states) or None or [], seed),
        )  # fmt: skip
    log(f"scenario {scenario}: {rows.num_rows} synthetic rows")
    return DataResult(
        rows_per_table={"forecast_data": rows.num_rows, "test_scenarios": 1},
        days=len(set(dates)),
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        seconds=time.monotonic() - started,
        scenario_id=scenario,
    )
