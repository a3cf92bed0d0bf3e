"""One sync of one table into the lake: plan windows, stream one query into day files, commit.

See docs/postgres_sync.md for the contract. Plain Python: the Dagster asset calls sync_table.
"""

import datetime as dt
import time
import traceback
from dataclasses import dataclass, field

import pyarrow as pa
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import SqlgymError
from sqlgym_pipelines.lib.lake_layout import (
    DataFile,
    LakeLocation,
    PartitionSync,
    SyncRecord,
    sync_id_for,
)
from sqlgym_pipelines.lib.lake_store import LakeStore
from sqlgym_pipelines.lib.lake_windows import (
    DayWindow,
    SafeUpper,
    check_full_snapshot_days,
    incremental_windows,
    safe_upper_bound,
)
from sqlgym_pipelines.lib.lake_writer import DayFiles, split_by_day
from sqlgym_pipelines.lib.pg_arrow import (
    SnapshotReader,
    plan_columns,
    render_query,
    schema_hash,
    select_list,
    target_schema,
)
from sqlgym_pipelines.lib.pg_catalog import table_columns
from sqlgym_pipelines.lib.prefetch import prefetch
from sqlgym_pipelines.lib.s3_upload import PendingUpload
from sqlgym_pipelines.lib.sync_config import ResolvedTable

CURSOR = "__sqlgym_cursor"
STALE_STAGING = dt.timedelta(hours=6)


class SyncMismatch(SqlgymError):
    """The rows written differ from the source's count in the same snapshot: nothing is committed."""


@dataclass
class SyncOptions:
    replace: bool = False  # re-extract whole days and supersede their files (backfill, invoke-full)
    # 4 MB reader batches, <= 24 MB row groups and 8 MB upload parts keep the extraction's own
    # memory near 140 MB (benchmarks/extract.py: 16 MB batches were ~20% faster, ~120 MB more)
    batch_size_hint_bytes: int = 4 * 1024 * 1024
    row_group_rows: int = 262_144
    run_id: str | None = None
    now: dt.datetime | None = None  # the sync's start (tests pin it); default: the clock
    log: list[str] = field(default_factory=list)


