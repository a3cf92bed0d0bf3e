"""The seed's data rules on forecast_data, per business_date: each returns (passed, numbers)."""

import datetime as dt

import psycopg

from sqlgym_pipelines.lib.forecast_sync import index_report


def _one(conn: psycopg.Connection, query: str, days: list[dt.date]) -> int:
    return conn.execute(query, (days,)).fetchone()[0]


def neon_counts(conn: psycopg.Connection, days: list[dt.date]) -> dict[dt.date, int]:
    rows = conn.execute(
        "SELECT business_date, count(*) FROM forecast_data WHERE business_date = ANY(%s) "
        "GROUP BY 1",
        (days,),
    ).fetchall()
    found = dict(rows)
    return {d: found.get(d, 0) for d in days}


def y_50_nulls(conn, days) -> int:
    return _one(
        conn,
        "SELECT count(*) FROM forecast_data WHERE business_date = ANY(%s) AND y_50 IS NULL",
        days,
    )


def quantiles_out_of_order(conn, days) -> int:
    """Rows where y_05 <= y_50 <= y_95 does not hold (a NULL bound is not checked)."""
    return _one(
        conn,
        "SELECT count(*) FROM forecast_data WHERE business_date = ANY(%s) "
        "AND (y_05 > y_50 OR y_50 > y_95 OR y_05 > y_95)",
        days,
    )


def bad_states(conn, days) -> int:
    return _one(
        conn,
        "SELECT count(*) FROM forecast_data WHERE business_date = ANY(%s) "
        "AND state !~ '^[A-Z]{2}$'",
        days,
    )


def duplicate_keys(conn, days) -> int:
    return _one(
        conn,
        "SELECT count(*) FROM (SELECT 1 FROM forecast_data WHERE business_date = ANY(%s) "
        "GROUP BY restaurant_id, inventory_item_id, business_date HAVING count(*) > 1) d",
        days,
    )


def indexes(conn) -> dict[str, str]:
    return index_report(conn)
