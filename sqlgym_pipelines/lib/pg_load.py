"""Arrow -> Postgres loader: COPY into a staging table, then one set-based merge into the target.

Used by the CSV ingestion, the forecast sync and the Athena -> Neon ETL. Nothing is ever
inserted row by row: Arrow batches are streamed through `COPY ... FROM STDIN`, in binary
(pgpq's encoder) where every column's type allows it, else as CSV rendered by pyarrow's C++
writer; the merge is `INSERT ... SELECT` (append), `MERGE` or `INSERT ... ON CONFLICT DO
UPDATE` (upsert) or `DELETE` + `INSERT` (replace), run in the caller's transaction so that a
failure anywhere rolls the whole load back.
"""

import contextlib
import dataclasses
import decimal
import io
import json
from collections.abc import Iterable, Sequence

import pgpq
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed

ROW_COLUMN = "_sqlgym_row"  # staging's arrival order: the last version of a key wins
# A cached sequence: COPY draws one value per row, and an uncached one logs and locks the
# sequence every few rows (a third of a binary COPY's time into staging).
_ROW_IDENTITY = "bigint GENERATED ALWAYS AS IDENTITY (CACHE 100000)"
MODES = ("append", "upsert", "replace")
# The least work_mem a load's transaction runs with (raised, never lowered): the upsert's hash
# of the target's keys spilled to disk past ~1M rows at the default 4 MB, and a 3M-row MERGE
# took 11.2 s instead of 7.8 s (with hash_mem_multiplier's default 2, 64 MB hashes ~3M keys).
WORK_MEM = "64MB"
_COPY_CHUNK_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclasses.dataclass
class MergeCounts:
    staged: int = 0
    superseded: int = 0  # staged rows replaced by a later row with the same key
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def pg_type(arrow_type: pa.DataType) -> str:
    """The Postgres column type that holds an Arrow type without loss."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return pg_type(t.value_type)
    simple = {
        pa.bool_(): "boolean",
        pa.int8(): "smallint",
        pa.int16(): "smallint",
        pa.uint8(): "smallint",
        pa.int32(): "integer",
        pa.uint16(): "integer",
        pa.int64(): "bigint",
        pa.uint32(): "bigint",
        pa.uint64(): "numeric(20,0)",
        pa.float16(): "real",
        pa.float32(): "real",
        pa.float64(): "double precision",
        pa.date32(): "date",
        pa.date64(): "date",
        pa.null(): "text",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_duration(t):
        return "interval"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t):
        return "jsonb"
    raise ConfigError(f"Arrow type {t} has no Postgres mapping; cast the column first")


def create_table(
    conn: psycopg.Connection,
    ref: TableRef,
    schema: pa.Schema,
    *,
    primary_key: Sequence[str] = (),
    unlogged: bool = False,
    with_row_column: bool = False,
) -> None:
    """CREATE TABLE IF NOT EXISTS from an Arrow schema (and the schema itself if missing)."""
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(pg_type(f.type))) for f in schema
    ]
    if with_row_column:
        columns.append(sql.SQL("{} " + _ROW_IDENTITY).format(sql.Identifier(ROW_COLUMN)))
    if primary_key:
        columns.append(sql.SQL("PRIMARY KEY ({})").format(_idents(primary_key)))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ref.schema)))
    conn.execute(
        sql.SQL("CREATE {}TABLE IF NOT EXISTS {} ({})").format(
            sql.SQL("UNLOGGED " if unlogged else ""), ref.ident, sql.SQL(", ").join(columns)
        )
    )


def create_staging(conn: psycopg.Connection, ref: TableRef, schema: pa.Schema) -> None:
    """A fresh UNLOGGED staging table (dropped first), with the arrival-order column unless the
    schema brings its own ROW_COLUMN (numbered by the writer: no sequence call per row)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ref.ident))
    create_table(conn, ref, schema, unlogged=True, with_row_column=ROW_COLUMN not in schema.names)


def copy_arrow(
    conn: psycopg.Connection,
    ref: TableRef,
    data: pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch],
    *,
    binary: bool | None = None,
) -> int:
    """COPY Arrow data into an existing table by column name; returns the rows written.

    binary=None picks COPY's binary format (pgpq's encoder: no text rendering here, no text
    parsing in the server; ~2x faster at both ends) when every column's Postgres type is the
    one the encoder writes, else CSV (pyarrow's writer). True/False force one.
    """
    batches = [data] if isinstance(data, pa.Table | pa.RecordBatch) else data
    with ArrowCopy(conn, ref, binary=binary) as copy:
        return sum(copy.write(batch) for batch in batches)


