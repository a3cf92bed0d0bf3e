"""The declared Postgres -> Arrow type mapping and ADBC record-batch streaming that keeps it exact.

ADBC (COPY binary) is the fastest exact reader measured, but it loses data silently for a few
types (docs/postgres_sync.md, research FINDINGS-extract): ±infinity dates and timestamps wrap,
multi-dimensional arrays flatten, money arrives as cents, time '24:00' is out of Arrow's range,
oid wraps into int32, and opaque types arrive as wire bytes. So the Arrow type of every column
is decided here from the catalog, before fetching: the SELECT expression casts what ADBC cannot
carry, and a per-batch converter casts the rest and raises where data would be wrong.
"""

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import adbc_driver_manager
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_postgresql import dbapi as adbc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed, QueryFailed, SqlgymError
from sqlgym_pipelines.lib.pg_catalog import PgColumn, PgType

# Postgres' interval is int32 months, int32 days, int64 microseconds: the struct holds exactly
# that (ADBC's month_day_nano cannot be written to Parquet; microseconds keep PG's resolution).
INTERVAL = pa.struct([("months", pa.int32()), ("days", pa.int32()), ("microseconds", pa.int64())])

# Types ADBC returns exactly as the Arrow type listed (probed with ADBC 1.13).
_NATIVE = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),  # blank-padded, as Postgres returns it
    "bytea": pa.binary(),
    # Written as Parquet UUID / JSON logical types; pyarrow reads them back as the same
    # extension types and DuckDB as UUID / JSON (text), so nothing is lost by keeping them.
    "uuid": pa.uuid(),
    "json": pa.json_(),
    "jsonb": pa.json_(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "interval": INTERVAL,
}

# Below Postgres' minimum (4714-11-24 BC): only ADBC's silent wrap of ±infinity (and of
# timestamps past year 294247) produces such values, so one min() per batch catches them.
_MIN_DAYS = -2440588 - 366
_MIN_MICROS = _MIN_DAYS * 86_400_000_000
_DAY_MICROS = 86_400_000_000
_FIX = "select it through a cursor/select expression (e.g. {}) or exclude the column"


