"""Forecast sync (S3 Parquet -> Athena -> Neon forecast_data) speed and memory vs the COPY floor.

    python benchmarks/forecast_load.py [--rows N] [--days D] [--repeat K] [--json PATH]

Starts its own local stack (fsync on), renders N forecast rows over D business_dates from
2026-02-01 (N/D rows a day: restaurants x 200 items, the demo's columns and NULLs; two days
per Parquet file, as the demo drops them) and uploads them to the stack's moto datalake bucket
under forecast/. Then, median of K:
  floor     COPY forecast_data (the nine columns) FROM STDIN (FORMAT csv) of the same rows,
            rendered by pyarrow to a file and streamed by psycopg into an empty forecast_data
            with its six indexes (plus the id key and the natural-key unique), committed;
  naive     psycopg executemany of INSERT ... ON CONFLICT (natural key) DO UPDATE ... WHERE
            IS DISTINCT FROM (the pipeline's semantics: updated_at moves only on change) in
            batches of 10,000, one commit a batch, into a forecast_data holding the initial
            rows, with the re-load's rows (half of them changed); the Python tuples are built
            before the clock starts;
  initial   forecast_sync_job over the whole date range (one single-run backfill: the range
            tags) in a fresh process, whose peak RSS is read, into an empty forecast_data in
            the local Neon main branch (neon_main);
  upsert    the same job again after the files were rewritten with the y values of every
            other row changed: 50% updated, 50% unchanged (VACUUM ANALYZE before it).
After the last upsert, forecast_data is compared with the expected rows value by value.
Autovacuum stays on, as in production (an autovacuum ANALYZE in the middle of the initial load
once sent pg_load.delete_absent quadratic: stale_stats_probe checks that it no longer does).
A one-off profile follows (in the parent, through the real functions, timed by wrapping them):
Athena reads (forecast_athena.day_rows per day) vs conform, COPY to staging, dedupe, merge
INSERT, delete of absent rows and commit, for the initial load and the upsert, with and
without the six secondary indexes (index maintenance), and two what-ifs that change no code:
BATCH_SIZE = a whole day, and forecast_data at fillfactor 70 (room for HOT updates).
The child's peak RSS is its VmHWM (ru_maxrss would include the forking parent's peak).
"""

import argparse
import collections
import datetime as dt
import io
import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import code_version, machine, run_child, scratch_stack, write_result  # noqa: E402

from sqlgym_pipelines.lib import forecast_athena, forecast_sync, pg, pg_load  # noqa: E402
from sqlgym_pipelines.local.demo_forecast import SCHEMA, STATES  # noqa: E402
from sqlgym_pipelines.local.provision import aws_client, provision  # noqa: E402
from sqlgym_pipelines.resources.athena import AthenaResource  # noqa: E402

JOB = "forecast_sync_job"
FIRST_DAY = dt.date(2026, 2, 1)
PARTITION_START = "2026-01-01"  # the forecast partitions must hold the days
DAYS_PER_FILE = 2
ITEMS = 200  # inventory items per restaurant
NAIVE_BATCH = 10_000
TABLE_STEP = "neon__public__forecast_data"
TABLE_ASSET = "neon/public/forecast_data"
ATHENA_ASSET = "athena/athena_forecast"
MARK = "@@BENCH@@"
COLUMNS = forecast_sync.COLUMNS
KEY = forecast_sync.NATURAL_KEY
VALUES = [c for c in COLUMNS if c not in KEY]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