# The Postgres types (format_type, no modifier) whose binary input reads what pgpq writes for
# an Arrow type; TIMESTAMP is timestamp or timestamptz as the Arrow type has a time zone.
_BINARY_READERS = {
    "BOOL": {"boolean"}, "INT2": {"smallint"}, "INT4": {"integer"}, "INT8": {"bigint"},
    "FLOAT4": {"real"}, "FLOAT8": {"double precision"}, "NUMERIC": {"numeric"},
    "TEXT": {"text", "character varying", "bpchar"}, "BYTEA": {"bytea"}, "DATE": {"date"},
    "TIME": {"time without time zone"}, "INTERVAL": {"interval"},
}  # fmt: skip


def _binary_encoder(conn: psycopg.Connection, ref: TableRef, schema: pa.Schema):
    """pgpq's encoder for the schema if the table's columns read its output exactly, else None."""
    schema = pa.schema([_decoded_field(f) for f in schema])
    try:
        encoder = pgpq.ArrowToPostgresBinaryEncoder(schema)
    except ValueError:  # a type it cannot encode (date64, null, decimal256, nanoseconds...)
        return None
    columns = target_columns(conn, ref, typmod=False)
    for field, column in zip(schema, encoder.schema().columns, strict=True):
        written = column.data_type.ddl()
        if written == "TIMESTAMP":
            tz = field.type.tz if pa.types.is_timestamp(field.type) else None
            readers = {"timestamp with time zone" if tz else "timestamp without time zone"}
        else:
            readers = _BINARY_READERS.get(written, set())
        if columns.get(field.name) not in readers:
            return None
    return encoder


def _decoded_field(field: pa.Field) -> pa.Field:
    return field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field


class ArrowCopy:
    """A `COPY ... FROM STDIN` of Arrow batches into one table, kept open across writes so that
    the server parses one batch while the next is produced. Opened by the first non-empty
    write; close() ends the statement (a connection runs one COPY at a time) and a later
    write opens another. Leaving the block on an error aborts the open COPY.

    freeze=True writes the rows frozen (COPY FREEZE: the table must have been created or
    truncated in this transaction), so that the first reader after the commit does not have
    to set every row's hint bits and write every page out again."""

    def __init__(
        self,
        conn: psycopg.Connection,
        ref: TableRef,
        *,
        binary: bool | None = None,
        freeze: bool = False,
    ):
        self.conn, self.ref, self.binary, self.freeze = conn, ref, binary, freeze
        self.names: list[str] | None = None  # the first batch's, for every later one
        self._cm = self._copy = self._encoder = None

    def __enter__(self) -> "ArrowCopy":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif self._cm is not None:
            cm, self._cm = self._cm, None
            with contextlib.suppress(psycopg.Error):
                cm.__exit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.Error):
            raise QueryFailed(f"COPY into {self.ref} failed: {_reason(exc)}") from exc

    def write(self, batch: pa.Table | pa.RecordBatch) -> int:
        """Send a batch; returns its rows."""
        if batch.num_rows == 0:
            return 0
        if self.names is None:
            self.names = batch.schema.names
        elif batch.schema.names != self.names:
            raise ConfigError(
                f"COPY into {self.ref}: a batch has columns {', '.join(batch.schema.names)}, "
                f"the first had {', '.join(self.names)}"
            )
        if self._cm is None:
            self._open(batch.schema)
        if self._encoder is None:
            buffer = io.BytesIO()
            pacsv.write_csv(_copyable(batch), buffer, pacsv.WriteOptions(include_header=False))
            self._send(buffer.getbuffer())
            return batch.num_rows
        if batch.schema != self._schema:
            batch = batch.cast(self._schema)  # dictionaries decoded; later batches as the first
        for part in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
            self._send(memoryview(self._encoder.write_batch(part)))
        return batch.num_rows

    def close(self) -> None:
        """End the open COPY, if any: its rows are then in the table (and the transaction)."""
        if self._cm is None:
            return
        cm, self._cm = self._cm, None
        try:
            if self._encoder is not None:
                self._copy.write(self._encoder.finish())
            cm.__exit__(None, None, None)
        except psycopg.Error as exc:
            raise QueryFailed(f"COPY into {self.ref} failed: {_reason(exc)}") from exc

    def _open(self, schema: pa.Schema) -> None:
        self._schema = pa.schema([_decoded_field(f) for f in schema])
        self._encoder = None
        if self.binary is not False:
            self._encoder = _binary_encoder(self.conn, self.ref, schema)
        if self.binary and self._encoder is None:
            raise ConfigError(f"COPY into {self.ref}: the columns cannot be written in binary")
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(
            self.ref.ident,
            _idents(self.names),
            sql.SQL("binary" if self._encoder else "csv"),
            sql.SQL(", FREEZE" if self.freeze else ""),
        )
        self._cm = self.conn.cursor().copy(statement)
        self._copy = self._cm.__enter__()
        if self._encoder is not None:
            self._copy.write(self._encoder.write_header())

    def _send(self, view: memoryview) -> None:
        for start in range(0, len(view), _COPY_CHUNK_BYTES):
            self._copy.write(view[start : start + _COPY_CHUNK_BYTES])
        view.release()


