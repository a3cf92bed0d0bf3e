"""Athena over the lake: table DDL with partition projection over YYYY/MM/DD, and `<table>_current`.

The DDL declares the lake files' own Arrow types (`athena_type`), so Athena reads every
column as written; the lake's `_synced_at` is an ordinary column and `year`, `month`, `day`
are the partition columns (strings, zero-padded as in the keys). The view keeps the source
table's columns only, so `SELECT * FROM <table>_current` has the columns of the source table.
SQL text lives in `sql/athena_*.sql`; identifiers and literals are quoted by sqlglot, and each
statement is parsed back before it is returned.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import sqlglot
from sqlglot import exp

from sqlgym_pipelines.lib.errors import ConfigError

SQL_DIR = Path(__file__).parent / "sql"
SYNCED_AT = "_synced_at"
PARTITION_COLUMNS = ("year", "month", "day")
PARTITION_TEMPLATE = "${year}/${month}/${day}"
SYNC_TYPES = ("incremental", "full")
_PLAIN_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Checked in order; the first predicate that matches gives the Hive DDL type.
_SCALARS: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "tinyint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "int"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_float32, "float"),
    (pa.types.is_float64, "double"),
    (pa.types.is_date, "date"),
    # Athena's Hive timestamp has no zone; the lake's UTC instants read as UTC wall time.
    (pa.types.is_timestamp, "timestamp"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    (lambda t: pa.types.is_string_view(t), "string"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
    # Parquet FIXED_LEN_BYTE_ARRAY: Athena reads it as varbinary and refuses it as string.
    (pa.types.is_fixed_size_binary, "binary"),
)
# Extension types by name. uuid is stored as FIXED_LEN_BYTE_ARRAY(16) and Hive DDL has no
# uuid type, so it is `binary` (to_hex() gives text); json is a UTF-8 string underneath.
_EXTENSIONS = {"arrow.uuid": "binary", "arrow.json": "string"}
_MAX_DECIMAL_PRECISION = 38  # Athena's limit


class AthenaTypeError(ConfigError):
    """An Arrow type that Athena cannot read from Parquet."""


class AthenaLike(Protocol):
    """What register_lake_table needs: resources.athena.AthenaResource fits."""

    engine: str
    database: str

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table: ...

    def register_table(
        self, name: str, location: str, *, partitioning: Mapping[str, Any] | None = None
    ) -> Any: ...


def athena_type(arrow_type: pa.DataType) -> str:
    """The Athena (Hive DDL) type that reads a Parquet column of this Arrow type exactly."""
    if isinstance(arrow_type, pa.BaseExtensionType):
        name = arrow_type.extension_name
        if name in _EXTENSIONS:
            return _EXTENSIONS[name]
        raise AthenaTypeError(
            f"Arrow extension type {name!r} has no Athena type (known: {', '.join(_EXTENSIONS)})"
        )
    if pa.types.is_dictionary(arrow_type):
        return athena_type(arrow_type.value_type)  # dictionary encoding is Parquet's business
    if pa.types.is_decimal(arrow_type):
        if arrow_type.precision > _MAX_DECIMAL_PRECISION:
            raise AthenaTypeError(
                f"{arrow_type}: Athena decimals hold at most {_MAX_DECIMAL_PRECISION} digits; "
                "declare the source numeric(p,s) with p <= 38 or select it as text"
            )
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    for matches, ddl in _SCALARS:
        if matches(arrow_type):
            return ddl
    if isinstance(arrow_type, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return f"array<{athena_type(arrow_type.value_type)}>"
    if pa.types.is_map(arrow_type):
        return f"map<{athena_type(arrow_type.key_type)},{athena_type(arrow_type.item_type)}>"
    if pa.types.is_struct(arrow_type):
        fields = (arrow_type.field(i) for i in range(arrow_type.num_fields))
        return f"struct<{','.join(f'{_field_name(f.name)}:{athena_type(f.type)}' for f in fields)}>"
    raise AthenaTypeError(
        f"Arrow type {arrow_type} has no Athena type: Athena reads signed integers, float32/64, "
        "decimal(p<=38), bool, string, binary, date, timestamp, list, map and struct; "
        "cast the column (e.g. select it as text) before it reaches the lake"
    )


def table_uri(location: Any, table: str) -> str:
    """s3://bucket/prefix/<table>/ of a LakeLocation-like object (bucket, prefix)."""
    key = "/".join(p for p in (location.prefix.strip("/"), table) if p)
    return f"s3://{location.bucket}/{key}/"


