"""The seed's data_validator as plain functions over a table's committed lake partitions.

Each returns a CheckOutcome (passed + numbers); defs/postgres_sync/checks.py turns them into
Dagster asset checks. Only committed files (the partition pointer's list) are read.
"""

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from sqlgym_pipelines.lib.lake_store import LakeStore
from sqlgym_pipelines.lib.lake_windows import day_start
from sqlgym_pipelines.lib.lake_writer import SYNCED_AT
from sqlgym_pipelines.lib.sync_config import ResolvedTable

SAMPLE = 10


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


class Partitions:
    """The committed files of some days of one table, read lazily and only the columns asked."""

    def __init__(self, store: LakeStore, fs, table: str, days: list[dt.date]):
        self.store, self.fs, self.table = store, fs, table
        self.states = {d: store.partition_state(table, d) for d in days}

    def files(self, day: dt.date) -> list[str]:
        state = self.states.get(day)
        return [f.key for f in state[1].files] if state else []

    def path(self, key: str) -> str:
        return f"{self.store.loc.bucket}/{key}"

    def footer_rows(self, day: dt.date) -> int:
        return sum(pq.ParquetFile(self.fs.open_input_file(self.path(k))).metadata.num_rows
                   for k in self.files(day))  # fmt: skip

    def read(self, day: dt.date, columns: list[str] | None = None) -> pa.Table | None:
        tables = [
            pq.read_table(self.path(k), filesystem=self.fs, columns=columns)
            for k in self.files(day)
        ]
        return pa.concat_tables(tables) if tables else None

    def schema(self, day: dt.date) -> pa.Schema | None:
        keys = self.files(day)
        return pq.read_schema(self.fs.open_input_file(self.path(keys[-1]))) if keys else None


def rows_match_source(parts: Partitions, conn, resolved: ResolvedTable) -> CheckOutcome:
    """Files hold what the source held in the sync's snapshot; the source now holds no row the
    lake lacks (a current row in a synced window must be in the lake: late commits excluded)."""
    per_day, bad = {}, []
    for day, state in parts.states.items():
        if state is None:
            continue
        entry = state[1]
        files_rows = parts.footer_rows(day)
        live = _live_count(conn, resolved, day, entry.upper) if resolved.cursor_sql else None
        per_day[day.isoformat()] = {
            "lake": files_rows,
            "synced_source": entry.source_rows_total,
            "live_source": live,
        }
        if files_rows != entry.source_rows_total or (live is not None and live > files_rows):
            bad.append(day.isoformat())
    return CheckOutcome(not bad, f"row counts differ on {bad}" if bad else "row counts match the source",
                        {"per_day": per_day, "days_checked": len(per_day)})  # fmt: skip


def _live_count(conn, resolved: ResolvedTable, day: dt.date, upper: str | None) -> int:
    end = dt.datetime.fromisoformat(upper) if upper else day_start(day) + dt.timedelta(days=1)
    start = day_start(day)
    if resolved.cursor_type == "timestamp":
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    query = sql.SQL("SELECT count(*) FROM {} WHERE {c} >= %s AND {c} < %s").format(
        resolved.relation, c=resolved.cursor_sql
    )
    return conn.execute(query, (start, end)).fetchone()[0]


def versions_unique(parts: Partitions, resolved: ResolvedTable) -> CheckOutcome:
    """Full tables: one row per pk. Incremental: no row version (pk, cursor) written twice."""
    keys = list(resolved.config.pk)
    updated = resolved.config.updated_col
    if resolved.config.incremental:
        keys = (
            keys + [updated]
            if updated and not resolved.config.cursor
            else [c for c in resolved.columns]
        )  # a cursor expression: a version is the whole row
    dupes, samples = 0, []
    for day in parts.states:
        table = parts.read(day, keys)
        if table is None:
            continue
        cols = ", ".join('"' + k.replace('"', '""') + '"' for k in keys)
        import duckdb  # here, not at the top: a sync's run process never needs it (~12 MB)

        with duckdb.connect() as con:
            con.register("part", table)
            found = con.execute(
                f"SELECT {cols}, count(*) AS n FROM part GROUP BY ALL HAVING count(*) > 1"
            ).fetchall()
        dupes += sum(r[-1] - 1 for r in found)
        samples += [
            {"day": day.isoformat(), "key": [str(v) for v in r[:-1]], "copies": r[-1]}
            for r in found[:SAMPLE]
        ]
    what = "pk" if not resolved.config.incremental else "row version"
    return CheckOutcome(dupes == 0, f"{dupes} duplicate {what}s" if dupes else f"every {what} once",
                        {"duplicates": dupes, "key": keys, "samples": samples[:SAMPLE]})  # fmt: skip