def _copyable(batch: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """Columns pyarrow's CSV writer cannot render as Postgres reads them, rendered as text."""
    for i, field in enumerate(batch.schema):
        t = field.type
        if pa.types.is_dictionary(t):
            batch = batch.set_column(i, field.name, pc.cast(batch.column(i), t.value_type))
            t = t.value_type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            values = [None if v is None else "\\x" + v.hex() for v in batch.column(i).to_pylist()]
            batch = batch.set_column(i, field.name, pa.array(values, pa.string()))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t):
            values = [
                None if v is None else json.dumps(v, default=str)
                for v in batch.column(i).to_pylist()
            ]
            batch = batch.set_column(i, field.name, pa.array(values, pa.string()))
        elif pa.types.is_string_view(t):  # the CSV writer cannot render string_view
            batch = batch.set_column(i, field.name, pc.cast(batch.column(i), pa.large_string()))
        elif pa.types.is_duration(t):  # the CSV writer prints a bare count: Postgres reads seconds
            digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
            values = [
                None if v is None else f"{decimal.Decimal(v).scaleb(-digits):f} seconds"
                for v in pc.cast(batch.column(i), pa.int64()).to_pylist()
            ]
            batch = batch.set_column(i, field.name, pa.array(values, pa.string()))
    return batch


def dedupe(conn: psycopg.Connection, staging: TableRef, key: Sequence[str]) -> int:
    """Delete staged rows superseded by a later row with the same key; returns how many."""
    # A window (sort) rather than a self-join: `IS NOT DISTINCT FROM` cannot hash or merge, so
    # the join was a nested loop, quadratic in the staged rows. PARTITION BY groups NULLs alike.
    stmt = sql.SQL(
        "DELETE FROM {staging} WHERE {row} IN (SELECT {row} FROM (SELECT {row}, "
        "row_number() OVER (PARTITION BY {key} ORDER BY {row} DESC) AS n FROM {staging}) d "
        "WHERE n > 1)"
    ).format(staging=staging.ident, key=_idents(key), row=sql.Identifier(ROW_COLUMN))
    return conn.execute(stmt).rowcount


def target_columns(
    conn: psycopg.Connection, ref: TableRef, *, typmod: bool = True
) -> dict[str, str]:
    """{column: formatted type} of an existing table, in order; {} if it does not exist.

    typmod=False drops the modifier (varchar(20) -> character varying, char(3) -> bpchar).
    """
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, CASE WHEN %s THEN a.atttypmod ELSE -1 END) "
        "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (typmod, ref.ident.as_string(conn)),  # to_regclass: pg_temp resolves to this session's
    ).fetchall()
    return dict(rows)


def unique_keys(conn: psycopg.Connection, ref: TableRef) -> list[tuple[str, ...]]:
    """The column sets of the table's primary key and unique indexes (ON CONFLICT targets)."""
    rows = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL "
        "GROUP BY i.indexrelid",
        (ref.schema, ref.name),
    ).fetchall()
    return [tuple(r[0]) for r in rows]


def check_target(
    conn: psycopg.Connection,
    target: TableRef,
    columns: Sequence[str],
    key: Sequence[str],
    mode: str,
) -> dict[str, str]:
    """The target's column types; a clear error if a column or the upsert key's index is missing."""
    if mode not in MODES:
        raise ConfigError(f"load mode {mode!r} is not one of {', '.join(MODES)}")
    existing = target_columns(conn, target)
    if not existing:
        raise ConfigError(f"target table {target} does not exist")
    missing = [c for c in columns if c not in existing]
    if missing:
        raise ConfigError(
            f"target table {target} has no column(s) {', '.join(missing)} "
            f"(columns: {', '.join(existing)})"
        )
    if mode == "upsert":
        if not key:
            raise ConfigError(f"upsert into {target} needs key columns")
        absent = [k for k in key if k not in columns]
        if absent:
            raise ConfigError(
                f"upsert into {target}: key column(s) {', '.join(absent)} are not in the data "
                f"(columns: {', '.join(columns)})"
            )
        if set(key) not in [set(k) for k in unique_keys(conn, target)]:
            raise ConfigError(
                f"upsert into {target} on ({', '.join(key)}) needs a primary key or unique "
                f"index on exactly those columns; add one or change the key"
            )
    return existing


