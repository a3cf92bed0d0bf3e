"""The Postgres -> lake sync config (pipeline_config.json): its shape, loading, and the live-catalog check.

A table's config key is its lake name (S3 path segment, Athena table name); `schema` and
`source_table` name the relation in Postgres exactly as the catalog spells it (no folding).
The cursor (`updated_col`, or the SQL expression `cursor`) must be timestamptz or timestamp
(read as UTC): partitions are days of cursor time, and a date or a number cannot be bounded
by the safe upper bound (now - lag).
"""

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from sqlgym_pipelines.lib.errors import ConfigError

ENV_VAR = "SQLGYM_SYNC_CONFIG"
DEFAULT_PATH = (
    Path(__file__).resolve().parents[1] / "defs" / "postgres_sync" / "pipeline_config.json"
)
DEFAULT_SCHEMA = "public"
DEFAULT_LAG_SECONDS = 60
SYNC_TYPES = ("incremental", "full")
# Result type OIDs of a cursor; a domain's column reports its base type.
CURSOR_TYPES = {1184: "timestamptz", 1114: "timestamp"}
# Lowercase, starting with a letter: a valid Athena table name that cannot collide with `_metadata`.
_LAKE_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
_TOP_FIELDS = ("tables", "defaults")
_DEFAULT_FIELDS = ("schema", "lag_seconds", "batch_rows", "batch_size_bytes")
# field: (type, default, minimum); a None default makes the field optional (null allowed)
_SCALARS = {
    "sync_enabled": (bool, True, None),
    "priority": (int, 100, 1),
    "schema": (str, DEFAULT_SCHEMA, None),
    "updated_col": (str, None, None),
    "cursor": (str, None, None),
    "lag_seconds": (int, DEFAULT_LAG_SECONDS, 0),
    "batch_rows": (int, None, 1),
    "batch_size_bytes": (int, None, 1),
}
_TABLE_FIELDS = ("pk", "sync_type", "source_table", "columns", "exclude_columns", *_SCALARS)
_MAX_LISTED = 20


class TableConfigError(ConfigError):
    """A table's config names something its source table does not have."""


@dataclass(frozen=True)
class TableConfig:
    """One table's sync settings, defaults applied."""

    name: str
    pk: tuple[str, ...]
    sync_type: str
    sync_enabled: bool = True
    priority: int = 100
    schema: str = DEFAULT_SCHEMA
    source_table: str = ""
    updated_col: str | None = None
    cursor: str | None = None
    columns: tuple[str, ...] | None = None
    exclude_columns: tuple[str, ...] = ()
    lag_seconds: int = DEFAULT_LAG_SECONDS
    batch_rows: int | None = None
    batch_size_bytes: int | None = None

    @property
    def incremental(self) -> bool:
        return self.sync_type == "incremental"

    @property
    def qualified_name(self) -> str:
        """schema.table for messages (unquoted)."""
        return f"{self.schema}.{self.source_table}"


@dataclass(frozen=True)
class SyncConfig:
    """Every configured table, in file order; `source` is where the config came from."""

    tables: tuple[TableConfig, ...]
    source: str = "<dict>"

    def enabled_tables(self) -> tuple[TableConfig, ...]:
        """The tables to sync, in sync order: priority (1 first), then name."""
        return tuple(
            sorted((t for t in self.tables if t.sync_enabled), key=lambda t: (t.priority, t.name))
        )

    def table(self, name: str) -> TableConfig:
        for t in self.tables:
            if t.name == name:
                return t
        raise ConfigError(
            f"{self.source}: no table {name!r}{_hint(name, [t.name for t in self.tables])}"
        )


@dataclass(frozen=True)
class ResolvedTable:
    """A table checked against the catalog: what the extractor selects and filters on."""

    config: TableConfig
    columns: tuple[str, ...]  # selected columns, catalog order
    column_types: tuple[str, ...]  # format_type() of each selected column
    relation: sql.Composable  # "schema"."table"
    cursor_sql: sql.Composable | None  # None for a full table
    cursor_type: str | None  # "timestamptz" | "timestamp" | None

    @property
    def name(self) -> str:
        return self.config.name