CHILD = """
import json, re, sys, time
started = time.perf_counter()
import dagster as dg
from sqlgym_pipelines.definitions import defs

def hwm_mb():
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak into the child's ru_maxrss
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0

d = defs()
job = d.resolve_job_def(sys.argv[1])
load_seconds = time.perf_counter() - started
baseline = hwm_mb()  # Dagster + definitions
instance = dg.DagsterInstance.ephemeral()
start = time.perf_counter()
result = job.execute_in_process(
    instance=instance,
    tags={"dagster/asset_partition_range_start": sys.argv[2],
          "dagster/asset_partition_range_end": sys.argv[3]},
)
seconds = time.perf_counter() - start
begun, steps, days = {}, {}, {}
for entry in instance.all_logs(result.run_id):
    event = entry.dagster_event
    day = re.match(r"(\\d{4}-\\d\\d-\\d\\d): \\d+ rows from Athena.* in ([\\d.]+)s$", entry.user_message or "")
    if event is None and day:
        days[day.group(1)] = float(day.group(2))
    if event is None or not entry.step_key:
        continue
    if event.event_type_value == "STEP_START":
        begun[entry.step_key] = entry.timestamp
    elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
        steps[entry.step_key] = entry.timestamp - begun.get(entry.step_key, entry.timestamp)
metadata = {}
for event in result.get_asset_materialization_events():
    values = {k: v.value for k, v in event.materialization.metadata.items()}
    metadata["/".join(event.asset_key.path)] = {
        k: v for k, v in values.items() if isinstance(v, int | float | str) and k != "ddl"
    }
checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
print(sys.argv[4] + json.dumps({
    "success": result.success, "seconds": seconds, "load_seconds": load_seconds,
    "baseline_rss_mb": baseline, "peak_rss_mb": hwm_mb(), "days": days,
    "steps": steps, "metadata": metadata, "checks": checks,
}))
"""


# -- the rows ------------------------------------------------------------------------------
def _mod(values: pa.Array, n: int) -> pa.Array:
    """values % n for non-negative integers (pyarrow's integer divide truncates)."""
    return pc.subtract(values, pc.multiply(pc.divide(values, n), n))


def _cents_to_float(cents: pa.Array) -> pa.Array:
    return pc.divide(pc.cast(cents, pa.float64()), 100.0)


def day_table(day: dt.date, rows: int, *, changed: bool) -> pa.Table:
    """One business_date's forecast rows as the files carry them (y as doubles of whole cents).

    `changed` adds 1.00 to y_05, y_50 and y_95 of every other row (the order stays valid)."""
    index = pa.array(range(rows), pa.int64())
    restaurant = pc.add(pc.divide(index, ITEMS), 1)
    item = pc.add(_mod(index, ITEMS), 1)
    seed = pc.add(index, day.toordinal() * 1_000_003)
    h = pc.bit_wise_and(pc.multiply(seed, 2654435761), 0xFFFFFFFF)
    y_50 = pc.add(_mod(h, 49_500), 500)  # 5.00 .. 499.99
    y_05 = pc.divide(pc.multiply(y_50, pc.add(_mod(pc.shift_right(h, 8), 46), 50)), 100)
    y_95 = pc.divide(pc.multiply(y_50, pc.add(_mod(pc.shift_right(h, 16), 56), 105)), 100)
    if changed:
        bump = pc.if_else(pc.equal(_mod(index, 2), 0), 100, 0)
        y_05, y_50, y_95 = (pc.add(y, bump) for y in (y_05, y_50, y_95))
    r7, r5 = _mod(restaurant, 7), _mod(restaurant, 5)
    dma = pc.binary_join_element_wise("DMA-", pc.cast(r7, pa.string()), "")
    no_dma = pc.equal(_mod(restaurant, 4), 0)
    columns = {
        "restaurant_id": restaurant,
        "inventory_item_id": item,
        "business_date": pa.array([day] * rows, pa.date32()),
        "dma_id": pc.if_else(no_dma, pa.scalar(None, pa.string()), dma),
        "dc_id": pc.if_else(pc.equal(r5, 0), pa.scalar(None, pa.int64()), r5),
        "state": pc.take(pa.array(STATES), r5),
        "y_05": _cents_to_float(y_05),
        "y_50": _cents_to_float(y_50),
        "y_95": _cents_to_float(y_95),
    }
    return pa.table({f.name: pc.cast(columns[f.name], f.type) for f in SCHEMA}, schema=SCHEMA)


def business_days(days: int) -> list[dt.date]:
    return [FIRST_DAY + dt.timedelta(days=n) for n in range(days)]


def all_rows(days: list[dt.date], per_day: int, *, changed: bool) -> dict[dt.date, pa.Table]:
    return {day: day_table(day, per_day, changed=changed) for day in days}


def upload(info, bucket: str, tables: dict[dt.date, pa.Table]) -> int:
    """The files under forecast/ (same keys every time: a rewrite replaces them); bytes sent."""
    s3 = aws_client(info, "s3")
    days = sorted(tables)
    sent = 0
    for start in range(0, len(days), DAYS_PER_FILE):
        pair = days[start : start + DAYS_PER_FILE]
        buffer = io.BytesIO()
        pq.write_table(pa.concat_tables(tables[d] for d in pair), buffer, compression="snappy")
        key = f"forecast/forecast_{pair[0]:%Y%m%d}_{pair[-1]:%Y%m%d}.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        sent += buffer.tell()
    return sent