UPSERT_STATEMENTS = ("merge", "on_conflict")


def merge(
    conn: psycopg.Connection,
    staging: TableRef,
    target: TableRef,
    *,
    columns: Sequence[str],
    mode: str,
    key: Sequence[str] = (),
    replace_where: sql.Composable | None = None,
    touch_column: str | None = None,
    batch_rows: int | None = None,
    upsert_with: str = "on_conflict",
    staged_rows: int | None = None,
    only_changes: bool = False,
) -> MergeCounts:
    """Move staged rows into the target in the caller's transaction.

    append: insert every staged row. upsert: insert new keys, update existing keys whose values
    differ (touch_column, e.g. updated_at, is set to now() only then), leave equal rows alone.
    replace: delete the target rows matching replace_where, then insert. Staged keys must be
    unique for upsert (see dedupe). batch_rows splits the insert into statements of about that
    many rows (whole pages of the staging table: at least one page a statement).

    upsert_with="merge" upserts with one MERGE (a hash join: ~1.5x faster than ON CONFLICT's
    per-row index probes and speculative inserts when many keys exist) on Postgres 15+, and
    falls back to `INSERT ... ON CONFLICT` before 15, and when a concurrent writer inserts one
    of the new keys first (MERGE would fail on it where ON CONFLICT updates it).
    staged_rows, when the caller knows it, saves counting the staging table. only_changes says
    the staged rows are known to be new or changed (see stage_changes): ON CONFLICT then skips
    its probe for rows equal to the target's.
    """
    if upsert_with not in UPSERT_STATEMENTS:
        raise ConfigError(
            f"upsert_with {upsert_with!r} is not one of {', '.join(UPSERT_STATEMENTS)}"
        )
    check_target(conn, target, columns, key, mode)
    raise_work_mem(conn)
    # Staged values are cast to the bare type (text -> jsonb needs an explicit cast) and the
    # column's modifier is then applied by the INSERT's assignment, which raises where an explicit
    # cast to varchar(n), char(n) or bit(n) would silently truncate.
    types = target_columns(conn, target, typmod=False)
    counts = MergeCounts()
    if mode == "replace":
        if replace_where is None:
            raise ConfigError(f"replace into {target} needs the partition's WHERE clause")
        counts.deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE ").format(target.ident) + replace_where
        ).rowcount
    if staged_rows is None:
        staged_rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(staging.ident)
        ).fetchone()[0]
    use_merge = mode == "upsert" and upsert_with == "merge" and conn.info.server_version >= 150000
    load = _insert_or_merge if use_merge else _insert
    for pages in _page_ranges(conn, staging, staged_rows, batch_rows):
        inserted, updated = load(
            conn, staging, target, columns, types, mode, key, touch_column, pages, only_changes
        )
        counts.inserted += inserted
        counts.updated += updated
    counts.staged = staged_rows
    counts.unchanged = counts.staged - counts.inserted - counts.updated
    return counts


def raise_work_mem(conn: psycopg.Connection, size: str = WORK_MEM) -> None:
    """work_mem of at least `size` until the end of the transaction (SET LOCAL)."""
    conn.execute(
        "SELECT set_config('work_mem', %s, true) "
        "WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
        (size, size),
    )


def _insert_or_merge(conn, staging, target, columns, types, mode, key, touch_column, rows, only):
    """MERGE in a savepoint; if a concurrent writer inserted a new key first, ON CONFLICT (and
    ON CONFLICT only where the server keeps no write counters, which MERGE's counts read)."""
    if not _counts_tracked(conn):
        return _insert(conn, staging, target, columns, types, mode, key, touch_column, rows, only)
    try:
        with conn.transaction():
            return _merge_upsert(conn, staging, target, columns, types, key, touch_column, rows)
    except psycopg.errors.UniqueViolation:
        return _insert(conn, staging, target, columns, types, mode, key, touch_column, rows, only)