def columns_complete(parts: Partitions, not_null: set[str]) -> CheckOutcome:
    """NULL analysis per column; a column NOT NULL in the source must have none in the lake.

    Null counts come from the Parquet footers' statistics; a column chunk without them is
    read alone, a row group at a time, so memory stays bounded by one column chunk.
    """
    nulls: dict[str, int] = {}
    rows = 0
    for day in parts.states:
        for key in parts.files(day):
            counts, file_rows = _null_counts(parts.fs.open_input_file(parts.path(key)))
            rows += file_rows
            for name, n in counts.items():
                nulls[name] = nulls.get(name, 0) + n
    broken = sorted(c for c in not_null if nulls.get(c, 0))
    ratio = {c: round(n / rows, 4) for c, n in nulls.items()} if rows else {}
    return CheckOutcome(not broken, f"NULLs in NOT NULL columns {broken}" if broken else "complete",
                        {"rows": rows, "null_ratio": ratio, "not_null_violations": broken})  # fmt: skip


def _null_counts(source) -> tuple[dict[str, int], int]:
    pf = pq.ParquetFile(source)
    meta, schema = pf.metadata, pf.schema_arrow
    counts = dict.fromkeys(schema.names, 0)
    leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in schema.names:
            if pa.types.is_nested(schema.field(name).type):
                # a list's leaf statistics count NULL elements, not NULL lists
                counts[name] += pf.read_row_group(g, columns=[name]).column(0).null_count
                continue
            stats = group.column(leaf[name]).statistics
            if stats is not None and stats.has_null_count:
                counts[name] += stats.null_count
            else:
                counts[name] += pf.read_row_group(g, columns=[name]).column(0).null_count
    return counts, meta.num_rows


def schema_matches(parts: Partitions, expected: pa.Schema) -> CheckOutcome:
    """Files carry the declared mapping; drift (new, dropped, retyped columns) is named."""
    want = {f.name: f.type for f in expected}
    report: dict[str, dict] = {}
    for day in parts.states:
        schema = parts.schema(day)
        if schema is None:
            continue
        have = {f.name: f.type for f in schema if f.name != SYNCED_AT}
        drift = {
            "new_in_source": sorted(set(want) - set(have)),
            "dropped_from_source": sorted(set(have) - set(want)),
            "retyped": {
                n: f"{have[n]} -> {want[n]}"
                for n in want.keys() & have.keys()
                if have[n] != want[n]
            },
        }
        if any(drift.values()):
            report[day.isoformat()] = drift
    return CheckOutcome(not report, f"schema drift on {sorted(report)}" if report else "schema matches",
                        {"drift": report})  # fmt: skip


def cursor_coverage(conn, resolved: ResolvedTable, start: dt.date) -> CheckOutcome:
    """Rows no partition can hold: NULL cursor, or a cursor before the partitions' start."""
    if resolved.cursor_sql is None:
        return CheckOutcome(True, "full table: no cursor", {})
    begin = (
        day_start(start)
        if resolved.cursor_type != "timestamp"
        else day_start(start).replace(tzinfo=None)
    )
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE {c} IS NULL), count(*) FILTER (WHERE {c} < %s) FROM {rel}"
    ).format(c=resolved.cursor_sql, rel=resolved.relation)
    null_rows, early = conn.execute(query, (begin,)).fetchone()
    return CheckOutcome(null_rows == 0 and early == 0,
                        f"{null_rows} rows with NULL cursor, {early} before {start}",
                        {"null_cursor_rows": null_rows, "before_start_rows": early, "start": start.isoformat()})  # fmt: skip