class TypeMappingError(SqlgymError):
    """A value cannot be represented exactly in the column's declared Arrow type."""


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is selected and what Arrow type it has in the output."""

    column: PgColumn
    select: sql.Composable  # expression in the SELECT list (aliased to the column name)
    arrow_type: pa.DataType
    fallback: str | None = None  # why the column is not in its natural type (shown to users)
    # Boolean expression that is true for rows ADBC would read wrongly (checked per batch).
    guard: sql.Composable | None = None

    @property
    def name(self) -> str:
        return self.column.name


def _element_rule(t: PgType) -> tuple[pa.DataType, str | None, str | None]:
    """(arrow type, SQL cast target or None, fallback reason or None) for one value type."""
    if t.builtin and t.name == "numeric":
        p, s = t.precision, t.scale
        if p is not None and 0 <= s <= p <= 38:
            return pa.decimal128(p, s), None, None
        if p is not None and p > 38:
            # decimal256 is exact in the file, but Athena stops at decimal(38) and DuckDB reads
            # it as DOUBLE: the text form is the one every reader keeps exact.
            return (
                pa.string(),
                "text",
                f"numeric({p},{s}): precision above 38 has no exact type in Athena or DuckDB;"
                " kept as exact decimal text",
            )
        declared = "numeric without (precision, scale)" if p is None else f"numeric({p},{s})"
        return (
            pa.string(),
            "text",
            f"{declared} has no exact Arrow decimal: kept as exact decimal text ('NaN' and"
            " 'Infinity' included); declare numeric(p,s) or cast in a cursor expression",
        )
    if t.builtin and t.name == "money":
        # ADBC sends money as int64 cents with an implicit, locale-dependent scale.
        return pa.decimal128(20, 2), "numeric(20,2)", None
    if t.builtin and t.name in _NATIVE:
        return _NATIVE[t.name], None, None
    if t.typtype == "e":
        return pa.string(), None, None  # ADBC sends the label
    if t.category == "S":
        return pa.string(), "text", None  # name, citext, ...: text is their exact value
    return (
        pa.string(),
        "text",
        f"{t.name}: no exact Arrow type, kept as its Postgres text output",
    )


def arrow_type_for(col: PgColumn) -> ColumnPlan:
    """The declared mapping of one catalog column (see module docstring)."""
    ident = sql.Identifier(col.name)
    as_text = sql.SQL("{}::text").format(ident)
    if col.element is None:
        if col.base.category == "A":
            return ColumnPlan(col, as_text, pa.string(), f"{col.type_name}: unsupported array")
        arrow, cast, fallback = _element_rule(col.base)
        expr = sql.SQL("{}::{}").format(ident, sql.SQL(cast)) if cast else ident
        return ColumnPlan(col, expr, arrow, fallback)
    if col.ndims > 1:
        # ADBC flattens {{1,2},{3,4}} into [1,2,3,4]; the text form keeps the shape.
        return ColumnPlan(
            col, as_text, pa.string(), f"{col.type_name}: multi-dimensional array as Postgres text"
        )
    arrow, cast, fallback = _element_rule(col.element)
    expr = sql.SQL("{}::{}[]").format(ident, sql.SQL(cast)) if cast else ident
    # attndims is not enforced: a column declared int[] can still hold 2-D values, or arrays
    # whose lower bound is not 1, which a list cannot carry; the guard finds them per row.
    guard = sql.SQL("(array_ndims({c}) > 1 OR array_lower({c}, 1) <> 1)").format(c=ident)
    return ColumnPlan(
        col, expr, pa.list_(pa.field("element", arrow)), fallback and f"array of {fallback}", guard
    )


def plan_columns(columns: Sequence[PgColumn]) -> list[ColumnPlan]:
    return [arrow_type_for(c) for c in columns]


def _guard_name(plan: ColumnPlan) -> str:
    return f"__sqlgym_guard_{plan.column.attnum}"


def select_list(plans: Sequence[ColumnPlan]) -> sql.Composed:
    """The SELECT list stream_batches expects: the planned columns, then the guard columns."""
    items = [sql.SQL("{} AS {}").format(p.select, sql.Identifier(p.name)) for p in plans]
    items += [
        sql.SQL("{} AS {}").format(p.guard, sql.Identifier(_guard_name(p)))
        for p in plans
        if p.guard is not None
    ]
    return sql.SQL(", ").join(items)


def target_schema(plans: Sequence[ColumnPlan]) -> pa.Schema:
    """The exact output schema; field metadata records the Postgres type and any fallback."""
    fields = []
    for p in plans:
        meta = {"pg_type": p.column.type_name}
        if p.fallback:
            meta["fallback"] = p.fallback
        # Nullable even for NOT NULL columns: adding or dropping a constraint must not change
        # the lake's file schema.
        fields.append(pa.field(p.name, p.arrow_type, nullable=True, metadata=meta))
    return pa.schema(fields)


def schema_hash(schema: pa.Schema) -> str:
    """sha256 of what readers see (names, types, nullability), for schema-drift detection."""
    canonical = [[f.name, str(f.type), f.nullable] for f in schema]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def _interval_struct(arr: pa.Array) -> pa.StructArray:
    """month_day_nano -> INTERVAL, read from the 16-byte values (int32, int32, int64 ns)."""
    n, off, buf = len(arr), arr.offset, arr.buffers()[1]

    def lane(typ: pa.DataType, width: int, i: int) -> pa.Array:
        flat = pa.Array.from_buffers(typ, (n + off) * width, [None, buf])
        return flat[off * width + i :: width]

    # ADBC made the nanoseconds as microseconds * 1000, so the division is exact.
    micros = pc.divide(lane(pa.int64(), 2, 1), 1000)
    children = [lane(pa.int32(), 4, 0), lane(pa.int32(), 4, 1), micros]
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(INTERVAL), mask=mask)


def _convert(arr: pa.Array, target: pa.DataType, plan: ColumnPlan) -> pa.Array:
    """One ADBC column -> the planned Arrow type, raising where the values would be wrong."""
    col = plan.column.qualified
    if isinstance(arr.type, pa.BaseExtensionType) and arr.type != target:
        arr = arr.storage  # ADBC's opaque numeric: exact decimal text
    if pa.types.is_list(target):
        values = _convert(arr.values, target.value_type, plan)
        mask = arr.is_null() if arr.null_count else None
        return pa.ListArray.from_arrays(arr.offsets, values, type=target, mask=mask)
    if pa.types.is_decimal(target) and pa.types.is_string(arr.type):
        if pc.any(pc.equal(arr, "nan")).as_py():
            raise TypeMappingError(
                f"column {col} ({plan.column.type_name}) holds NaN, which a decimal cannot hold;"
                f" map it in a cursor expression (e.g. NULLIF({plan.name}, 'NaN')) or exclude it"
            )
        return pc.cast(arr, target)  # raises on overflow or rescale, never rounds
    if target == INTERVAL and pa.types.is_interval(arr.type):
        return _interval_struct(arr)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date32(arr.type):
        low, view = (
            (_MIN_DAYS, pa.int32()) if pa.types.is_date32(arr.type) else (_MIN_MICROS, pa.int64())
        )
        if arr.null_count < len(arr) and pc.min(arr.view(view)).as_py() < low:
            raise TypeMappingError(
                f"column {col} ({plan.column.type_name}) holds ±infinity or a value beyond"
                f" Arrow's range, which the reader would turn into a wrong date; "
                + _FIX.format(f"CASE WHEN isfinite({plan.name}) THEN {plan.name} END")
            )
    if (
        pa.types.is_time64(arr.type)
        and arr.null_count < len(arr)
        and pc.max(arr.view(pa.int64())).as_py() >= _DAY_MICROS
    ):
        raise TypeMappingError(
            f"column {col} holds time '24:00:00', outside Arrow's time range; "
            + _FIX.format(f"{plan.name}::text")
        )
    return arr if arr.type == target else pc.cast(arr, target)


def _check_guards(batch: pa.RecordBatch, plans: Sequence[ColumnPlan]) -> None:
    for p in plans:
        if p.guard is not None and pc.any(batch.column(_guard_name(p))).as_py():
            raise TypeMappingError(
                f"column {p.column.qualified} ({p.column.type_name}) holds a multi-dimensional"
                " array (or one whose lower bound is not 1), which a list would flatten; "
                "declare it with its dimensions (e.g. integer[][]) to export it as text, or "
                + _FIX.format(f"{p.name}::text")
            )


def _adbc_conninfo(url: str, application_name: str, statement_timeout_ms: int | None) -> str:
    info = conninfo_to_dict(
        pg.conninfo(
            url, application_name=application_name, statement_timeout_ms=statement_timeout_ms
        )
    )
    # Fixed session settings so ::text fallbacks read the same whatever the role's defaults;
    # repeatable read so every query of one SnapshotReader sees the same snapshot.
    options = info.get("options", "")
    info["options"] = (
        f"{options} -c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres"
        r" -c default_transaction_isolation=repeatable\ read"
    ).strip()
    return make_conninfo(**info)  # libpq conninfo: ADBC passes it to PQconnectdb as is


def render_query(url: str, query: sql.Composable | str, params: Sequence | Mapping | None) -> str:
    """The query with its %s / %(name)s parameters inlined as safely quoted literals.

    ADBC runs a query with bound parameters as a plain prepared statement and buffers the whole
    result; only an unparameterised query goes through COPY and streams. psycopg's client-side
    binding quotes the values for the server's actual encoding and string settings.
    """
    if not params:
        return query if isinstance(query, str) else query.as_string()
    with pg.connection(url, autocommit=True) as conn:
        return psycopg.ClientCursor(conn).mogrify(query, params)


class SnapshotReader:
    """One ADBC connection in one repeatable-read transaction: counts and extracts agree."""

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "sqlgym-pipelines",
        statement_timeout_ms: int | None = None,
    ):
        self.url = url
        try:
            self.conn = adbc.connect(_adbc_conninfo(url, application_name, statement_timeout_ms))
        except adbc_driver_manager.Error as exc:
            raise ConnectionFailed(f"ADBC cannot connect to {pg.redact(url)}: {exc}") from exc

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def scalar(self, query: sql.Composable | str, params: Sequence | Mapping | None = None):
        with self.conn.cursor() as cur:
            try:
                cur.execute(render_query(self.url, query, params))
                row = cur.fetchone()
            except adbc_driver_manager.Error as exc:
                raise QueryFailed(f"query failed: {exc}") from exc
        return row[0] if row else None

    def batches(
        self,
        query: sql.Composable | str,
        params: Sequence | Mapping | None,
        plans: Sequence[ColumnPlan],
        *,
        extra: Sequence[pa.Field] = (),
        batch_size_hint_bytes: int = 16 * 1024 * 1024,
    ) -> Iterator[pa.RecordBatch]:
        """Batches in target_schema(plans) + `extra` (trailing columns of the SELECT, cast as given).

        The SELECT list must be select_list(plans) followed by the extra columns. The reader
        streams COPY binary: memory is bounded by a few batches, whatever the row count.
        """
        schema = pa.schema([*target_schema(plans), *extra])
        guards = [_guard_name(p) for p in plans if p.guard is not None]
        expected = [p.name for p in plans] + guards + [f.name for f in extra]
        text = render_query(self.url, query, params)
        with self.conn.cursor() as cur:
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(batch_size_hint_bytes)}
            )
            try:
                cur.execute(text)
                reader = cur.fetch_record_batch()
                if reader.schema.names != expected:
                    raise ConfigError(
                        f"query returns columns {reader.schema.names}, expected {expected}: "
                        "select exactly select_list(plans) and then the extra columns"
                    )
                for batch in reader:
                    _check_guards(batch, plans)
                    arrays = [
                        _convert(batch.column(i), p.arrow_type, p) for i, p in enumerate(plans)
                    ]
                    arrays += [
                        pc.cast(batch.column(len(plans) + len(guards) + i), f.type)
                        for i, f in enumerate(extra)
                    ]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            except adbc_driver_manager.Error as exc:
                raise QueryFailed(f"extract query failed: {exc}") from exc


def stream_batches(
    url: str,
    query: sql.Composable | str,
    params: Sequence | Mapping | None,
    plans: Sequence[ColumnPlan],
    *,
    batch_size_hint_bytes: int = 16 * 1024 * 1024,
    application_name: str = "sqlgym-pipelines",
    statement_timeout_ms: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Run `query` (its SELECT list must be select_list(plans)) and yield batches in target_schema."""
    with SnapshotReader(
        url, application_name=application_name, statement_timeout_ms=statement_timeout_ms
    ) as reader:
        yield from reader.batches(query, params, plans, batch_size_hint_bytes=batch_size_hint_bytes)