def _merge_upsert(conn, staging, target, columns, types, key, touch_column, rows):
    values = [c for c in columns if c not in key]
    source = sql.SQL("SELECT {} FROM {} AS s{}").format(
        sql.SQL(", ").join(
            sql.SQL("s.{c}::{ty} AS {c}").format(c=sql.Identifier(c), ty=sql.SQL(types[c]))
            for c in columns
        ),
        staging.ident,
        _in_range(rows),
    )
    stmt = sql.SQL("MERGE INTO {t} AS t USING ({source}) AS s ON {on}").format(
        t=target.ident,
        source=source,
        on=sql.SQL(" AND ").join(sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in key),
    )
    if values:
        stmt += sql.SQL(
            " WHEN MATCHED AND ({old}) IS DISTINCT FROM ({new}) THEN UPDATE SET {sets}"
        ).format(
            old=_compared("t", values, types),
            new=_compared("s", values, types),
            sets=_assignments("s", values, types, columns, touch_column),
        )
    stmt += sql.SQL(" WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({new})").format(
        cols=_idents(columns),
        new=sql.SQL(", ").join(sql.Identifier("s", c) for c in columns),
    )
    return _counted(conn, staging, target, stmt, rows, merging=True)


def _counted(conn, staging, target, stmt, rows, *, merging: bool = False) -> tuple[int, int]:
    """Run an upsert; (inserted, updated) from the transaction's write counters: MERGE has no
    RETURNING before Postgres 17, and a partitioned target has no xmax to tell them apart.
    Where the server keeps no counters (track_counts off), ON CONFLICT returns xmax = 0."""
    if not merging and not _counts_tracked(conn):
        returned = sql.SQL(
            "WITH merged AS ({} RETURNING (xmax = 0) AS inserted) SELECT "
            "count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
        ).format(stmt)
        try:
            return conn.execute(returned, rows).fetchone()
        except psycopg.Error as exc:
            raise QueryFailed(f"loading {staging} into {target} failed: {_reason(exc)}") from exc
    before = _writes(conn, target)
    try:
        total = conn.execute(stmt, rows).rowcount
    except psycopg.Error as exc:
        if merging and isinstance(exc, psycopg.errors.UniqueViolation):
            raise  # the caller retries with ON CONFLICT
        raise QueryFailed(f"loading {staging} into {target} failed: {_reason(exc)}") from exc
    inserted, _, deleted = (a - b for a, b in zip(_writes(conn, target), before, strict=True))
    inserted = min(max(inserted - deleted, 0), total)  # an update moving partitions: -1 +1
    return inserted, total - inserted


def _counts_tracked(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT current_setting('track_counts')::boolean").fetchone()[0]


def _writes(conn: psycopg.Connection, target: TableRef) -> tuple[int, int, int]:
    """Rows inserted, updated and deleted in the target (its leaf partitions, if partitioned)
    by this transaction so far."""
    return conn.execute(
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_inserted(relid)), 0)::bigint, "
        "coalesce(sum(pg_stat_get_xact_tuples_updated(relid)), 0)::bigint, "
        "coalesce(sum(pg_stat_get_xact_tuples_deleted(relid)), 0)::bigint "
        "FROM (SELECT relid FROM pg_partition_tree(to_regclass(%s)) WHERE isleaf "
        "UNION SELECT to_regclass(%s)) r",  # a plain table has no partition tree: itself
        (target.ident.as_string(conn),) * 2,
    ).fetchone()


def _page_ranges(
    conn: psycopg.Connection, staging: TableRef, rows: int, batch_rows: int | None
) -> list[tuple[str, str] | None]:
    """The staging table split into batches of about batch_rows rows, as ranges of its pages
    (ctid bounds: a TID range scan reads only its pages, where a range of ROW_COLUMN values
    read the whole table once per batch); [None], one statement for all rows, without."""
    if not batch_rows:
        return [None]
    pages = conn.execute(
        "SELECT pg_relation_size(to_regclass(%s)) / current_setting('block_size')::int",
        (staging.ident.as_string(conn),),
    ).fetchone()[0]
    if not rows or not pages:
        return []
    step = max(1, batch_rows * pages // rows)
    return [(f"({start},0)", f"({start + step},0)") for start in range(0, pages, step)]


def _in_range(pages: tuple[str, str] | None) -> sql.Composable:
    """The staged rows of one batch (a range of the staging table's pages); all if None."""
    if pages is None:
        return sql.SQL("")
    return sql.SQL(" WHERE s.ctid >= %s::tid AND s.ctid < %s::tid")


# Types without an equality operator, compared as a type that has one (unchanged-row check).
_COMPARED_AS = {"json": "jsonb", "xml": "text", "point": "text", "line": "text", "lseg": "text",
                "box": "text", "path": "text", "polygon": "text", "circle": "text"}  # fmt: skip


def _comparable(value: sql.Composable, type_name: str) -> sql.Composable:
    """A value as the unchanged-row checks compare it: types without `=` become ones with it."""
    base = type_name.removesuffix("[]")
    if base not in _COMPARED_AS:
        return value
    array = type_name.endswith("[]")
    as_type = ("jsonb[]" if array else "jsonb") if base == "json" else "text"
    return sql.SQL("({})::{}").format(value, sql.SQL(as_type))


def _compared(
    alias: str, values: Sequence[str], types: dict[str, str], *, cast: bool = False
) -> sql.Composable:
    """The value columns of `alias` as the unchanged-row check compares them (cast: staged
    columns, first cast to the target's types)."""

    def column(c: str) -> sql.Composable:
        if cast:
            return sql.SQL("{}::{}").format(sql.Identifier(alias, c), sql.SQL(types[c]))
        return sql.Identifier(alias, c)

    return sql.SQL(", ").join(_comparable(column(c), types[c]) for c in values)


def _assignments(alias, values, types, columns, touch_column) -> sql.Composable:
    """SET each value column from `alias`; touch_column (not loaded, in the target) = now()."""
    sets = [sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier(alias, c)) for c in values]
    if touch_column and touch_column in types and touch_column not in columns:
        sets.append(sql.SQL("{} = now()").format(sql.Identifier(touch_column)))
    return sql.SQL(", ").join(sets)


