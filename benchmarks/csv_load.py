"""S3 CSV -> Postgres ingestion (stage, audit, upsert) speed and memory vs the COPY floor.

    python benchmarks/csv_load.py [--rows N] [--repeat K] [--json PATH]

Starts its own local stack (fsync on), writes a CSV of N rows and 11 mixed-type columns
(quoted commas and quotes, a few newlines inside quotes, NULLs) to a temp file, uploads it to
the stack's moto S3 as bench/2026-01-15.csv and points SQLGYM_CSV_CONFIG at a one-dataset
config (`bench`: two light rules, upsert on id into bench.bench_rows). Before every run the
target holds the even ids (half of them with other values), so the upsert inserts 50%,
updates 25% and leaves 25% unchanged. Then times, median of K:
  floor     COPY bench.floor_rows FROM STDIN (FORMAT csv, HEADER true) of the same file,
            streamed from disk by psycopg into an empty typed table, committed;
  upsert    the same upsert by hand: COPY into an UNLOGGED table, then one INSERT ... ON
            CONFLICT (id) DO UPDATE ... WHERE IS DISTINCT FROM (what the pipeline's SQL does);
  pipeline  the dataset's job (csv_ingest_bench_job: stage -> blocking checks -> publish)
            executed by Dagster in a fresh process, whose peak RSS is read.
One uncounted warm-up round of the three comes first; then the K rounds, each running the
three in turn.
Afterwards the published table is compared with the floor's copy: every value must match.
"""

import argparse
import csv
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import code_version, machine, run_child, scratch_stack, write_result  # noqa: E402

from sqlgym_pipelines.lib import pg  # noqa: E402
from sqlgym_pipelines.local.provision import aws_client, provision  # noqa: E402

DATASET = "bench"
DAY = "2026-01-15"
KEY = f"bench/{DAY}.csv"
JOB = f"csv_ingest_{DATASET}_job"
STAGED = f"csv_ingest/staged/{DATASET}"
PUBLISHED = "warehouse/bench/bench_rows"
MARK = "@@BENCH@@"
COLUMNS = {  # name: (config type, Postgres type)
    "id": ("bigint", "bigint"),
    "name": ("string", "text"),
    "quantity": ("integer", "integer"),
    "price": ("decimal(10,2)", "numeric(10,2)"),
    "score": ("double", "double precision"),
    "active": ("boolean", "boolean"),
    "ship_date": ("date", "date"),
    "created_at": ("timestamp", "timestamp"),
    "note": ("string", "text"),
    "category": ("string", "text"),
    "customer_id": ("bigint", "bigint"),
}
CATEGORIES = ("books", "games", "garden", "music", "tools", "toys", "food")
SHIP_DATES = [(dt.date(2025, 1, 1) + dt.timedelta(days=d)).isoformat() for d in range(365)]

CONFIG = """\
ingest_schema: sqlgym_csv
staging_schema: sqlgym_csv_staging
datasets:
  bench:
    source: {{bucket: {bucket}, prefix: bench/, pattern: "*.csv"}}
    schema:
{schema}
    rules:
      - {{check: not_null, columns: [id]}}
      - {{check: range, column: quantity, min: 0, max: 1000}}
    max_reject_ratio: 0.0
    target: {{schema: bench, table: bench_rows, key: [id], mode: upsert}}
"""

CHILD = """
import json, resource, sys, time
started = time.perf_counter()
import dagster as dg
from sqlgym_pipelines.definitions import defs
d = defs()
job = d.get_job_def(sys.argv[1])
load_seconds = time.perf_counter() - started
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Dagster + definitions
instance = dg.DagsterInstance.ephemeral()  # the deployment's instance exists before a run
start = time.perf_counter()
result = job.execute_in_process(partition_key=sys.argv[2], instance=instance)
seconds = time.perf_counter() - start
metadata = {}
for event in result.get_asset_materialization_events():
    values = {k: v.value for k, v in event.materialization.metadata.items()}
    metadata["/".join(event.asset_key.path)] = {
        k: v for k, v in values.items() if isinstance(v, int | float | dict) or k == "staging_table"
    }
checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
print(sys.argv[3] + json.dumps({
    "seconds": seconds, "load_seconds": load_seconds, "baseline_rss_mb": baseline,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "metadata": metadata, "checks": checks,
}))
"""


