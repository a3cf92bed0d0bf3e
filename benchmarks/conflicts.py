"""Conflict report Task 02 (seed 003): monolithic vs chunked vs the seed's row-by-row loop.

    python benchmarks/conflicts.py [--rows N] [--json PATH]

Starts its own local stack (fsync on). Renders one VisitDate of visits with the demo's
generator (caregivers with 3 to 8 visits, random quarter-hour starts, 30 min to 3 h long,
patients spread over New York) for as many caregivers as give about N conflictvisitmaps
rows (measured on a 2,000-caregiver sample through the real SQL), and stages them with
Task 01's stage_days. Then, each in its own schema holding the same staged visits and the
same run timestamp:
  monolithic   conflict_task02.monolithic over the day, one transaction, committed;
  chunked      conflict_plan.create_plan with the seed's defaults (10,000 / 50,000 / 1,000)
               then run_chunks with max_concurrency 5 (five connections, a transaction per
               chunk, as the Dagster steps run them), committed;
  *_rerun      the same again over the filled table (every row marked, updated, released);
  row_by_row   the seed's loop over 10,000 rows of the table: read the pair's two visits,
               compute its columns in Python (lib/conflict_rules.py), UPDATE the row, commit;
               rows/s extrapolated.
The chunked table is then compared with the monolithic one, every column (EXCEPT both ways).
Peak RSS is this process's (the work is in Postgres; Python holds the visits and the plan).
"""

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import code_version, machine, scratch_stack, write_result  # noqa: E402

from sqlgym_pipelines.lib import conflict_plan, conflict_rules, conflict_visits, pg  # noqa: E402
from sqlgym_pipelines.lib import conflict_task02 as task02  # noqa: E402
from sqlgym_pipelines.local.demo_conflicts import visit_rows  # noqa: E402

DAY = dt.date(2026, 3, 2)
END = DAY + dt.timedelta(days=1)
RUN_TS = dt.datetime(2026, 3, 3, 1, 0)
RERUN_TS = dt.datetime(2026, 3, 4, 1, 0)
MPH = 30.0
SAMPLE_CAREGIVERS = 2_000
ROW_BY_ROW_ROWS = 10_000


def fresh_schema(url: str, schema: str, visits: pa.Table) -> None:
    with pg.connection(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        task02.ensure_schema(conn, schema)
    with pg.connection(url) as conn:
        conflict_visits.stage_days(conn, schema, [DAY], lambda day: visits)
        conn.execute(sql.SQL("ANALYZE {}.visits").format(sql.Identifier(schema)))


def rows_in(url: str, schema: str) -> int:
    with pg.connection(url) as conn:
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {}.conflictvisitmaps").format(sql.Identifier(schema))
        ).fetchone()[0]


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def monolithic(url: str, schema: str, run_ts: dt.datetime):
    with pg.connection(url) as conn:
        return task02.monolithic(conn, schema, DAY, END, run_ts=run_ts, mph=MPH)


def chunked(url: str, schema: str, run_ts: dt.datetime, settings: conflict_plan.ChunkSettings):
    with pg.connection(url) as conn:
        plan = conflict_plan.create_plan(conn, schema, DAY, END, settings, run_ts=run_ts, mph=MPH)
    results = conflict_plan.run_chunks(
        lambda: pg.connection(url), schema, plan.plan_id, plan.chunk_ids, settings.max_concurrency
    )
    return plan, results


def caregivers_for(url: str, rows: int) -> int:
    sample = visit_rows(DAY, SAMPLE_CAREGIVERS, seed=1)
    fresh_schema(url, "bench_sample", sample)
    monolithic(url, "bench_sample", RUN_TS)
    per_caregiver = rows_in(url, "bench_sample") / SAMPLE_CAREGIVERS
    return max(1, round(rows / per_caregiver))


def differences(url: str, a: str, b: str) -> int:
    cols = sql.SQL(", ").join(map(sql.Identifier, conflict_rules.COLUMNS))
    query = sql.SQL(
        "SELECT count(*) FROM ((SELECT {c} FROM {a}.conflictvisitmaps EXCEPT ALL "
        "SELECT {c} FROM {b}.conflictvisitmaps) UNION ALL (SELECT {c} FROM {b}.conflictvisitmaps "
        "EXCEPT ALL SELECT {c} FROM {a}.conflictvisitmaps)) d"
    ).format(c=cols, a=sql.Identifier(a), b=sql.Identifier(b))
    with pg.connection(url) as conn:
        return conn.execute(query).fetchone()[0]