def expected(tables: dict[dt.date, pa.Table]) -> pa.Table:
    """All days in forecast_data's types (the y doubles are whole cents: the cast is exact)."""
    return pa.concat_tables(forecast_sync.conform(tables[d]) for d in sorted(tables))


def write_csv(path: Path, table: pa.Table) -> int:
    pacsv.write_csv(table, str(path), pacsv.WriteOptions(include_header=False))
    return path.stat().st_size


# -- Postgres helpers -----------------------------------------------------------------------
def copy_file(conn, path: Path) -> None:
    stmt = f"COPY forecast_data ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)"  # noqa: S608
    with conn.cursor() as cur, cur.copy(stmt) as copy, path.open("rb") as src:
        while chunk := src.read(1 << 20):
            copy.write(chunk)


def checkpoint(admin_url: str) -> None:
    """Start every timed step with clean shared buffers (no checkpoint of earlier work in it)."""
    with pg.connection(admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def vacuum(url: str) -> None:
    with pg.connection(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE forecast_data")


def scratch_db(info, name: str, *, indexes: bool = True) -> str:
    pg.create_database(info.pg_url, name)
    url = info.url_for(name)
    with pg.connection(url) as conn:
        forecast_sync.ensure_schema(conn, indexes=indexes)
    return url


def drop_db(info, name: str) -> None:
    with pg.connection(info.pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def reset_table(url: str, preload: Path | None = None) -> None:
    """forecast_data emptied (ids restarted), then holding the preload's rows if given."""
    with pg.connection(url) as conn:
        conn.execute("TRUNCATE forecast_data, forecast_sync_status RESTART IDENTITY")
        if preload is not None:
            copy_file(conn, preload)
    if preload is not None:
        vacuum(url)


def floor_seconds(url: str, admin_url: str, path: Path) -> float:
    reset_table(url)
    checkpoint(admin_url)
    with pg.connection(url) as conn:
        start = time.perf_counter()
        copy_file(conn, path)
        conn.commit()
        return time.perf_counter() - start


def naive_statement() -> str:
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in VALUES)
    old = ", ".join(f"t.{c}" for c in VALUES)
    new = ", ".join(f"EXCLUDED.{c}" for c in VALUES)
    return (
        f"INSERT INTO forecast_data AS t ({', '.join(COLUMNS)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {sets}, updated_at = now() "
        f"WHERE ({old}) IS DISTINCT FROM ({new})"
    )


def naive_batches(table: pa.Table) -> list[list[tuple]]:
    batches = []
    for start in range(0, table.num_rows, NAIVE_BATCH):
        part = table.slice(start, NAIVE_BATCH)
        batches.append(list(zip(*(part.column(c).to_pylist() for c in COLUMNS), strict=True)))
    return batches


def naive_seconds(url: str, admin_url: str, preload: Path, batches: list[list[tuple]]) -> float:
    reset_table(url, preload)
    checkpoint(admin_url)
    stmt = naive_statement()
    with pg.connection(url) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        for batch in batches:
            cur.executemany(stmt, batch)
            conn.commit()
        return time.perf_counter() - start


# -- the pipeline ---------------------------------------------------------------------------
def pipeline(env: dict, days: list[dt.date], timeout: float, url: str) -> dict:
    """One job run in a fresh process; its result, and the autovacuums that ran meanwhile."""
    before = autovacuums(url)
    first, last = str(days[0]), str(days[-1])
    child = run_child(CHILD, [JOB, first, last, MARK], env, mark=MARK, timeout=timeout)
    run = child.result
    if not run["success"]:
        raise SystemExit(f"the pipeline run did not succeed:\n{child.stderr[-6000:]}")
    after = autovacuums(url)
    run["autovacuum_during_run"] = {k: after[k] - before.get(k, 0) for k in after}
    return run


def autovacuums(url: str) -> dict[str, int]:
    """forecast_data's autovacuum and autoanalyze counts (empty if the table does not exist)."""
    with pg.connection(url) as conn:
        row = conn.execute(
            "SELECT autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
            "WHERE relname = 'forecast_data'"
        ).fetchone()
    return {"autovacuum": row[0], "autoanalyze": row[1]} if row else {}


def drop_target(url: str) -> None:
    """neon_main without the forecast tables: the job creates them, as on a first sync."""
    with pg.connection(url) as conn:
        conn.execute("DROP TABLE IF EXISTS forecast_data, forecast_sync_status")


def describe(kind: str, run: dict) -> None:
    meta = run["metadata"][TABLE_ASSET]
    steps = run["steps"]
    checks = sum(s for k, s in steps.items() if k not in (TABLE_STEP, "athena__athena_forecast"))
    print(
        f"  {kind} {run['seconds']:.2f}s (forecast_data step {steps.get(TABLE_STEP, 0):.2f}s, "
        f"asset duration_s {meta['duration_s']:.2f}s, athena_forecast step "
        f"{steps.get('athena__athena_forecast', 0):.2f}s, checks {checks:.2f}s; "
        f"{meta['inserted']:,} inserted, {meta['updated']:,} updated, "
        f"{meta['unchanged']:,} unchanged, {meta['deleted']:,} deleted), "
        f"peak RSS {run['peak_rss_mb']:.0f} MB; days {sum(run['days'].values()):.2f}s, "
        f"autovacuum meanwhile {run['autovacuum_during_run']}",
        flush=True,
    )


def verify(url: str, expected_csv: Path, rows: int, changed: int) -> dict:
    """forecast_data against the expected rows: every value equal; updated_at moved on change."""
    cols = ", ".join(COLUMNS)
    with pg.connection(url) as conn:
        conn.execute(
            "CREATE TEMP TABLE expected AS SELECT "  # noqa: S608
            f"{cols} FROM forecast_data WITH NO DATA"
        )
        stmt = f"COPY expected ({cols}) FROM STDIN (FORMAT csv)"  # noqa: S608
        with conn.cursor() as cur, cur.copy(stmt) as copy, expected_csv.open("rb") as src:
            while chunk := src.read(1 << 20):
                copy.write(chunk)
        count = conn.execute("SELECT count(*) FROM forecast_data").fetchone()[0]
        missing = conn.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM expected "  # noqa: S608
            f"EXCEPT ALL SELECT {cols} FROM forecast_data) d"
        ).fetchone()[0]
        extra = conn.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM forecast_data "  # noqa: S608
            f"EXCEPT ALL SELECT {cols} FROM expected) d"
        ).fetchone()[0]
        touched = conn.execute(
            "SELECT count(*) FROM forecast_data WHERE updated_at <> created_at"
        ).fetchone()[0]
        conn.rollback()
    ok = count == rows and not missing and not extra and touched == changed
    if not ok:
        print(
            f"  WARNING: forecast_data holds {count:,} rows ({missing:,} expected rows missing, "
            f"{extra:,} unexpected, {touched:,} touched; expected {changed:,})",
            flush=True,
        )
    return {
        "verified": ok,
        "final_rows": count,
        "rows_missing": missing,
        "rows_unexpected": extra,
        "rows_touched_by_upsert": touched,
    }