def row(i: int, changed: bool = False) -> list:
    """Row of id i; `changed` gives other name, quantity and score (an update for the upsert)."""
    h = (i * 2654435761) % 4294967296
    name = f"item {i}"
    if i % 7 == 0:
        name += ", large"  # a quoted comma
    elif i % 11 == 0:
        name += ' "special"'  # doubled quotes
    quantity = h % 500 + 1
    score = (h % 1_000_000_007) / 7919.0  # many digits: the double must round-trip exactly
    if changed:
        name, quantity, score = "old " + name, quantity % 499 + 2, score + 0.5
    cents = (i * 104729) % 10_000_000
    seconds = h % 86_400
    if i % 3 == 0:
        note = ""  # NULL
    elif i % 1000 == 1:
        note = f"two\nlines {i}"  # a newline inside quotes
    else:
        note = f"note {h % 1000}"
    return [
        i,
        name,
        quantity,
        f"{cents // 100}.{cents % 100:02d}",
        repr(score),
        "true" if h % 3 else "false",
        SHIP_DATES[i % 365],
        f"{DAY} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        note,
        CATEGORIES[h % len(CATEGORIES)],
        h % 250_000 + 1,
    ]


def write_csv(path: Path, rows) -> int:
    """Stream rows to disk (never the whole file in memory); returns its size in bytes."""
    with path.open("w", newline="", encoding="utf-8", buffering=1 << 20) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path.stat().st_size


def write_config(path: Path, bucket: str) -> None:
    schema = "\n".join(
        f"      {name}: {{type: {kind!r}{', nullable: false' if name == 'id' else ''}}}"
        for name, (kind, _) in COLUMNS.items()
    )
    path.write_text(CONFIG.format(bucket=bucket, schema=schema))


def create_tables(url: str) -> None:
    columns = ", ".join(f"{name} {pg_type}" for name, (_, pg_type) in COLUMNS.items())
    with pg.connection(url) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute(f"CREATE TABLE bench.bench_rows ({columns}, PRIMARY KEY (id))")
        conn.execute(f"CREATE TABLE bench.floor_rows ({columns})")


def copy_file(conn, table: str, path: Path) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy,
        path.open("rb") as src,
    ):
        while chunk := src.read(1 << 20):
            copy.write(chunk)


