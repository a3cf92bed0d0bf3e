"""The manual ETL's validation (seed 001 step 4): each check passes or fails with its numbers.

table existence, record count (vs Athena for the same filters in full mode), schema (every
required column with its type), integrity (NULLs in required columns, duplicate natural keys,
constraint violations), date range coverage (expected dates present, gaps listed), index
verification, performance (sample queries timed with EXPLAIN ANALYZE against a threshold).
"""

import dataclasses
import datetime as dt
import json

import psycopg
from psycopg import sql

from sqlgym_pipelines.lib import forecast_sync
from sqlgym_pipelines.lib.etl_params import EtlParams

REQUIRED = {
    "restaurant_id": "integer", "inventory_item_id": "integer", "business_date": "date",
    "dma_id": "character varying", "dc_id": "integer", "state": "character varying",
    "y_05": "numeric", "y_50": "numeric", "y_95": "numeric",
    "created_at": "timestamp without time zone", "updated_at": "timestamp without time zone",
}  # fmt: skip
NOT_NULL = ("restaurant_id", "inventory_item_id", "business_date", "state", "y_50")
SAMPLE_QUERIES = {
    "by_date": "SELECT count(*) FROM forecast_data WHERE business_date = %(day)s",
    "by_state_and_date": "SELECT sum(y_50) FROM forecast_data WHERE state = %(state)s "
    "AND business_date BETWEEN %(day)s AND %(day)s + 7",
    "by_restaurant": "SELECT * FROM forecast_data WHERE restaurant_id = %(restaurant)s "
    "AND inventory_item_id = %(item)s AND business_date = %(day)s",
}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    details: dict

    def as_dict(self) -> dict:
        return {"name": self.name, "status": "pass" if self.passed else "fail", **self.details}


def _filter(params: EtlParams, today: dt.date) -> tuple[sql.Composable, dict]:
    clauses, values = [sql.SQL("TRUE")], {}
    if params.states:
        clauses.append(sql.SQL("state = ANY(%(states)s)"))
        values["states"] = list(params.states)
    if params.date_range_days:
        clauses.append(sql.SQL("business_date >= %(floor)s"))
        values["floor"] = today - dt.timedelta(days=params.date_range_days)
    return sql.SQL(" AND ").join(clauses), values


def table_existence(conn, params: EtlParams) -> Check:
    wanted = ["forecast_data", "forecast_sync_status"]
    if params.data_mode == "test-data":
        wanted.append("test_scenarios")
    found = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()}  # fmt: skip
    missing = [t for t in wanted if t not in found]
    return Check("table_existence", not missing, {"expected": wanted, "missing": missing})


def record_count(conn, params: EtlParams, today: dt.date, expected: int | None) -> Check:
    where, values = _filter(params, today)
    if params.data_mode == "test-data":
        where = sql.SQL("is_generated")
        values = {}
    count = conn.execute(
        sql.SQL("SELECT count(*) FROM forecast_data WHERE {}").format(where), values
    ).fetchone()[0]
    passed = count == expected if expected is not None else True
    return Check("record_count", passed, {"rows": count, "expected": expected})


def schema(conn) -> Check:
    found = dict(conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'forecast_data'"
    ).fetchall())  # fmt: skip
    wrong = {c: {"expected": t, "found": found.get(c)} for c, t in REQUIRED.items()
             if found.get(c) != t}  # fmt: skip
    return Check("schema", not wrong, {"columns_checked": len(REQUIRED), "mismatches": wrong})