# -- the profile ----------------------------------------------------------------------------
class Phases:
    """Exclusive wall time of wrapped functions (a wrapped callee's time leaves its caller's)."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._stack: list[float] = []
        self._originals: list[tuple[object, str, object]] = []

    def wrap(self, module, name: str, label: str | None = None) -> None:
        original = getattr(module, name)
        self._originals.append((module, name, original))
        setattr(module, name, self.timed(original, label or name))

    def timed(self, original, label: str):
        def timed(*args, **kwargs):
            self._stack.append(0.0)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._stack.pop()
                self.seconds[label] += elapsed - inner
                if self._stack:
                    self._stack[-1] += elapsed

        return timed

    def restore(self) -> None:
        for module, name, original in reversed(self._originals):
            setattr(module, name, original)
        self._originals.clear()

    def take(self) -> dict[str, float]:
        taken = {k: round(v, 3) for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])}
        self.seconds.clear()
        return taken


def athena_resource(env: dict) -> AthenaResource:
    """The resource the job builds (defs/resources.py), from the same environment."""
    return AthenaResource(
        engine=env["SQLGYM_ATHENA_ENGINE"],
        region=env["AWS_REGION"],
        database=env["ATHENA_DB_NAME"],
        s3_endpoint_url=env["SQLGYM_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def read_days(athena: AthenaResource, location: str, days: list[dt.date]) -> tuple[dict, float]:
    forecast_athena.ensure_tables(athena, location)
    start = time.perf_counter()
    tables = {day: forecast_athena.day_rows(athena, day) for day in days}
    return tables, time.perf_counter() - start


def raw_parquet_seconds(athena: AthenaResource, bucket: str) -> float:
    """All the forecast files read once by pyarrow from moto: the S3 + Parquet part of a read."""
    with athena.duckdb_engine() as engine:
        filesystem = engine.filesystem
    start = time.perf_counter()
    pq.read_table(f"{bucket}/forecast/", filesystem=filesystem)
    return time.perf_counter() - start


def time_statements(conn, phases: Phases) -> None:
    """The connection's inline statements (load_arrow's CREATE / ANALYZE / DROP) timed apart."""
    execute = conn.execute
    timed = {v: phases.timed(execute, f"{v} (staging)") for v in ("CREATE", "ANALYZE", "DROP")}

    def execute_timed(query, *args, **kwargs):
        text = query if isinstance(query, str) else query.as_string(conn)
        verb = text.lstrip().split(None, 1)[0].upper()
        return timed.get(verb, execute)(query, *args, **kwargs)

    conn.execute = execute_timed


def sync_profiled(
    url: str,
    admin_url: str,
    tables: dict[dt.date, pa.Table],
    batch_size: int = forecast_sync.DEFAULT_BATCH_SIZE,
) -> dict:
    """_sync_days' database part, day by day, with its phases timed."""
    phases = Phases()
    phases.wrap(forecast_sync, "conform")
    phases.wrap(pg_load, "check_target")
    phases.wrap(pg_load, "target_columns", "target_columns (catalog)")
    phases.wrap(pg_load, "deduplicated", "dedupe (client)")
    phases.wrap(pg_load, "dedupe", "dedupe (server)")
    phases.wrap(pg_load, "_partition_rows", "partition rows")
    phases.wrap(pg_load, "copy_arrow", "COPY (staging, or an empty partition)")
    phases.wrap(pg_load, "stage_changes", "new and changed rows (hash join)")
    phases.wrap(pg_load, "_insert", "merge INSERT")
    phases.wrap(pg_load, "merge", "merge (rest)")
    phases.wrap(pg_load, "delete_absent", "delete absent")
    phases.wrap(pg_load, "load_arrow", "load_arrow (rest)")
    phases.wrap(forecast_sync, "load_day", "load_day (rest)")
    phases.wrap(forecast_sync, "record_status", "record status")
    checkpoint(admin_url)
    counts = pg_load.MergeCounts()
    connect = commit = 0.0
    start = time.perf_counter()
    try:
        for day in sorted(tables):
            begun = time.perf_counter()
            with pg.connection(url) as conn:
                connect += time.perf_counter() - begun
                time_statements(conn, phases)
                got = forecast_sync.load_day(conn, day, tables[day], batch_size=batch_size)
                committing = time.perf_counter()
            commit += time.perf_counter() - committing
            forecast_sync.record_status(url, "incremental", day, got.inserted, "success")
            for name in ("inserted", "updated", "unchanged", "deleted"):
                setattr(counts, name, getattr(counts, name) + getattr(got, name))
    finally:
        phases.restore()
    seconds = time.perf_counter() - start
    taken = phases.take()
    taken["commit"] = round(commit, 3)
    taken["connect"] = round(connect, 3)
    return {
        "seconds": round(seconds, 3),
        "phases": taken,
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
    }


