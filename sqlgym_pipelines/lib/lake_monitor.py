"""Sync history of one lake table from its `_metadata` records (`make monitor`)."""

import datetime as dt
from dataclasses import dataclass

from sqlgym_pipelines.lib.lake_store import LakeStore


@dataclass
class TableReport:
    last_sync: str | None = None
    status: str | None = None
    rows: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    failures: int = 0  # among the records read
    synced_through: str | None = None  # newest committed window upper (or snapshot time)
    lag: str | None = None  # now - synced_through
    error: str | None = None


def table_report(store: LakeStore, table: str, now: dt.datetime, history: int) -> TableReport:
    ids = store.record_ids(table)[-history:]
    report = TableReport()
    records = [r for r in (store.read_record(table, i) for i in ids) if r is not None]
    if not records:
        return report
    last = records[-1]
    report.last_sync, report.status, report.error = last.sync_id, last.status, last.error
    report.rows, report.bytes, report.duration_s = last.rows, last.bytes, last.duration_s
    report.failures = sum(r.status == "failed" for r in records)
    committed = [r for r in records if r.status == "committed"]
    uppers = [p.upper or r.started_at for r in committed for p in r.partitions.values()]
    if uppers:
        newest = max(dt.datetime.fromisoformat(u) for u in uppers)
        report.synced_through = newest.isoformat(timespec="seconds")
        report.lag = str(now - newest).split(".")[0]
    return report
