"""Demo data for the SQLGym source database: its schema plus deterministic rows, generated on the server."""

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError

SQL_FILE = Path(__file__).with_name("demo_sqlgym.sql")
APP_NAME = "sqlgym-demo-seed"

# What the lake pipeline syncs incrementally (they carry updated_at) and what it re-reads in full.
INCREMENTAL_TABLES = ("users", "topics", "problems", "user_progress")
FULL_TABLES = ("followers", "submissions", "badges")
TABLES = INCREMENTAL_TABLES + FULL_TABLES
N_TOPICS = 12  # the topic list is fixed in demo_sqlgym.sql
N_BADGE_KINDS = 10

# From this many submissions on, workers=None splits the insert over 2 connections (one
# INSERT uses one core: the expressions, not the disk, are the cost).
PARALLEL_MIN_ROWS = 500_000


@dataclass(frozen=True)
class Sizes:
    """Rows to generate per table (topics are always the fixed 12)."""

    users: int
    problems: int
    submissions: int
    followers: int
    badges: int
    user_progress: int


def sizes_for(scale: float, rows_submissions: int | None = None) -> Sizes:
    """Table sizes for a scale (1.0: ~3,400 rows in all); pair-tables are capped to what is unique."""
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale!r}")
    if rows_submissions is not None and rows_submissions < 0:
        raise ConfigError(f"rows_submissions must be >= 0, got {rows_submissions!r}")
    users = max(10, round(200 * scale))
    return Sizes(
        users=users,
        problems=max(N_TOPICS, round(60 * scale)),
        submissions=round(2000 * scale) if rows_submissions is None else rows_submissions,
        followers=min(round(400 * scale), users * (users - 1)),
        badges=min(round(150 * scale), users * N_BADGE_KINDS),
        user_progress=min(round(600 * scale), users * N_TOPICS),
    )


@cache
def sections() -> dict[str, sql.SQL]:
    """The named sections (`-- name: x`) of demo_sqlgym.sql."""
    parts = re.split(r"^-- name: (\w+)[ \t]*$", SQL_FILE.read_text(), flags=re.MULTILINE)
    return {
        name: sql.SQL(body.strip()) for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def seed_sqlgym(
    url: str,
    *,
    scale: float = 1.0,
    seed: int = 42,
    days: int = 14,
    reset: bool = True,
    rows_submissions: int | None = None,
    now: datetime | None = None,
    workers: int | None = None,
) -> dict[str, int]:
    """Create the SQLGym schema in `url` and fill it; returns the row count of every table.

    reset=True drops the tables first; reset=False keeps existing rows and adds the missing ones
    (ids are deterministic, so a re-run inserts nothing new). Timestamps fall in the `days`
    before `now` (default: the current time, UTC); pass `now` too for bit-identical data.
    `workers` connections insert submissions at once (default: 2 from PARALLEL_MIN_ROWS rows);
    the rows are the same for any number of workers.
    """
    if days < 1:
        raise ConfigError(f"days must be >= 1, got {days!r}")
    size = sizes_for(scale, rows_submissions)
    if workers is None:
        workers = 2 if size.submissions >= PARALLEL_MIN_ROWS else 1
    now = now or datetime.now(UTC)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    params = {
        "seed": int(seed),
        "now": now,
        "window_start": now - timedelta(days=days),
        "n_users": size.users,
        "n_topics": N_TOPICS,
        "n_problems": size.problems,
    }
    q = sections()
    with pg.connection(url, application_name=APP_NAME) as conn:
        if reset:
            conn.execute(q["reset"])
        conn.execute(q["schema"])
        conn.execute(q["helpers"])
        for table in ("users", "topics", "problems", "user_progress", "followers", "badges"):
            n = N_TOPICS if table == "topics" else getattr(size, table)
            conn.execute(q[f"insert_{table}"], {**params, "n": n})
        if workers <= 1:  # all in one transaction: a failure leaves the database as it was
            conn.execute(q["insert_submissions"], {**params, "lo": 1, "hi": size.submissions})
            return _finish(conn)
    # Other connections must see the parents, so they are committed first; keys and foreign
    # keys are checked once, after every range is in.
    _insert_submissions_parallel(url, params, size.submissions, workers)
    with pg.connection(url, application_name=APP_NAME) as conn:
        return _finish(conn)


def _finish(conn) -> dict[str, int]:
    conn.execute(sections()["constraints"])
    conn.execute(sections()["finish"])
    counts = {}
    for table in TABLES:
        stmt = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[table] = conn.execute(stmt).fetchone()[0]
    return counts


def _insert_submissions_parallel(url: str, params: dict, total: int, workers: int) -> None:
    bounds = [total * i // workers for i in range(workers + 1)]
    ranges = [(lo + 1, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]

    def load(lo_hi: tuple[int, int]) -> None:
        with pg.connection(url, application_name=APP_NAME) as conn:
            conn.execute(sections()["helpers"])
            conn.execute(
                sections()["insert_submissions"], {**params, "lo": lo_hi[0], "hi": lo_hi[1]}
            )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, ranges))  # list() re-raises the first failure
