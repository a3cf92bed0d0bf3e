"""Chunked Task 02 (seed 003, phase 2): plan balanced chunks of (VisitDate, SSN) keys, keep
the plan in Postgres, and run each chunk in its own transaction, resumably.

A chunk's data and its 'done' mark commit together, so a chunk is done exactly once: a
re-run skips it, and a failed run resumes with the chunks still pending. All chunks of a
plan share its run timestamp and speed, so a resumed plan writes what an uninterrupted
one would have.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from sqlgym_pipelines.lib import conflict_task02 as task02
from sqlgym_pipelines.lib.errors import ConfigError

Key = tuple[dt.date, str]


@dataclass(frozen=True)
class ChunkSettings:
    """The seed's chunking_config.py, with its defaults."""

    target_chunk_size: int = 10_000
    max_chunk_size: int = 50_000
    max_keys_per_chunk: int = 1_000
    max_concurrency: int = 5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"chunk setting {name}={value!r} must be a positive integer")
        if self.target_chunk_size > self.max_chunk_size:
            raise ConfigError(
                f"chunk settings: target_chunk_size ({self.target_chunk_size}) is larger than "
                f"max_chunk_size ({self.max_chunk_size})"
            )

    @classmethod
    def from_env(cls, **overrides: int) -> ChunkSettings:
        """SQLGYM_CONFLICTS_<SETTING> for each setting, then non-zero overrides."""
        values = {}
        for name, default in asdict(cls()).items():
            env = f"SQLGYM_CONFLICTS_{name.upper()}"
            raw = os.environ.get(env) or str(default)
            if not raw.isdigit():
                raise ConfigError(f"{env}={raw!r} is not a positive integer")
            values[name] = int(overrides.get(name) or raw)
        return cls(**values)


@dataclass
class Chunk:
    chunk_id: int
    keys: list[Key] = field(default_factory=list)
    est_rows: int = 0

    @property
    def dates(self) -> int:
        return len({day for day, _ in self.keys})

    @property
    def ssns(self) -> int:
        return len({ssn for _, ssn in self.keys})


def pack(weights: Iterable[tuple[Key, int]], settings: ChunkSettings) -> list[Chunk]:
    """Keys (in order) into consecutive chunks: a chunk closes once it reaches the target
    size, before it would pass the max size, or at max_keys_per_chunk. A key heavier than
    max_chunk_size cannot be split (its pairs belong together) and gets a chunk of its own."""
    chunks: list[Chunk] = []
    current = Chunk(0)
    for key, weight in weights:
        if current.keys and (
            current.est_rows >= settings.target_chunk_size
            or current.est_rows + weight > settings.max_chunk_size
            or len(current.keys) >= settings.max_keys_per_chunk
        ):
            chunks.append(current)
            current = Chunk(len(chunks))
        current.keys.append(key)
        current.est_rows += weight
    if current.keys:
        chunks.append(current)
    return chunks


def key_weights(conn: psycopg.Connection, schema: str, start: dt.date, end: dt.date) -> list:
    """Estimated rows per (VisitDate, SSN) of [start, end): its n(n-1) candidate pairs or its
    existing rows, whichever is more (at least 1), in key order."""
    rows = conn.execute(
        sql.SQL(
            'WITH s AS (SELECT "VisitDate", "SSN", count(*) AS n FROM {s}.visits '
            'WHERE "VisitDate" >= %(start)s AND "VisitDate" < %(end)s AND "SSN" IS NOT NULL '
            "GROUP BY 1, 2), "
            't AS (SELECT "VisitDate", "SSN", count(*) AS m FROM {s}.conflictvisitmaps '
            'WHERE "VisitDate" >= %(start)s AND "VisitDate" < %(end)s GROUP BY 1, 2) '
            'SELECT "VisitDate", "SSN", greatest(coalesce(n * (n - 1), 0), coalesce(m, 0), 1) '
            'FROM s FULL JOIN t USING ("VisitDate", "SSN") ORDER BY 1, 2'
        ).format(s=sql.Identifier(schema)),
        {"start": start, "end": end},
    ).fetchall()
    return [((day, ssn), int(weight)) for day, ssn, weight in rows]


@dataclass
class Plan:
    plan_id: int
    run_ts: dt.datetime
    mph: float
    chunks: list[Chunk]

    @property
    def chunk_ids(self) -> list[int]:
        return [chunk.chunk_id for chunk in self.chunks]


def create_plan(
    conn: psycopg.Connection,
    schema: str,
    start: dt.date,
    end: dt.date,
    settings: ChunkSettings,
    *,
    run_ts: dt.datetime,
    mph: float,
    run_id: str | None = None,
) -> Plan:
    """Count, pack and store the chunks of [start, end) (the caller commits)."""
    s = sql.Identifier(schema)
    chunks = pack(key_weights(conn, schema, start, end), settings)
    plan_id = conn.execute(
        sql.SQL(
            "INSERT INTO {s}.conflict_plans (window_start, window_end, run_id, run_ts, settings) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING plan_id"
        ).format(s=s),
        (start, end, run_id, run_ts, json.dumps({**asdict(settings), "mph": mph})),
    ).fetchone()[0]
    with conn.cursor() as cur:
        with cur.copy(
            sql.SQL(
                "COPY {s}.conflict_chunks (plan_id, chunk_id, est_rows, keys, dates, ssns) "
                "FROM STDIN"
            ).format(s=s)
        ) as copy:
            for c in chunks:
                copy.write_row((plan_id, c.chunk_id, c.est_rows, len(c.keys), c.dates, c.ssns))
        with cur.copy(
            sql.SQL(
                'COPY {s}.conflict_chunk_keys (plan_id, chunk_id, "VisitDate", "SSN") FROM STDIN'
            ).format(s=s)
        ) as copy:
            for c in chunks:
                for day, ssn in c.keys:
                    copy.write_row((plan_id, c.chunk_id, day, ssn))
    # Plans are for resuming; a month-old one never will be.
    conn.execute(
        sql.SQL(
            "DELETE FROM {s}.conflict_plans WHERE created_at < now() - interval '30 days'"
        ).format(s=s)
    )
    return Plan(plan_id, run_ts, mph, chunks)