def _ranges(windows: list[DayWindow]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Adjacent windows merged: a backfill of many days is one range, so one scan."""
    merged: list[list[dt.datetime]] = []
    for w in windows:
        if merged and merged[-1][1] == w.lower:
            merged[-1][1] = w.upper
        else:
            merged.append([w.lower, w.upper])
    return [(a, b) for a, b in merged]


def _bound(value: dt.datetime, cursor_type: str | None):
    # Compare in the cursor's own type so an index on it is usable (timestamp is read as UTC).
    return value.replace(tzinfo=None) if cursor_type == "timestamp" else value


def _where(resolved: ResolvedTable, ranges) -> tuple[sql.Composable, list]:
    parts, params = [], []
    for lower, upper in ranges:
        parts.append(sql.SQL("({c} >= %s AND {c} < %s)").format(c=resolved.cursor_sql))
        params += [_bound(lower, resolved.cursor_type), _bound(upper, resolved.cursor_type)]
    return sql.SQL(" OR ").join(parts), params


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


class TableSync:
    """Everything one sync of one table needs, so each step stays a small method."""

    def __init__(
        self, source_url, s3_client, location: LakeLocation, resolved: ResolvedTable, opts
    ):
        self.source_url, self.loc, self.t, self.opts = source_url, location, resolved, opts
        self.store = LakeStore(s3_client, location)
        self.name = resolved.name
        self.now = (opts.now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        self.sync_id = sync_id_for(self.now)
        self.kind = "incremental" if resolved.config.incremental else "full"
        self.preview: pa.Table | None = None

    def run(self, days: list[dt.date]) -> SyncRecord:
        started = time.monotonic()
        self.store.recover(self.name, self.now, STALE_STAGING)
        while self.store.sync_id_taken(self.name, self.sync_id):  # ids are per second
            self.now += dt.timedelta(seconds=1)
            self.sync_id = sync_id_for(self.now)
        with pg.connection(self.source_url, autocommit=True) as conn:
            columns = [c for c in table_columns(conn, self.t.config.schema, self.t.config.source_table)
                       if c.name in set(self.t.columns)]  # fmt: skip
            safe = safe_upper_bound(conn, dt.timedelta(seconds=self.t.config.lag_seconds))
        plans = plan_columns(columns)
        states = {d: self.store.partition_state(self.name, d) for d in days}
        record = SyncRecord(
            table=self.name, sync_id=self.sync_id, sync_type=self.kind,
            mode="replace" if self.opts.replace else "append", status="committed",
            started_at=self.now.isoformat(), finished_at=self.now.isoformat(),
            source={"schema": self.t.config.schema, "table": self.t.config.source_table,
                    "cursor": self.t.cursor_sql.as_string() if self.t.cursor_sql else None,
                    "safe_upper": _iso(safe.at), "safe_upper_method": safe.method},
            arrow_schema=str(target_schema(plans)), schema_hash=schema_hash(target_schema(plans)),
            run_id=self.opts.run_id,
        )  # fmt: skip
        self.store.begin(self.name, self.sync_id, self.now)
        try:
            if self.kind == "incremental":
                self._incremental(record, plans, days, states, safe)
            else:
                self._full(record, plans, days, states, safe)
            record.finished_at = (
                self.now + dt.timedelta(seconds=time.monotonic() - started)
            ).isoformat()
            expected = {
                day: (states[dt.date.fromisoformat(day)] or (None,))[0] for day in record.partitions
            }
            self.store.commit(record, expected)
        except BaseException as exc:
            record.status, record.error = (
                "failed",
                "".join(traceback.format_exception_only(exc)).strip(),
            )
            record.finished_at = dt.datetime.now(dt.UTC).isoformat()
            self.store.record_failure(record)
            raise
        self.store.publish(record)
        return record

    def _stream_into_days(self, plans, query, params, extra, day_of, count):
        """(day -> (file, upload handle), day -> source rows), both read in one snapshot.

        Each day's file is a pending multipart upload at its final key: invisible until the
        record is committed and publish() completes it.
        """
        schema = target_schema(plans)

        def open_sink(day: dt.date) -> PendingUpload:
            key = self.loc.data_key(self.name, day, self.kind, self.sync_id)
            return PendingUpload(self.store.s3, self.loc.bucket, key)

        files = DayFiles(
            schema, open_sink, synced_at=self.now, row_group_rows=self.opts.row_group_rows
        )
        try:
            with SnapshotReader(self.source_url) as reader:
                counts = count(reader)
                batches = reader.batches(query, params, plans, extra=extra,
                                         batch_size_hint_bytes=self.opts.batch_size_hint_bytes)  # fmt: skip
                for batch in prefetch(batches, depth=1):
                    for day, part in day_of(batch):
                        files.write(part, day)
            written = files.close()
        except BaseException:
            files.abort()
            raise
        self.preview = files.preview
        return written, counts

    def _incremental(self, record, plans, days, states, safe: SafeUpper) -> None:
        committed = {d: dt.datetime.fromisoformat(s[1].upper) if s and s[1].upper else None
                     for d, s in states.items()}  # fmt: skip
        windows = [w for w in incremental_windows(days, committed, safe.at, replace=self.opts.replace)
                   if not w.empty]  # fmt: skip
        if not windows:
            return
        ranges = _ranges(windows)
        where, params = _where(self.t, ranges)
        order = (
            sql.SQL(" ORDER BY {}").format(self.t.cursor_sql) if len(windows) > 1 else sql.SQL("")
        )
        query = sql.SQL("SELECT {cols}, {cur} AS {alias} FROM {rel} WHERE {where}{order}").format(
            cols=select_list(plans), cur=self.t.cursor_sql, alias=sql.Identifier(CURSOR),
            rel=self.t.relation, where=where, order=order,
        )  # fmt: skip
        count = sql.SQL(
            "SELECT (({cur})::timestamptz AT TIME ZONE 'UTC')::date::text AS day, count(*) AS n"
            " FROM {rel} WHERE {where} GROUP BY 1"
        ).format(cur=self.t.cursor_sql, rel=self.t.relation, where=where)
        extra = [pa.field(CURSOR, pa.timestamp("us", tz="UTC"))]
        written, counts = self._stream_into_days(
            plans, query, params, extra, lambda b: split_by_day(b, CURSOR),
            lambda reader: _fetch_counts(reader, count, params),
        )  # fmt: skip
        for w in windows:
            self._add_partition(record, w.day, states[w.day], written.get(w.day),
                                counts.get(w.day, 0), w.lower, w.upper)  # fmt: skip

    def _full(self, record, plans, days, states, safe: SafeUpper) -> None:
        today = self.now.date()  # the snapshot is taken now: it can only be today's partition
        check_full_snapshot_days(self.name, days, today, {d for d, s in states.items() if s})
        if today not in days:
            return
        query = sql.SQL("SELECT {cols} FROM {rel}").format(
            cols=select_list(plans), rel=self.t.relation
        )
        total = sql.SQL("SELECT count(*) FROM {}").format(self.t.relation)
        written, counts = self._stream_into_days(
            plans, query, None, [], lambda b: [(today, b)], lambda r: {today: r.scalar(total)}
        )
        self._add_partition(record, today, states[today], written.get(today),
                            counts.get(today, 0), None, None, replace=True)  # fmt: skip

    def _add_partition(self, record, day, state, staged: tuple[DataFile, dict] | None, source_rows,
                       lower, upper, *, replace=None) -> None:  # fmt: skip
        replace = self.opts.replace if replace is None else replace
        rows = staged[0].rows if staged else 0
        if rows != source_rows:
            raise SyncMismatch(
                f"table {self.name!r} partition {day}: wrote {rows} rows but the source holds "
                f"{source_rows} in the same snapshot; nothing was committed"
            )
        previous = state[1].files if state else []
        added, staged_map = [], {}
        if staged:
            added, staged_map = [staged[0]], {staged[0].key: staged[1]}
        record.partitions[day.isoformat()] = PartitionSync(
            day=day.isoformat(), lower=_iso(lower), upper=_iso(upper), added=added, staged=staged_map,
            superseded=[f.key for f in previous] if replace else [],
            files=added if replace else [*previous, *added], source_rows=source_rows,
            source_rows_total=source_rows if replace or not state
            else (state[1].source_rows_total or 0) + source_rows,
        )  # fmt: skip


def _fetch_counts(reader: SnapshotReader, query, params) -> dict[dt.date, int]:
    with reader.conn.cursor() as cur:
        cur.execute(render_query(reader.url, query, params))
        return {dt.date.fromisoformat(day): int(n) for day, n in cur.fetchall()}


def sync_table(
    source_url: str,
    s3_client,
    location: LakeLocation,
    resolved: ResolvedTable,
    days: list[dt.date],
    options: SyncOptions | None = None,
) -> SyncRecord:
    """Sync `days` of one table; returns the committed record (raises, recording the failure).

    The record's `preview` attribute holds the first rows written (not part of its JSON).
    """
    sync = TableSync(source_url, s3_client, location, resolved, options or SyncOptions())
    record = sync.run(days)
    record.preview = sync.preview
    return record