def _insert(conn, staging, target, columns, types, mode, key, touch_column, rows, only_changes):
    cols = _idents(columns)
    select = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns
    )
    stmt = sql.SQL("INSERT INTO {t} AS t ({cols}) SELECT {select} FROM {s} AS s{where}").format(
        t=target.ident, cols=cols, select=select, s=staging.ident, where=_in_range(rows)
    )
    if mode == "upsert":
        values = [c for c in columns if c not in key]
        if values and not only_changes:
            # rows equal to the target's never reach ON CONFLICT, which would lock and log them
            stmt += sql.SQL(" AND " if rows else " WHERE ") + sql.SQL(
                "NOT EXISTS (SELECT 1 FROM {t} cur WHERE {keys} AND ({old}) IS NOT DISTINCT FROM ({new}))"
            ).format(
                t=target.ident,
                keys=sql.SQL(" AND ").join(
                    sql.SQL("cur.{c} = s.{c}::{ty}").format(
                        c=sql.Identifier(c), ty=sql.SQL(types[c])
                    )
                    for c in key
                ),
                old=_compared("cur", values, types),
                new=_compared("s", values, types, cast=True),
            )
        if values:
            stmt += sql.SQL(
                " ON CONFLICT ({k}) DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
            ).format(
                k=_idents(key),
                sets=_assignments("excluded", values, types, columns, touch_column),
                old=_compared("t", values, types),
                new=_compared("excluded", values, types),
            )
        else:
            stmt += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(_idents(key))
    if mode != "upsert":
        try:
            return conn.execute(stmt, rows).rowcount, 0
        except psycopg.Error as exc:
            raise QueryFailed(f"loading {staging} into {target} failed: {_reason(exc)}") from exc
    return _counted(conn, staging, target, stmt, rows)