def load_sync_config(path: str | Path | None = None) -> SyncConfig:
    """Read and shape-check a config file: `path`, else $SQLGYM_SYNC_CONFIG, else the repo's default."""
    path = Path(path or os.environ.get(ENV_VAR) or DEFAULT_PATH)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read sync config {path}: {exc.strerror} (set {ENV_VAR} to your config file)"
        ) from exc
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_sync_config(data, source=str(path))


def parse_sync_config(data: object, *, source: str = "<dict>") -> SyncConfig:
    """Shape-check a decoded config; errors name the table and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a JSON object with 'tables', got {_json_type(data)}")
    _check_keys(source, data, _TOP_FIELDS)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{source}: 'defaults' must be an object, got {_json_type(defaults)}")
    _check_keys(f"{source}: defaults", defaults, _DEFAULT_FIELDS)
    tables = data.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(
            f"{source}: 'tables' must be a non-empty object of table name -> settings"
        )
    parsed, seen = [], {}
    for name, raw in tables.items():
        table = _parse_table(f"{source}: table {name!r}", name, raw, defaults)
        key = (table.schema, table.source_table)
        if key in seen:
            raise ConfigError(
                f"{source}: tables {seen[key]!r} and {name!r} both configure {table.qualified_name}"
            )
        seen[key] = name
        parsed.append(table)
    return SyncConfig(tables=tuple(parsed), source=source)


def _parse_table(where: str, name: str, raw: object, defaults: dict) -> TableConfig:
    if not _LAKE_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: the name is the lake's S3 path segment and Athena table name: use lowercase "
            f"letters, digits and '_', starting with a letter, and name the Postgres table in "
            f'"source_table" (e.g. "source_table": {name!r})'
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object of settings, got {_json_type(raw)}")
    _check_keys(where, raw, _TABLE_FIELDS)
    d = {**defaults, **raw}
    if "pk" not in raw or "sync_type" not in raw:
        raise ConfigError(
            f"{where}: field {'pk' if 'pk' not in raw else 'sync_type'!r} is required"
        )
    if d["sync_type"] not in SYNC_TYPES:
        raise ConfigError(
            f"{where}: field 'sync_type' must be 'incremental' or 'full', got {d['sync_type']!r}"
        )
    pk = _names(where, "pk", [d["pk"]] if isinstance(d["pk"], str) else d["pk"])
    scalars = {
        field: _typed(where, field, d.get(field, default), kind, minimum, optional=default is None)
        for field, (kind, default, minimum) in _SCALARS.items()
    }
    table = TableConfig(
        name=name,
        pk=pk,
        sync_type=d["sync_type"],
        source_table=_typed(where, "source_table", d.get("source_table", name), str),
        columns=None if d.get("columns") is None else _names(where, "columns", d["columns"]),
        exclude_columns=_names(where, "exclude_columns", d.get("exclude_columns", []), empty=True),
        **scalars,
    )
    if table.incremental and not (table.updated_col or table.cursor):
        raise ConfigError(
            f"{where}: sync_type 'incremental' needs 'updated_col' or 'cursor' (the timestamp that "
            "orders changes); use sync_type 'full' for a table without one"
        )
    if table.cursor is not None and ";" in table.cursor:
        raise ConfigError(f"{where}: field 'cursor' must be one SQL expression, without ';'")
    if table.columns is not None and table.exclude_columns:
        raise ConfigError(f"{where}: set either 'columns' (include) or 'exclude_columns', not both")
    return table


def _typed(where: str, field: str, value, kind: type, minimum=None, *, optional=False):
    if value is None and optional:
        return None
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is str:
        ok = ok and value.strip() != ""
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        want = {bool: "true or false", str: "a non-empty string"}.get(kind)
        want = want or ("a positive integer" if minimum == 1 else "a non-negative integer")
        raise ConfigError(
            f"{where}: field {field!r} must be {want}, got {value!r} ({_json_type(value)})"
        )
    return value


def _names(where: str, field: str, value, *, empty: bool = False) -> tuple[str, ...]:
    """A list of column names: non-empty strings, no repeats."""
    ok = isinstance(value, list) and (empty or value)
    if not ok or not all(isinstance(v, str) and v for v in value):
        shape = "a column name or a non-empty list of them" if field == "pk" else "a list of names"
        raise ConfigError(f"{where}: field {field!r} must be {shape}, got {value!r}")
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        raise ConfigError(f"{where}: field {field!r} lists {', '.join(map(repr, repeated))} twice")
    return tuple(value)


def _check_keys(where: str, data: dict, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {key!r}{_hint(key, allowed, list_all=True)}")


def _hint(word: str, choices, *, list_all: bool = False) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    if near:
        return f" (did you mean {near[0]!r}?)"
    return f" (allowed: {', '.join(choices)})" if list_all else ""


_JSON_TYPES = {bool: "boolean", str: "string", int: "number", float: "number", list: "array"}


def _json_type(value) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "object")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """json object_pairs_hook: a key given twice is an error, not "the last one wins"."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key {key!r} appears twice in one JSON object")
        out[key] = value
    return out


