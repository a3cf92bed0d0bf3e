"""Postgres -> S3 lake extraction speed and memory vs the COPY floor.

    python benchmarks/extract.py [--rows N] [--repeat K] [--json PATH]

Starts its own local stack (fsync on), seeds the demo generator's `submissions` with N rows,
then times, median of K:
  floor       COPY (SELECT * FROM submissions) TO STDOUT (FORMAT binary), read and discarded
              by psycopg;
  extraction  the real lake asset (lake/postgres_sync/submissions, a full snapshot to the
              moto S3 lake) materialized by Dagster in a fresh process, whose peak RSS is read.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import machine, run_child, scratch_stack, write_result  # noqa: E402

from sqlgym_pipelines.lib import pg  # noqa: E402
from sqlgym_pipelines.local.demo_sqlgym import seed_sqlgym  # noqa: E402
from sqlgym_pipelines.local.provision import provision  # noqa: E402

CHILD = """
import json, time, sys, resource
import dagster as dg
from sqlgym_pipelines.definitions import defs
d = defs()
asset = d.resolve_assets_def(dg.AssetKey(["lake", "postgres_sync", "submissions"]))
dg.materialize([d.resolve_assets_def(dg.AssetKey(["lake", "postgres_sync", "badges"]))],
               partition_key=sys.argv[1], instance=dg.DagsterInstance.ephemeral())
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after a tiny sync: Dagster's own
start = time.perf_counter()
# the asset alone: its checks are timed apart (they read the files back)
result = dg.materialize([asset], partition_key=sys.argv[1],
                        instance=dg.DagsterInstance.ephemeral())
seconds = time.perf_counter() - start
mat = result.asset_materializations_for_node("lake__postgres_sync__submissions")[0]
print(json.dumps({"seconds": seconds, "rows": mat.metadata["rows"].value, "baseline_rss_mb": baseline,
                  "bytes": mat.metadata["bytes"].value, "sync_seconds": mat.metadata["duration_s"].value}))
"""


def floor_seconds(url: str) -> float:
    with pg.connection(url) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with cur.copy("COPY (SELECT * FROM submissions) TO STDOUT (FORMAT binary)") as copy:
            for _ in copy:
                pass
        return time.perf_counter() - start


def extraction(env: dict, day: str) -> tuple[dict, float]:
    """One run in a fresh process: (its result, its peak RSS in MB)."""
    run = run_child(CHILD, [day], env)
    return run.result, run.peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/extract.json")
    args = parser.parse_args()

    with scratch_stack("extract") as (root, stack):
        info = stack.up(fast=False)
        provision(info)
        url = info.url_for("sqlgym")
        started = time.perf_counter()
        seed_sqlgym(url, rows_submissions=args.rows)
        print(
            f"seeded {args.rows:,} submissions in {time.perf_counter() - started:.1f}s", flush=True
        )
        with pg.connection(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE submissions")
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('submissions'))"
            ).fetchone()[0]
        env = {**os.environ, **info.env(), "SQLGYM_SOURCE_PG_URL": url}
        env.pop("DAGSTER_HOME", None)  # an ephemeral instance: the benchmark measures the sync
        floor_seconds(url)  # warm the cache for both
        floors = [floor_seconds(url) for _ in range(args.repeat)]
        day = time.strftime("%Y-%m-%d", time.gmtime())
        runs, peaks = [], []
        for _ in range(args.repeat):
            run, peak = extraction(env, day)
            runs.append(run)
            peaks.append(peak)
            print(
                f"  extraction {run['seconds']:.2f}s (sync {run['sync_seconds']:.2f}s), peak RSS so far {peak:.0f} MB",
                flush=True,
            )
        seconds = statistics.median(r["seconds"] for r in runs)
        floor = statistics.median(floors)
        result = {
            "rows": runs[0]["rows"],
            "table_size": size,
            "parquet_bytes": runs[0]["bytes"],
            "seconds": round(seconds, 3),
            "sync_seconds": round(statistics.median(r["sync_seconds"] for r in runs), 3),
            "rows_per_s": round(runs[0]["rows"] / seconds),
            "peak_rss_mb": round(max(peaks), 1),
            "baseline_rss_mb": round(runs[0]["baseline_rss_mb"], 1),
            "floor_seconds": round(floor, 3),
            "ratio_to_floor": round(seconds / floor, 3),
            "runs_seconds": [round(r["seconds"], 3) for r in runs],
            "floor_runs_seconds": [round(f, 3) for f in floors],
            "machine": machine(),
        }
    write_result(args.json, result)


if __name__ == "__main__":
    main()
