"""Which cursor window each daily partition reads: half-open, gap-free, below a safe upper bound."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import psycopg

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError

SQL_DIR = Path(__file__).parent / "sql"
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class SafeUpper:
    at: dt.datetime
    method: str  # how it was bounded, for the sync record


def safe_upper_bound(conn: psycopg.Connection, lag: dt.timedelta) -> SafeUpper:
    """min(server now - lag, start of the oldest open transaction in the source database)."""
    now, oldest, hidden = conn.execute(pg.load_sql(SQL_DIR / "safe_upper_bound.sql")).fetchone()
    bound, method = now - lag, f"server time - lag {lag.total_seconds():g}s"
    if oldest is not None and oldest < bound:
        bound, method = oldest, "start of the oldest open transaction"
    if hidden:
        method += f" ({hidden} sessions of other roles not visible: lag alone covers them)"
    return SafeUpper(at=bound, method=method)


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class DayWindow:
    """Rows of `day` whose cursor is in [lower, upper)."""

    day: dt.date
    lower: dt.datetime
    upper: dt.datetime

    @property
    def empty(self) -> bool:
        return self.lower >= self.upper


def incremental_windows(
    days: list[dt.date],
    committed_upper: dict[dt.date, dt.datetime | None],
    safe_upper: dt.datetime,
    *,
    replace: bool,
) -> list[DayWindow]:
    """Each day's window: from its last committed upper (append) or its start (replace)."""
    windows = []
    for day in days:
        start, end = day_start(day), min(day_start(day) + DAY, safe_upper)
        previous = committed_upper.get(day)
        lower = start if replace or previous is None else max(start, previous)
        windows.append(DayWindow(day, lower, max(lower, end)))
    return windows


def check_full_snapshot_days(
    table: str, days: list[dt.date], today: dt.date, snapshotted: set
) -> None:
    """A full table's partition D is the snapshot taken on D: only today's can be taken now."""
    missing = [d for d in days if d != today and d not in snapshotted]
    if missing:
        span = missing[0].isoformat() + (
            f" .. {missing[-1].isoformat()}" if len(missing) > 1 else ""
        )
        raise ConfigError(
            f"table {table!r} is synced in full: partition {span} has no snapshot and a past day "
            f"cannot be re-snapshotted (that would label today's rows with an old date). "
            f"Materialize today's partition ({today.isoformat()}) instead."
        )