def integrity(conn) -> Check:
    nulls = {
        c: conn.execute(
            sql.SQL("SELECT count(*) FROM forecast_data WHERE {} IS NULL").format(sql.Identifier(c))
        ).fetchone()[0]
        for c in NOT_NULL
    }
    duplicates = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM forecast_data GROUP BY restaurant_id, "
        "inventory_item_id, business_date HAVING count(*) > 1) d"
    ).fetchone()[0]
    out_of_order = conn.execute(
        "SELECT count(*) FROM forecast_data WHERE y_05 > y_50 OR y_50 > y_95 OR y_05 > y_95"
    ).fetchone()[0]
    bad_states = conn.execute(
        "SELECT count(*) FROM forecast_data WHERE state !~ '^[A-Z]{2}$'"
    ).fetchone()[0]
    passed = not any(nulls.values()) and not duplicates and not out_of_order and not bad_states
    return Check("integrity", passed, {
        "nulls": nulls, "duplicate_keys": duplicates, "quantiles_out_of_order": out_of_order,
        "invalid_states": bad_states,
    })  # fmt: skip


def date_coverage(conn, params: EtlParams, today: dt.date, expected: list[dt.date]) -> Check:
    where, values = _filter(params, today)
    present = {r[0] for r in conn.execute(
        sql.SQL("SELECT DISTINCT business_date FROM forecast_data WHERE {}").format(where), values
    ).fetchall()}  # fmt: skip
    missing = sorted(set(expected) - present)
    gaps = []
    if present:  # holes inside the loaded span, whatever the source says
        day, last = min(present), max(present)
        while day <= last:
            if day not in present:
                gaps.append(day)
            day += dt.timedelta(days=1)
    return Check("date_range_coverage", not missing and not gaps, {
        "expected_days": len(expected), "present_days": len(present),
        "missing": [str(d) for d in missing], "gaps": [str(d) for d in gaps],
        "first": str(min(present)) if present else None,
        "last": str(max(present)) if present else None,
    })  # fmt: skip


def indexes(conn, params: EtlParams) -> Check:
    report = forecast_sync.index_report(conn)
    unique_ok = conn.execute(
        "SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relname = 'forecast_data' AND i.indisunique AND NOT i.indisprimary"
    ).fetchone()[0]
    expected = {} if params.data_mode == "schema-only" else report
    bad = {n: s for n, s in expected.items() if s != "valid"}
    passed = bool(unique_ok) and not bad
    return Check("index_verification", passed, {
        "natural_key_unique_index": "valid" if unique_ok else "missing or invalid",
        "indexes": report if params.data_mode != "schema-only" else "not expected (schema-only)",
        "problems": bad,
    })  # fmt: skip


def performance(conn, threshold_ms: float) -> Check:
    sample = conn.execute(
        "SELECT business_date, state, restaurant_id, inventory_item_id FROM forecast_data LIMIT 1"
    ).fetchone()
    if sample is None:
        return Check("performance", True, {"skipped": "no rows to query"})
    args = dict(zip(("day", "state", "restaurant", "item"), sample, strict=True))
    timings = {}
    for name, query in SAMPLE_QUERIES.items():
        plan = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + sql.SQL(query), args
        ).fetchone()[0]
        plan = plan if isinstance(plan, list) else json.loads(plan)
        top = plan[0]
        timings[name] = {
            "ms": round(top["Execution Time"] + top.get("Planning Time", 0), 3),
            "plan": top["Plan"]["Node Type"],
            "uses_index": "Index" in json.dumps(top["Plan"]),
        }
    slow = [n for n, t in timings.items() if t["ms"] > threshold_ms]
    return Check("performance", not slow, {"threshold_ms": threshold_ms, "queries": timings,
                                           "slow": slow})  # fmt: skip


def validate(
    conn: psycopg.Connection,
    params: EtlParams,
    today: dt.date,
    *,
    expected_rows: int | None,
    expected_days: list[dt.date],
    threshold_ms: float = 1000.0,
) -> list[Check]:
    first = table_existence(conn, params)
    if not first.passed:
        return [first]
    return [
        first,
        record_count(conn, params, today, expected_rows),
        schema(conn),
        integrity(conn),
        date_coverage(conn, params, today, expected_days),
        indexes(conn, params),
        performance(conn, threshold_ms),
    ]