def profile(info, env: dict, bucket: str, days, tables, changed_tables) -> dict:
    """Where a run's time goes, measured once in this process through the real functions."""
    athena = athena_resource(env)
    location = f"s3://{bucket}/forecast/"
    result: dict = {}
    upload(info, bucket, tables)
    raw_parquet_seconds(athena, bucket)  # warm moto
    result["raw_parquet_read_all_files_seconds"] = round(raw_parquet_seconds(athena, bucket), 3)
    initial_rows, initial_read = read_days(athena, location, days)
    upload(info, bucket, changed_tables)
    changed_rows, changed_read = read_days(athena, location, days)
    result["athena_day_rows_seconds"] = {
        "initial": round(initial_read, 3),
        "upsert": round(changed_read, 3),
    }
    per_day = max(t.num_rows for t in initial_rows.values())
    variants = (  # name, the six indexes, fillfactor, BATCH_SIZE
        ("with_indexes", True, None, forecast_sync.DEFAULT_BATCH_SIZE),
        ("without_secondary_indexes", False, None, forecast_sync.DEFAULT_BATCH_SIZE),
        ("what_if_batch_size_a_day", True, None, per_day),
        ("what_if_fillfactor_70", True, 70, forecast_sync.DEFAULT_BATCH_SIZE),
    )
    for name, indexes, fillfactor, batch_size in variants:
        url = scratch_db(info, f"bench_profile_{name}", indexes=indexes)
        if fillfactor:
            with pg.connection(url) as conn:
                conn.execute(f"ALTER TABLE forecast_data SET (fillfactor = {int(fillfactor)})")
        initial = sync_profiled(url, info.pg_url, initial_rows, batch_size)
        vacuum(url)
        upsert = sync_profiled(url, info.pg_url, changed_rows, batch_size)
        with pg.connection(url) as conn:
            hot = conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd, pg_total_relation_size('forecast_data') "
                "FROM pg_stat_user_tables WHERE relname = 'forecast_data'"
            ).fetchone()
        result[name] = {
            "batch_size": batch_size,
            "fillfactor": fillfactor or 100,
            "initial": initial,
            "upsert": upsert,
            "updates": hot[0],
            "hot_updates": hot[1],
            "table_mb_with_indexes": round(hot[2] / 2**20, 1),
        }
        drop_db(info, f"bench_profile_{name}")  # no autovacuum of it during the next variant
        print(
            f"  profile {name}: initial {initial['seconds']:.2f}s, upsert "
            f"{upsert['seconds']:.2f}s: {upsert['phases']}",
            flush=True,
        )
    return result