def load_arrow(
    conn: psycopg.Connection,
    target: TableRef,
    data: pa.Table | Iterable[pa.RecordBatch],
    *,
    mode: str,
    key: Sequence[str] = (),
    replace_where: sql.Composable | None = None,
    touch_column: str | None = None,
    batch_rows: int | None = None,
    partition_where: sql.Composable | None = None,
    delete_missing: bool = False,
    upsert_with: str = "on_conflict",
) -> MergeCounts:
    """Stage Arrow data in a temp table and merge it into the target (caller's transaction).

    partition_where names the target rows this load owns (e.g. one business_date). For an
    upsert it lets the load skip work: into an empty partition the rows are copied straight
    into the target (or inserted without conflict checks where COPY cannot write the target's
    types); into a filled one, one hash join against the partition's rows leaves only the new
    and changed rows for the upsert. With delete_missing, the partition's rows whose key is
    not in the data are deleted (a sync). A pa.Table's duplicate keys are resolved here (the
    last row of a key wins), other inputs' in the staging table.
    """
    superseded, deduped = 0, False
    if mode == "upsert" and isinstance(data, pa.Table):
        data, dropped = deduplicated(data, key)
        if dropped is not None:
            superseded, deduped = dropped, True
    batches = iter([data] if isinstance(data, pa.Table) else data)
    first = next(batches, None)
    if first is None:
        return MergeCounts()
    # Before staging anything: a clear error, not a COPY of every row then a raw SQL error from
    # dedupe (an upsert without key columns) or merge.
    check_target(conn, target, first.schema.names, key, mode)
    if delete_missing and (partition_where is None or not key):
        raise ConfigError(f"delete_missing into {target} needs partition_where and key")
    raise_work_mem(conn)  # the join in stage_changes hashes the partition's rows
    owned = None  # the partition's rows before the load (None: not counted)
    if mode == "upsert" and partition_where is not None:
        owned = _partition_rows(conn, target, partition_where, exact=delete_missing)
        # into an empty partition, straight into the target where COPY writes its types as
        # they are (nothing is cast otherwise than the staged INSERT would)
        if owned == 0 and deduped and _binary_encoder(conn, target, data.schema) is not None:
            if _unless_conflict(lambda: copy_arrow(conn, target, data, binary=True), conn):
                return MergeCounts(
                    staged=data.num_rows, superseded=superseded, inserted=data.num_rows
                )
            owned = None  # a key of the data exists outside the partition: upsert
    staging = TableRef("pg_temp", f"_stage_{target.name}"[:63])
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging.ident))
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}, {} " + _ROW_IDENTITY + ")").format(
            sql.Identifier(staging.name),
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(pg_type(f.type)))
                for f in first.schema
            ),
            sql.Identifier(ROW_COLUMN),
        )
    )
    staged = copy_arrow(conn, staging, _chain(first, batches))
    if mode == "upsert" and not deduped:
        superseded = dedupe(conn, staging, key)
        staged -= superseded
    options = dict(
        columns=first.schema.names, key=key, replace_where=replace_where,
        touch_column=touch_column, batch_rows=batch_rows, upsert_with=upsert_with,
    )  # fmt: skip
    values = [c for c in first.schema.names if c not in key]
    counts = None
    if owned == 0:  # nothing to conflict with: skip the per-row conflict checks, unless a key
        # of the data exists outside the partition (then the upsert below)
        counts = _unless_conflict(
            lambda: merge(conn, staging, target, mode="append", staged_rows=staged, **options),
            conn,
        )
    if counts is None and owned and values:
        changes = TableRef("pg_temp", f"_changes_{target.name}"[:63])
        rows, new = stage_changes(
            conn, staging, changes, target, first.schema.names, key, partition_where
        )
        counts = merge(
            conn, changes, target, mode=mode, staged_rows=rows, only_changes=True, **options
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(changes.ident))
        counts.staged = staged
        counts.unchanged = staged - counts.inserted - counts.updated
        if delete_missing and owned > staged - new:  # some of its rows matched no staged row
            counts.deleted = delete_absent(conn, staging, target, key, partition_where)
    elif counts is None:
        counts = merge(conn, staging, target, mode=mode, staged_rows=staged, **options)
        if delete_missing:
            counts.deleted = delete_absent(conn, staging, target, key, partition_where)
    counts.superseded = superseded
    conn.execute(sql.SQL("DROP TABLE {}").format(staging.ident))
    return counts


# Key types whose equal values are equal in Arrow's hash grouping and in Postgres alike.
_GROUPABLE = (
    pa.types.is_integer, pa.types.is_string, pa.types.is_large_string, pa.types.is_date,
    pa.types.is_timestamp, pa.types.is_decimal, pa.types.is_boolean, pa.types.is_time,
    pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary,
)  # fmt: skip


def deduplicated(table: pa.Table, key: Sequence[str]) -> tuple[pa.Table, int | None]:
    """The table without rows superseded by a later row with the same key (NULLs alike), in
    arrival order, and how many were dropped; (table, None), left to dedupe in the server, if
    there is no key, a key column is missing, or its type is one whose equality Arrow and
    Postgres may not agree on (floats: -0.0 = 0.0)."""
    fields = {f.name: f.type for f in table.schema}
    if not key or any(
        k not in fields or not any(test(fields[k]) for test in _GROUPABLE) for k in key
    ):
        return table, None
    position = "__sqlgym_position"
    numbered = pa.table({**{k: table.column(k) for k in key}, position: pa.array(
        range(table.num_rows), pa.int64()
    )})  # fmt: skip
    last = numbered.group_by(list(key), use_threads=False).aggregate([(position, "max")])
    if last.num_rows == table.num_rows:
        return table, 0
    kept = pc.sort_indices(last.column(f"{position}_max"))
    return table.take(pc.take(last.column(f"{position}_max"), kept)), table.num_rows - last.num_rows