def row_by_row(url: str, schema: str, rows: int) -> float:
    """The seed's per-row loop (its ~150 rows/s): seconds for `rows` rows."""
    s = sql.Identifier(schema)
    names = conflict_rules.VISIT_COLUMNS
    read_visit = sql.SQL(
        'SELECT {} FROM {}.visits WHERE "VisitDate" = %s AND "VisitID" = %s'
    ).format(sql.SQL(", ").join(map(sql.Identifier, names)), s)
    computed = list(conflict_rules.COMPUTED)
    update = sql.SQL(
        'UPDATE {}.conflictvisitmaps SET {}, "UpdatedDate" = %s WHERE "VisitDate" = %s '
        'AND "SSN" = %s AND "VisitID" = %s AND "ConVisitID" = %s'
    ).format(s, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in computed))
    with pg.connection(url, autocommit=True) as conn:
        keys = conn.execute(
            sql.SQL(
                'SELECT "VisitDate", "SSN", "VisitID", "ConVisitID" FROM {}.conflictvisitmaps '
                "LIMIT %s"
            ).format(s),
            (rows,),
        ).fetchall()
        started = time.perf_counter()
        for day, ssn, visit_id, con_visit_id in keys:
            v, c = (
                conflict_rules.Visit(
                    **dict(zip(names, conn.execute(read_visit, (day, i)).fetchone(), strict=True))
                )
                for i in (visit_id, con_visit_id)
            )
            values = conflict_rules.pair_values(v, c, MPH)
            conn.execute(
                update,
                [values[name] for name in computed] + [RERUN_TS, day, ssn, visit_id, con_visit_id],
            )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/conflicts.json")
    args = parser.parse_args()

    with scratch_stack("conflicts") as (root, stack):
        info = stack.up(fast=False)
        pg.create_database(info.pg_url, "bench")
        url = info.url_for("bench")
        caregivers = caregivers_for(url, args.rows)
        visits = visit_rows(DAY, caregivers, seed=2)
        print(f"{caregivers:,} caregivers, {visits.num_rows:,} visits on {DAY}", flush=True)
        settings = conflict_plan.ChunkSettings()

        fresh_schema(url, "bench_mono", visits)
        mono_s, mono_counts = timed(lambda: monolithic(url, "bench_mono", RUN_TS))
        rows = rows_in(url, "bench_mono")
        print(f"monolithic: {rows:,} rows in {mono_s:.2f}s {mono_counts}", flush=True)

        fresh_schema(url, "bench_chunk", visits)
        chunk_s, (plan, results) = timed(lambda: chunked(url, "bench_chunk", RUN_TS, settings))
        print(f"chunked: {len(plan.chunks)} chunks in {chunk_s:.2f}s", flush=True)
        diff_first = differences(url, "bench_mono", "bench_chunk")

        mono_rerun_s, _ = timed(lambda: monolithic(url, "bench_mono", RERUN_TS))
        chunk_rerun_s, _ = timed(lambda: chunked(url, "bench_chunk", RERUN_TS, settings))
        print(f"reruns: monolithic {mono_rerun_s:.2f}s, chunked {chunk_rerun_s:.2f}s", flush=True)
        diff_rerun = differences(url, "bench_mono", "bench_chunk")

        rbr_s = row_by_row(url, "bench_mono", ROW_BY_ROW_ROWS)
        rbr_rate = ROW_BY_ROW_ROWS / rbr_s
        chunk_rate = rows / chunk_s
        chunk_sizes = [c.est_rows for c in plan.chunks]
        result = {
            "benchmark": "conflicts",
            **code_version(),
            "machine": machine(),
            "rows": rows,
            "visits": visits.num_rows,
            "caregivers": caregivers,
            "chunks": len(plan.chunks),
            "chunk_est_rows_min_max": [min(chunk_sizes), max(chunk_sizes)],
            "settings": settings.__dict__,
            "monolithic_seconds": round(mono_s, 3),
            "chunked_seconds": round(chunk_s, 3),
            "ratio_chunked_to_monolithic": round(chunk_s / mono_s, 3),
            "monolithic_rerun_seconds": round(mono_rerun_s, 3),
            "chunked_rerun_seconds": round(chunk_rerun_s, 3),
            "ratio_chunked_to_monolithic_rerun": round(chunk_rerun_s / mono_rerun_s, 3),
            "chunked_rows_per_s": round(chunk_rate),
            "row_by_row_rows": ROW_BY_ROW_ROWS,
            "row_by_row_seconds": round(rbr_s, 3),
            "row_by_row_rows_per_s": round(rbr_rate, 1),
            "row_by_row_extrapolated_seconds": round(rows / rbr_rate, 1),
            "speedup_vs_row_by_row": round(chunk_rate / rbr_rate, 1),
            "seed_rows_per_s": 150,
            "speedup_vs_seed": round(chunk_rate / 150, 1),
            "chunked_equals_monolithic": diff_first == 0 and diff_rerun == 0,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        write_result(args.json, result)


if __name__ == "__main__":
    main()