@dataclass
class ChunkResult:
    plan_id: int
    chunk_id: int
    status: str  # 'done' (processed now) or 'skipped' (done before)
    est_rows: int
    keys: int
    dates: int
    ssns: int
    counts: task02.Task02Counts
    seconds: float

    def log_lines(self) -> list[str]:
        """The seed's per-chunk CloudWatch lines."""
        head = f"Chunk {self.chunk_id}"
        if self.status == "skipped":
            return [f"{head}: already done in plan {self.plan_id}, skipped"]
        return [
            f"{head}: {self.est_rows} estimated rows, {self.dates} dates, {self.ssns} SSNs",
            f"{head}: Marked {self.counts.marked} rows for processing",
            f"{head}: Updated {self.counts.updated} rows, inserted {self.counts.inserted}, "
            f"resolved {self.counts.gone} gone in {self.seconds:.2f} seconds",
        ]


Connect = Callable[[], AbstractContextManager[psycopg.Connection]]


def process_chunk(connect: Connect, schema: str, plan_id: int, chunk_id: int) -> ChunkResult:
    """One chunk in one transaction (connect() commits on success): lock its plan row, skip it if done, else run Task 02
    over its keys and mark it done with its counts, atomically with the data."""
    s = sql.Identifier(schema)
    started = time.perf_counter()
    with connect() as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT c.status, c.est_rows, c.keys, c.dates, c.ssns, p.run_ts, p.settings "
                "FROM {s}.conflict_chunks c JOIN {s}.conflict_plans p USING (plan_id) "
                "WHERE c.plan_id = %s AND c.chunk_id = %s FOR UPDATE OF c"
            ).format(s=s),
            (plan_id, chunk_id),
        ).fetchone()
        if row is None:
            raise ConfigError(
                f"chunk {chunk_id} of plan {plan_id} is not in {schema}.conflict_chunks "
                "(plans older than 30 days are deleted: run the partition again)"
            )
        status, est_rows, keys, dates, ssns, run_ts, settings = row
        result = ChunkResult(
            plan_id, chunk_id, "skipped", est_rows, keys, dates, ssns, task02.Task02Counts(), 0.0
        )
        if status == "done":
            return result
        task02.create_keys(conn)
        conn.execute(
            sql.SQL(
                'INSERT INTO _conflict_keys SELECT "VisitDate", "SSN" FROM {s}.conflict_chunk_keys '
                "WHERE plan_id = %s AND chunk_id = %s"
            ).format(s=s),
            (plan_id, chunk_id),
        )
        result.counts = task02.run_keys(conn, schema, run_ts=run_ts, mph=settings["mph"])
        result.status = "done"
        result.seconds = time.perf_counter() - started
        conn.execute(
            sql.SQL(
                "UPDATE {s}.conflict_chunks SET status = 'done', attempts = attempts + 1, "
                "marked = %s, updated = %s, inserted = %s, gone = %s, seconds = %s, "
                "finished_at = now() WHERE plan_id = %s AND chunk_id = %s"
            ).format(s=s),
            (*result.counts.as_dict().values(), result.seconds, plan_id, chunk_id),
        )
    return result


def pending_chunks(conn: psycopg.Connection, schema: str, plan_id: int) -> list[int]:
    return [
        row[0]
        for row in conn.execute(
            sql.SQL(
                "SELECT chunk_id FROM {s}.conflict_chunks WHERE plan_id = %s AND status = 'pending' "
                "ORDER BY chunk_id"
            ).format(s=sql.Identifier(schema)),
            (plan_id,),
        )
    ]


def run_chunks(
    connect: Connect,
    schema: str,
    plan_id: int,
    chunk_ids: Sequence[int],
    max_concurrency: int,
    on_done: Callable[[ChunkResult], None] | None = None,
) -> list[ChunkResult]:
    """The chunks, max_concurrency at a time (a connection each); the first error is raised
    after the others finish, so every chunk that can complete does."""
    results: list[ChunkResult] = []
    errors: list[BaseException] = []

    def one(chunk_id: int) -> None:
        try:
            result = process_chunk(connect, schema, plan_id, chunk_id)
        except Exception as exc:  # noqa: BLE001 - collected, re-raised below
            errors.append(exc)
            return
        results.append(result)
        if on_done:
            on_done(result)

    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="chunk") as pool:
        list(pool.map(one, chunk_ids))
    if errors:
        raise errors[0]
    return sorted(results, key=lambda r: r.chunk_id)