def _partition_rows(
    conn: psycopg.Connection, target: TableRef, where: sql.Composable, *, exact: bool
) -> int:
    """The target's rows in the partition (exact), or 1/0 for whether it has any."""
    inner = sql.SQL("SELECT count(*) FROM {} t WHERE {}" if exact else
                    "SELECT count(*) FROM (SELECT 1 FROM {} t WHERE {} LIMIT 1) one")  # fmt: skip
    return conn.execute(inner.format(target.ident, where)).fetchone()[0]


def _unless_conflict(write, conn: psycopg.Connection):
    """write()'s result, or None, with nothing written, if it failed on a unique violation."""
    try:
        with conn.transaction():
            return write()
    except QueryFailed as exc:
        if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            return None
        raise


def stage_changes(
    conn: psycopg.Connection,
    staging: TableRef,
    changes: TableRef,
    target: TableRef,
    columns: Sequence[str],
    key: Sequence[str],
    partition_where: sql.Composable,
) -> tuple[int, int]:
    """CREATE TEMP TABLE changes with the staged rows (in the target's types) that the
    partition lacks or holds with other values: one hash join of the staged rows with the
    partition's, where ON CONFLICT would probe, lock and log every row, equal ones included.
    Returns (rows in changes, of them rows the partition lacks)."""
    types = target_columns(conn, target, typmod=False)
    values = [c for c in columns if c not in key]
    staged = sql.SQL(", ").join(
        sql.SQL("s.{c}::{ty} AS {c}").format(c=sql.Identifier(c), ty=sql.SQL(types[c]))
        for c in columns
    )
    stmt = sql.SQL(
        "CREATE TEMP TABLE {changes} AS SELECT {staged}, t.{hit} IS NOT NULL AS {hit} "
        "FROM {s} s LEFT JOIN (SELECT true AS {hit}, {cols} FROM {t} WHERE {where}) t ON {on} "
        "WHERE t.{hit} IS NULL OR ({old}) IS DISTINCT FROM ({new})"
    ).format(
        changes=sql.Identifier(changes.name),
        staged=staged,
        hit=sql.Identifier(_MATCHED),
        s=staging.ident,
        cols=_idents([*key, *values]),
        t=target.ident,
        where=partition_where,
        on=sql.SQL(" AND ").join(
            sql.SQL("t.{c} = s.{c}::{ty}").format(c=sql.Identifier(c), ty=sql.SQL(types[c]))
            for c in key
        ),
        old=_compared("t", values, types),
        new=_compared("s", values, types, cast=True),
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(changes.ident))
    # A hash join whatever the estimates: the target's statistics often predate the partition
    # (a new day estimated at one row), and a nested loop over it is quadratic.
    nestloop = conn.execute("SELECT current_setting('enable_nestloop')").fetchone()[0]
    conn.execute("SELECT set_config('enable_nestloop', 'off', true)")
    try:
        rows = conn.execute(stmt).rowcount
    except psycopg.Error as exc:
        raise QueryFailed(f"comparing {staging} with {target} failed: {_reason(exc)}") from exc
    conn.execute("SELECT set_config('enable_nestloop', %s, true)", (nestloop,))
    new = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE NOT {}").format(
            changes.ident, sql.Identifier(_MATCHED)
        )
    ).fetchone()[0]
    return rows, new


_MATCHED = "_sqlgym_matched"


def delete_absent(
    conn: psycopg.Connection,
    staging: TableRef,
    target: TableRef,
    key: Sequence[str],
    partition_where: sql.Composable,
) -> int:
    """Delete the partition's target rows whose key the staging table does not hold."""
    return conn.execute(delete_absent_statement(staging, target, key, partition_where)).rowcount


def delete_absent_statement(
    staging: TableRef, target: TableRef, key: Sequence[str], partition_where: sql.Composable
) -> sql.Composed:
    # EXCEPT (hashed whatever the estimates), then the key's index: a NOT EXISTS anti-join is
    # planned as a nested loop over the staging table when the target's statistics predate
    # the partition (estimate: 1 row), which is quadratic on a real load.
    keys = _idents(key)
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = d.{k}").format(k=sql.Identifier(k)) for k in key)
    return sql.SQL(
        "DELETE FROM {t} t USING (SELECT {keys} FROM {t} WHERE {where} "
        "EXCEPT SELECT {keys} FROM {s}) d WHERE {m}"
    ).format(t=target.ident, keys=keys, where=partition_where, s=staging.ident, m=match)


def _chain(first, rest):
    yield first
    yield from rest


def _idents(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _reason(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    parts = [str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__]
    if diag is not None and diag.context:
        parts.append(f"({diag.context.strip().splitlines()[0]})")
    return " ".join(parts)
