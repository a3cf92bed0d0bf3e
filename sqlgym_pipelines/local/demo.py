"""Seed demo data for every pipeline into a running local stack (`python -m sqlgym_pipelines.local seed`)."""

import time
from collections.abc import Callable

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.local.demo_conflicts import seed_conflicts
from sqlgym_pipelines.local.demo_csv import seed_csv
from sqlgym_pipelines.local.demo_forecast import seed_forecast
from sqlgym_pipelines.local.demo_sqlgym import seed_sqlgym
from sqlgym_pipelines.local.stack import StackInfo

# One seeder per source: (name, fn(info, scale, reset) -> rows per table). A pipeline that
# needs demo data appends its own step here; seed_all runs them in order. reset=False keeps
# what is there (a restarted `make dev` keeps the user's changes) and adds what is missing.
Seeder = Callable[[StackInfo, float, bool], dict[str, int]]


def _seed_sqlgym_source(info: StackInfo, scale: float, reset: bool) -> dict[str, int]:
    pg.create_database(info.pg_url, "sqlgym")  # provision() makes it; a bare stack may not have
    return seed_sqlgym(info.url_for("sqlgym"), scale=scale, reset=reset)


STEPS: list[tuple[str, Seeder]] = [
    ("sqlgym", _seed_sqlgym_source),
    ("csv landing files", seed_csv),
    ("forecast parquet", seed_forecast),
    ("conflict visits (fakesnow)", seed_conflicts),
]


def seed_all(
    info: StackInfo, scale: float = 1.0, *, reset: bool = False
) -> dict[str, dict[str, int]]:
    """Run every seeder against the stack and print rows per table; returns {step: {table: rows}}."""
    results: dict[str, dict[str, int]] = {}
    for name, seeder in STEPS:
        started = time.monotonic()
        counts = seeder(info, scale, reset)
        results[name] = counts
        elapsed = time.monotonic() - started
        print(f"seeded {name} in {elapsed:.1f}s ({sum(counts.values()):,} rows)")
        width = max((len(table) for table in counts), default=0)
        for table, rows in counts.items():
            print(f"  {table:<{width}}  {rows:>12,}")
    return results