# --- live catalog ------------------------------------------------------------------------------

_COLUMNS = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_RELATIONS = """
SELECT c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname
"""


def validate_against_catalog(conn: psycopg.Connection, config: SyncConfig) -> list[ResolvedTable]:
    """Check every enabled table against the live catalog; its selected columns and cursor, in sync order."""
    return [_resolve(conn, t) for t in config.enabled_tables()]


def _resolve(conn: psycopg.Connection, t: TableConfig) -> ResolvedTable:
    catalog = dict(conn.execute(_COLUMNS, (t.schema, t.source_table)).fetchall())
    if not catalog:
        tables = [r[0] for r in conn.execute(_RELATIONS, (t.schema,)).fetchall()]
        listed = ", ".join(tables[:_MAX_LISTED]) + (
            f", ... ({len(tables) - _MAX_LISTED} more)" if len(tables) > _MAX_LISTED else ""
        )
        there = (
            f"tables in {t.schema}: {listed}" if tables else f"schema {t.schema!r} has no tables"
        )
        raise TableConfigError(
            f"table {t.name!r}: {t.qualified_name} does not exist"
            f"{_hint(t.source_table, tables)} ({there})"
        )
    names = list(catalog)

    def need(field: str, cols) -> None:
        for col in (c for c in cols if c not in catalog):
            near = difflib.get_close_matches(col, names, n=1)
            raise TableConfigError(
                f"table {t.name!r} has no column {col!r} (columns: {', '.join(names)}): fix {field}"
                + (f", did you mean {near[0]!r}?" if near else "")
            )

    need("pk", t.pk)
    need("updated_col", [t.updated_col] if t.updated_col else [])
    need("columns", t.columns or ())
    need("exclude_columns", t.exclude_columns)

    def kept(col: str) -> bool:
        return col not in t.exclude_columns and (t.columns is None or col in t.columns)

    dropped = [c for c in t.pk if not kept(c)]
    if dropped:
        raise TableConfigError(
            f"table {t.name!r}: pk column {dropped[0]!r} must be selected (check columns/exclude_columns)"
        )
    selected = [c for c in names if kept(c)]
    relation = sql.Identifier(t.schema, t.source_table)
    cursor_sql = cursor_type = None
    if t.incremental:
        cursor_sql = sql.SQL(t.cursor) if t.cursor else sql.Identifier(t.updated_col)
        cursor_type = _cursor_type(conn, t, relation, cursor_sql)
    return ResolvedTable(
        config=t,
        columns=tuple(selected),
        column_types=tuple(catalog[c] for c in selected),
        relation=relation,
        cursor_sql=cursor_sql,
        cursor_type=cursor_type,
    )


def _cursor_type(conn: psycopg.Connection, t: TableConfig, relation, cursor_sql) -> str:
    """Run the cursor against the table (no rows, rolled back) and check it is a timestamp."""
    what = f"cursor {t.cursor!r}" if t.cursor else f"updated_col {t.updated_col!r}"
    probe = sql.SQL("SELECT ({}) FROM {} LIMIT 0").format(cursor_sql, relation)
    try:
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            cur.execute(probe)
            oid = cur.description[0].type_code
    except psycopg.Error as exc:
        reason = (exc.diag.message_primary or str(exc)).strip()
        raise TableConfigError(
            f"table {t.name!r}: {what} does not run on {t.qualified_name}: {reason}"
        ) from exc
    if oid not in CURSOR_TYPES:
        type_name = conn.execute("SELECT pg_catalog.format_type(%s, NULL)", (oid,)).fetchone()[0]
        raise TableConfigError(
            f"table {t.name!r}: {what} has type {type_name}; it must be timestamptz or timestamp "
            "(daily partitions are days of cursor time)"
        )
    return CURSOR_TYPES[oid]