def stale_stats_probe(info, sizes: list[int], timeout_s: int) -> dict:
    """A regression check: a new business_date loaded into a forecast_data whose statistics
    predate it (the steady state: every sync brings days ANALYZE has not seen, and autovacuum
    can ANALYZE in the middle of a backfill). The day's partition is empty, so the load is an
    append and delete_absent then runs over the day's fresh rows, estimated at ~1 row. Its
    former NOT EXISTS anti-join was planned as a nested loop over the staging table there:
    quadratic (2 s / 8 s / 33 s for 5k / 10k / 20k rows; a 100,000-row day ran for minutes).
    The day is then loaded again with half its rows changed, still unknown to the statistics:
    the join that finds the new and changed rows (pg_load.stage_changes) must stay a hash join.
    Times both load_days per day size and keeps the EXPLAIN of the delete, if one ran."""
    url = scratch_db(info, "bench_stale")
    known = FIRST_DAY - dt.timedelta(days=60)
    with pg.connection(url) as conn:
        forecast_sync.load_day(conn, known, day_table(known, max(sizes), changed=False))
    vacuum(url)  # statistics that know only `known`
    phases = Phases()
    plans: list[str] = []
    original = pg_load.delete_absent
    statement = getattr(pg_load, "delete_absent_statement", None)

    def explained(conn, staging, target, key, partition_where):
        if statement is not None:
            stmt = sql.SQL("EXPLAIN ") + statement(staging, target, key, partition_where)
            plans[:] = [r[0] for r in conn.execute(stmt).fetchall()]
        return original(conn, staging, target, key, partition_where)

    pg_load.delete_absent = explained
    phases.wrap(pg_load, "delete_absent", "delete absent")
    phases.wrap(pg_load, "stage_changes", "new and changed rows")
    out: dict = {"timeout_s": timeout_s, "days": []}
    try:
        for n, size in enumerate(sizes):
            day = known + dt.timedelta(days=n + 1)
            start = time.perf_counter()
            try:
                for changed in (False, True):  # into the empty day, then an upsert over it
                    with pg.connection(url, statement_timeout_ms=timeout_s * 1000) as conn:
                        forecast_sync.load_day(conn, day, day_table(day, size, changed=changed))
                timed_out = False
            except Exception as exc:  # noqa: BLE001 - a statement timeout is the finding
                timed_out = "timeout" in str(exc).lower() or "cancel" in str(exc).lower()
                if not timed_out:
                    raise
            seconds = time.perf_counter() - start
            taken = phases.take()
            out["days"].append(
                {
                    "rows": size,
                    "load_day_twice_seconds": round(seconds, 3),
                    "delete_absent_seconds": taken.get("delete absent"),
                    "stage_changes_seconds": taken.get("new and changed rows"),
                    "timed_out": timed_out,
                }
            )
            print(
                f"  stale statistics, a new day of {size:,} rows: load_day twice {seconds:.2f}s "
                f"(delete absent {taken.get('delete absent', 0):.2f}s, new and changed rows "
                f"{taken.get('new and changed rows', 0):.2f}s)"
                + (" TIMED OUT" if timed_out else ""),
                flush=True,
            )
    finally:
        phases.restore()
        pg_load.delete_absent = original
    out["delete_plan"] = plans
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10, help="business_dates the rows span")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/forecast_load.json")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pipeline run")
    parser.add_argument("--no-profile", action="store_true", help="skip the one-off profile")
    parser.add_argument(
        "--stale-sizes",
        default="5000,10000,20000",
        help="day sizes for the stale-statistics probe (comma-separated; empty: skip it)",
    )
    parser.add_argument("--stale-timeout", type=int, default=300, help="seconds per probe day")
    args = parser.parse_args()
    if args.rows % args.days:
        parser.error("--rows must be a multiple of --days")

    with scratch_stack("forecast") as (root, stack):
        data = root / "data"
        data.mkdir()
        started = time.perf_counter()
        days = business_days(args.days)
        per_day = args.rows // args.days
        tables = all_rows(days, per_day, changed=False)
        changed_tables = all_rows(days, per_day, changed=True)
        initial_csv, changed_csv = data / "initial.csv", data / "changed.csv"
        csv_bytes = write_csv(initial_csv, expected(tables))
        changed_rows = expected(changed_tables)
        write_csv(changed_csv, changed_rows)
        changed = pc.sum(pc.not_equal(expected(tables)["y_50"], changed_rows["y_50"])).as_py()
        print(
            f"rendered {args.rows:,} rows over {args.days} days ({changed:,} changed in the "
            f"re-load; CSV {csv_bytes / 1e6:.1f} MB) in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        info = stack.up(fast=False)
        provision(info)
        env = info.env()
        bucket = env["SQLGYM_DATALAKE_BUCKET"]
        neon_url = info.url_for("neon_main")
        child_env = {
            **os.environ,
            **env,
            "SQLGYM_PARTITION_START": PARTITION_START,
            "SQLGYM_GIT_BRANCH": "main",  # -> Neon branch main -> database neon_main
            "PYTHONPATH": str(ROOT),
        }
        # an ephemeral instance: the benchmark measures the load
        child_env.pop("DAGSTER_HOME", None)

        floor_url = scratch_db(info, "bench_floor")
        bare_url = scratch_db(info, "bench_floor_bare", indexes=False)
        floor_seconds(floor_url, info.pg_url, initial_csv)  # warm the cache and the WAL
        floors, bare_floors = [], []
        for _ in range(args.repeat):
            floors.append(floor_seconds(floor_url, info.pg_url, initial_csv))
            bare_floors.append(floor_seconds(bare_url, info.pg_url, initial_csv))
            print(
                f"  floor {floors[-1]:.2f}s (without the six indexes {bare_floors[-1]:.2f}s)",
                flush=True,
            )

        naive_url = scratch_db(info, "bench_naive")
        batches = naive_batches(changed_rows)
        naives = []
        for _ in range(args.repeat):
            naives.append(naive_seconds(naive_url, info.pg_url, initial_csv, batches))
            print(f"  naive executemany {naives[-1]:.2f}s", flush=True)
        del batches

        initials, upserts = [], []
        file_bytes = 0
        for _ in range(args.repeat):
            drop_target(neon_url)
            file_bytes = upload(info, bucket, tables)
            checkpoint(info.pg_url)
            run = pipeline(child_env, days, args.timeout, neon_url)
            initials.append(run)
            describe("initial", run)
            vacuum(neon_url)
            upload(info, bucket, changed_tables)
            checkpoint(info.pg_url)
            run = pipeline(child_env, days, args.timeout, neon_url)
            upserts.append(run)
            describe("upsert", run)
        verified = verify(neon_url, changed_csv, args.rows, changed)

        profiled = probe = None
        if not args.no_profile:
            profiled = profile(info, env, bucket, days, tables, changed_tables)
            sizes = [int(n) for n in args.stale_sizes.split(",") if n]
            probe = stale_stats_probe(info, sizes, args.stale_timeout) if sizes else None

        def med(runs, pick) -> float:
            return round(statistics.median(pick(r) for r in runs), 3)

        seconds = med(upserts, lambda r: r["seconds"])
        step = med(upserts, lambda r: r["steps"][TABLE_STEP])
        asset = med(upserts, lambda r: r["metadata"][TABLE_ASSET]["duration_s"])
        floor = round(statistics.median(floors), 3)
        naive = round(statistics.median(naives), 3)
        meta = upserts[0]["metadata"][TABLE_ASSET]
        first = initials[0]["metadata"][TABLE_ASSET]
        other = {k for k in upserts[0]["steps"] if k not in (TABLE_STEP, "athena__athena_forecast")}
        result = {
            "rows": args.rows,
            "days": args.days,
            "rows_per_day": per_day,
            "parquet_files": -(-args.days // DAYS_PER_FILE),
            "parquet_bytes": file_bytes,
            "csv_bytes": csv_bytes,
            "seconds": seconds,
            "rows_per_s": round(args.rows / seconds),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in initials + upserts), 1),
            "floor_seconds": floor,
            "ratio_to_floor": round(seconds / floor, 3),
            "naive_seconds": naive,
            "naive_over_seconds": round(naive / seconds, 3),
            "upsert": {
                "job_seconds": seconds,
                "forecast_data_step_seconds": step,
                "forecast_data_asset_duration_s": asset,
                "athena_forecast_step_seconds": med(
                    upserts, lambda r: r["steps"]["athena__athena_forecast"]
                ),
                "checks_seconds": med(upserts, lambda r: sum(r["steps"][k] for k in other)),
                "ratio_to_floor_of_asset": round(asset / floor, 3),
                "naive_over_asset": round(naive / asset, 3),
                "inserted": meta["inserted"],
                "updated": meta["updated"],
                "unchanged": meta["unchanged"],
                "deleted": meta["deleted"],
                "days_loop_seconds": med(upserts, lambda r: sum(r["days"].values())),
                "day_seconds_first_run": upserts[0]["days"],
                "autovacuum_during_runs": [r["autovacuum_during_run"] for r in upserts],
                "runs_seconds": [round(r["seconds"], 3) for r in upserts],
                "asset_runs_duration_s": [
                    r["metadata"][TABLE_ASSET]["duration_s"] for r in upserts
                ],
            },
            "initial": {
                "job_seconds": med(initials, lambda r: r["seconds"]),
                "forecast_data_step_seconds": med(initials, lambda r: r["steps"][TABLE_STEP]),
                "forecast_data_asset_duration_s": med(
                    initials, lambda r: r["metadata"][TABLE_ASSET]["duration_s"]
                ),
                "athena_forecast_step_seconds": med(
                    initials, lambda r: r["steps"]["athena__athena_forecast"]
                ),
                "checks_seconds": med(initials, lambda r: sum(r["steps"][k] for k in other)),
                "ratio_to_floor": round(med(initials, lambda r: r["seconds"]) / floor, 3),
                "inserted": first["inserted"],
                "updated": first["updated"],
                "unchanged": first["unchanged"],
                "days_loop_seconds": med(initials, lambda r: sum(r["days"].values())),
                "day_seconds_first_run": initials[0]["days"],
                "autovacuum_during_runs": [r["autovacuum_during_run"] for r in initials],
                "runs_seconds": [round(r["seconds"], 3) for r in initials],
            },
            "baseline_rss_mb": round(upserts[0]["baseline_rss_mb"], 1),
            "definitions_load_seconds": round(upserts[0]["load_seconds"], 3),
            "checks": upserts[0]["checks"],
            **verified,
            "floor_runs_seconds": [round(f, 3) for f in floors],
            "floor_without_secondary_indexes_seconds": round(statistics.median(bare_floors), 3),
            "naive_runs_seconds": [round(n, 3) for n in naives],
            "naive_statement": naive_statement(),
            "profile": profiled,
            "stale_stats_probe": probe,
            "repeat": args.repeat,
            "machine": machine(),
            "code": code_version(),
        }
    write_result(args.json, result)


if __name__ == "__main__":
    main()