def create_table_ddl(
    table: str,
    schema: pa.Schema,
    location: Any,
    database: str,
    *,
    start_year: int = 2000,
    end_year: int = 2100,
) -> str:
    """`CREATE EXTERNAL TABLE` for a lake table whose files have this Arrow schema.

    With no partition filter Athena projects every year/month/day in the range (and lists
    each in S3), so a start_year near the first sync keeps full scans and the view cheap.
    """
    clash = [n for n in schema.names if n.lower() in PARTITION_COLUMNS]
    if clash:
        raise ConfigError(
            f"table {table!r}: column {clash[0]!r} has the name of a lake partition column "
            f"({', '.join(PARTITION_COLUMNS)}); exclude it from the sync or select it renamed"
        )
    if not 1000 <= start_year <= end_year <= 9999:
        raise ConfigError(
            f"table {table!r}: year range {start_year},{end_year} must be 4-digit years, start <= end"
        )
    columns = []
    for field in schema:
        try:
            columns.append(f"  {_ddl_ident(field.name)} {athena_type(field.type)}")
        except AthenaTypeError as exc:
            raise AthenaTypeError(f"table {table!r}, column {field.name!r}: {exc}") from exc
    uri = table_uri(location, table)
    properties = {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": f"{start_year},{end_year}",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "projection.day.type": "integer",
        "projection.day.range": "1,31",
        "projection.day.digits": "2",
        "storage.location.template": uri + PARTITION_TEMPLATE + "/",
        "parquet.compression": "SNAPPY",
    }
    return _render(
        "athena_create_table.sql",
        "hive",
        table=f"{_ddl_ident(database)}.{_ddl_ident(table)}",
        columns=",\n".join(columns),
        partition_columns=", ".join(f"{_ddl_ident(c)} string" for c in PARTITION_COLUMNS),
        location=_ddl_string(uri),
        properties=",\n".join(
            f"  {_ddl_string(k)}={_ddl_string(v)}" for k, v in properties.items()
        ),
    )


def current_view_sql(
    table: str,
    columns: Sequence[str],
    pk_columns: Sequence[str],
    cursor_column: str | None,
    sync_type: str,
    database: str,
) -> str:
    """`CREATE OR REPLACE VIEW <table>_current`: the latest version of each pk, source columns only.

    `columns` may be the lake schema's names: `_synced_at` and the partition columns are
    dropped. An incremental table without a cursor column in the lake (a cursor expression)
    is ordered by `_synced_at` alone.
    """
    lake_only = {SYNCED_AT, *PARTITION_COLUMNS}
    source = [c for c in columns if c.lower() not in lake_only]
    missing = [c for c in (*pk_columns, cursor_column or "") if c and c not in source]
    if sync_type not in SYNC_TYPES:
        raise ConfigError(f"table {table!r}: sync_type {sync_type!r} is not one of {SYNC_TYPES}")
    if not pk_columns or missing:
        raise ConfigError(
            f"table {table!r}: the view needs pk and cursor columns among the table's columns; "
            f"{missing[0] if missing else 'no pk'!r} is not one of ({', '.join(source)})"
        )
    qualified = f"{_dml_ident(database)}.{_dml_ident(table)}"
    view = f"{_dml_ident(database)}.{_dml_ident(table + '_current')}"
    if sync_type == "full":
        return _render(
            "athena_current_view_full.sql",
            "trino",
            view=view,
            table=qualified,
            columns=", ".join(f'"snapshot".{_dml_ident(c)}' for c in source),
        )
    order_by = [f"{_dml_ident(cursor_column)} DESC NULLS LAST"] if cursor_column else []
    return _render(
        "athena_current_view_incremental.sql",
        "trino",
        view=view,
        table=qualified,
        columns=", ".join(_dml_ident(c) for c in source),
        pk=", ".join(_dml_ident(c) for c in pk_columns),
        order_by=", ".join([*order_by, f"{_dml_ident(SYNCED_AT)} DESC"]),
    )


def register_lake_table(
    athena: AthenaLike,
    table: str,
    schema: pa.Schema,
    location: Any,
    pk_columns: Sequence[str],
    cursor_column: str | None,
    sync_type: str,
    *,
    start_year: int = 2000,
) -> None:
    """Make `<table>` and `<table>_current` queryable in athena's database, on either engine."""
    ddl = create_table_ddl(table, schema, location, athena.database, start_year=start_year)
    if athena.engine == "duckdb":
        # DuckDB cannot run Hive DDL; the catalog entry carries what the DDL says the local
        # engine needs: where the files are and how their directories name the partitions.
        partitioning = {"style": "directory", "template": PARTITION_TEMPLATE}
        athena.register_table(table, table_uri(location, table), partitioning=partitioning)
    else:
        athena.query(ddl)
    view = current_view_sql(
        table, schema.names, pk_columns, cursor_column, sync_type, athena.database
    )
    athena.query(view)


def _ddl_ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="hive")


def _dml_ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="trino")


def _field_name(name: str) -> str:
    # Struct field names stay bare where they can, as Athena's own DDL shows them.
    return name if _PLAIN_NAME.fullmatch(name) else _ddl_ident(name)


def _ddl_string(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="hive")


def _render(template: str, dialect: str, **parts: str) -> str:
    """Fill a sql/ template; its `--` lines are for readers, Athena gets the bare statement."""
    text = (SQL_DIR / template).read_text()
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
    statement = body.format(**parts).strip()
    try:
        sqlglot.parse_one(statement, read=dialect)
    except sqlglot.errors.SqlglotError as exc:  # a template or quoting bug, not user input
        raise ConfigError(f"{template} rendered SQL that does not parse: {exc}") from exc
    return statement