def restore_target(url: str, preload: Path) -> None:
    """bench.bench_rows back to the even ids (a quarter of all ids with other values)."""
    with pg.connection(url) as conn:
        conn.execute("TRUNCATE bench.bench_rows")
        copy_file(conn, "bench.bench_rows", preload)
    with pg.connection(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE bench.bench_rows")


def floor_seconds(url: str, path: Path) -> float:
    with pg.connection(url, autocommit=True) as conn:
        conn.execute("TRUNCATE bench.floor_rows")
    with pg.connection(url) as conn:
        start = time.perf_counter()
        copy_file(conn, "bench.floor_rows", path)
        conn.commit()
        return time.perf_counter() - start


def upsert_floor_seconds(url: str, path: Path, preload: Path) -> float:
    """Hand-written SQL doing the same upsert: COPY the file into an UNLOGGED table, then one
    INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE IS DISTINCT FROM, committed."""
    restore_target(url, preload)
    columns = ", ".join(f"{name} {pg_type}" for name, (_, pg_type) in COLUMNS.items())
    values = [c for c in COLUMNS if c != "id"]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    old = ", ".join(f"t.{c}" for c in values)
    new = ", ".join(f"EXCLUDED.{c}" for c in values)
    with pg.connection(url) as conn:
        start = time.perf_counter()
        conn.execute(f"CREATE UNLOGGED TABLE bench.upsert_stage ({columns})")
        copy_file(conn, "bench.upsert_stage", path)
        conn.execute(
            f"INSERT INTO bench.bench_rows AS t SELECT * FROM bench.upsert_stage ON CONFLICT (id) "
            f"DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
        )
        conn.execute("DROP TABLE bench.upsert_stage")
        conn.commit()
        return time.perf_counter() - start


def pipeline(env: dict, timeout: float) -> tuple[dict, float]:
    """One job run in a fresh process: (its result, the parent's view of its peak RSS in MB)."""
    run = run_child(CHILD, [JOB, DAY, MARK], env, mark=MARK, timeout=timeout)
    return run.result, run.peak_rss_mb


def check_published(url: str, rows: int) -> dict:
    """The published table against the floor's copy of the same file: every value equal."""
    with pg.connection(url) as conn:
        count = conn.execute("SELECT count(*) FROM bench.bench_rows").fetchone()[0]
        missing = conn.execute(
            "SELECT count(*) FROM (SELECT * FROM bench.floor_rows "
            "EXCEPT ALL SELECT * FROM bench.bench_rows) d"
        ).fetchone()[0]
    if count != rows or missing:
        print(f"  WARNING: published {count:,} rows, {missing:,} differ from the file", flush=True)
    return {"published_rows": count, "rows_differing_from_file": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/csv_load.json")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pipeline run")
    args = parser.parse_args()

    with scratch_stack("csv") as (root, stack):
        data = root / "data"
        data.mkdir()
        started = time.perf_counter()
        path, preload = data / f"{DAY}.csv", data / "preload.csv"
        file_bytes = write_csv(path, (row(i) for i in range(1, args.rows + 1)))
        write_csv(preload, (row(i, changed=i % 4 == 0) for i in range(2, args.rows + 1, 2)))
        print(
            f"wrote {args.rows:,} rows ({file_bytes / 1e6:.1f} MB) "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        info = stack.up(fast=False)
        provision(info)
        env = info.env()
        url = env["SQLGYM_TARGET_PG_URL"]
        bucket = env["SQLGYM_CSV_BUCKET"]
        aws_client(info, "s3").upload_file(str(path), bucket, KEY)
        config = data / "csv_bench.yaml"
        write_config(config, bucket)
        create_tables(url)

        child_env = {
            **os.environ,
            **env,
            "SQLGYM_CSV_CONFIG": str(config),
            "SQLGYM_PARTITION_START": "2026-01-01",  # the daily partitions must hold DAY
            "PYTHONPATH": str(ROOT),
        }
        child_env.pop(
            "DAGSTER_HOME", None
        )  # an ephemeral instance: the benchmark measures the load

        # One uncounted round first (a fresh cluster creates its WAL segments as it goes; a
        # server in use recycles them), then the three measures interleaved, so that the
        # machine's drift during the benchmark weighs on all of them alike.
        floors, upserts, runs, peaks = [], [], [], []
        for round_ in range(args.repeat + 1):
            counted = round_ > 0
            floor = floor_seconds(url, path)
            upsert = upsert_floor_seconds(url, path, preload)
            restore_target(url, preload)
            run, peak = pipeline(child_env, args.timeout)
            staged, published = run["metadata"][STAGED], run["metadata"][PUBLISHED]
            print(
                f"  {'round ' + str(round_) if counted else 'warm-up'}: floor {floor:.2f}s, "
                f"upsert floor {upsert:.2f}s, pipeline {run['seconds']:.2f}s (stage "
                f"{staged['duration_s']:.2f}s, publish {published['duration_s']:.2f}s; "
                f"{published['inserted']:,} inserted, {published['updated']:,} updated, "
                f"{published['unchanged']:,} unchanged), peak RSS {run['peak_rss_mb']:.0f} MB "
                f"(parent's view {peak:.0f} MB)",
                flush=True,
            )
            if counted:
                floors.append(floor)
                upserts.append(upsert)
                runs.append(run)
                peaks.append(peak)
        verified = check_published(url, args.rows)

        seconds = statistics.median(r["seconds"] for r in runs)
        floor = statistics.median(floors)
        staged, published = runs[0]["metadata"][STAGED], runs[0]["metadata"][PUBLISHED]
        stage_s = statistics.median(r["metadata"][STAGED]["duration_s"] for r in runs)
        publish_s = statistics.median(r["metadata"][PUBLISHED]["duration_s"] for r in runs)
        result = {
            "rows": args.rows,
            "columns": len(COLUMNS),
            "file_bytes": file_bytes,
            "seconds": round(seconds, 3),
            "rows_per_s": round(args.rows / seconds),
            "peak_rss_mb": round(max(max(r["peak_rss_mb"] for r in runs), *peaks), 1),
            "child_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "parent_children_peak_rss_mb": round(max(peaks), 1),
            "baseline_rss_mb": round(runs[0]["baseline_rss_mb"], 1),
            "floor_seconds": round(floor, 3),
            "ratio_to_floor": round(seconds / floor, 3),
            "upsert_floor_seconds": round(statistics.median(upserts), 3),
            "ratio_to_upsert_floor": round(seconds / statistics.median(upserts), 3),
            "stage_seconds": round(stage_s, 3),
            "publish_seconds": round(publish_s, 3),
            "checks_and_overhead_seconds": round(seconds - stage_s - publish_s, 3),
            "definitions_load_seconds": round(runs[0]["load_seconds"], 3),
            "rows_read": staged["rows_read"],
            "rejected_rows": staged["rejected_rows"],
            "staged_rows": staged.get("dagster/row_count"),
            "inserted": published["inserted"],
            "updated": published["updated"],
            "unchanged": published["unchanged"],
            "superseded": published.get("superseded"),
            "checks": runs[0]["checks"],
            **verified,
            "runs_seconds": [round(r["seconds"], 3) for r in runs],
            "floor_runs_seconds": [round(f, 3) for f in floors],
            "upsert_floor_runs_seconds": [round(f, 3) for f in upserts],
            "machine": machine(),
            "code": code_version(),
        }
    write_result(args.json, result)


if __name__ == "__main__":
    main()
