"""The seed's data rules on forecast_data, per business_date, counted in one pass."""

import datetime as dt

import psycopg

from sqlgym_pipelines.lib.forecast_sync import NATURAL_KEY, TABLE, index_report

# rule -> the rows breaking it (SQL over forecast_data); all counted in one scan of the days
ROW_RULES = {
    "y_50_not_null": "y_50 IS NULL",
    "quantiles_ordered": "y_05 > y_50 OR y_50 > y_95 OR y_05 > y_95",  # a NULL bound is not checked
    "state_is_two_letters": "state !~ '^[A-Z]{2}$'",
}
KEY_RULE = "natural_key_unique"


def neon_counts(conn: psycopg.Connection, days: list[dt.date]) -> dict[dt.date, int]:
    rows = conn.execute(
        "SELECT business_date, count(*) FROM forecast_data WHERE business_date = ANY(%s) "
        "GROUP BY 1",
        (days,),
    ).fetchall()
    found = dict(rows)
    return {d: found.get(d, 0) for d in days}


def violations(conn: psycopg.Connection, days: list[dt.date]) -> dict[str, int]:
    """{rule: rows of these days breaking it}, for ROW_RULES and KEY_RULE."""
    counts = ", ".join(f"count(*) FILTER (WHERE {where})" for where in ROW_RULES.values())
    found = conn.execute(
        f"SELECT {counts} FROM forecast_data WHERE business_date = ANY(%s)",  # noqa: S608
        (days,),
    ).fetchone()
    return {**dict(zip(ROW_RULES, found, strict=True)), KEY_RULE: duplicate_keys(conn, days)}


def duplicate_keys(conn: psycopg.Connection, days: list[dt.date]) -> int:
    """Natural keys held by more than one row. None can be while a valid unique index covers
    exactly the key (the seed's UNIQUE constraint): then nothing is scanned."""
    if enforced_by_unique_index(conn):
        return 0
    return conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM forecast_data WHERE business_date = ANY(%s) "
        "GROUP BY restaurant_id, inventory_item_id, business_date HAVING count(*) > 1) d",
        (days,),
    ).fetchone()[0]


def enforced_by_unique_index(conn: psycopg.Connection) -> bool:
    """A valid unique index on exactly the natural key, whose columns are all NOT NULL."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(%s) "
        "AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND i.indnkeyatts = cardinality(%s::text[]) AND (SELECT array_agg(a.attname::text "
        "ORDER BY a.attname) = %s::text[] AND bool_and(a.attnotnull) FROM pg_attribute a "
        "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey[0:i.indnkeyatts - 1])))",
        (TABLE.ident.as_string(conn), list(NATURAL_KEY), sorted(NATURAL_KEY)),
    ).fetchone()[0]


def indexes(conn) -> dict[str, str]:
    return index_report(conn)
