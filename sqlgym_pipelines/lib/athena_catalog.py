"""The tables an Athena query may name: S3 location, file format, partition layout, Athena types.

Production Athena keeps this in Glue; the local DuckDB engine needs it spelled out. Loaded from
a dict or a JSON file shaped like:

    {"tables": {
        "orders": {
            "location": "s3://sqlgym-lake-local/postgres_sync/orders/",
            "format": "parquet",
            "partitioning": {"style": "directory", "template": "${year}/${month}/${day}"},
            "columns": {"id": "bigint", "amount": "decimal(12,2)", "year": "string"}
        }}}

`style` is "none", "hive" (`key=value` dirs) or "directory" (plain values, named by
`columns` in path order, or by an Athena-style `template`). Partition columns are strings
unless `columns` types them. An optional `"views": {"name": "SELECT ..."}` holds views (their
Athena SQL), as `CREATE VIEW` through the engine also does.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from sqlgym_pipelines.lib.errors import ConfigError

FORMATS = ("parquet",)
STYLES = ("none", "hive", "directory")
_TEMPLATE_VAR = re.compile(r"\$\{(\w+)\}")

# Athena/Trino type names -> Arrow; complex and exotic types come back as their text form.
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "float": pa.float32(),
    "double": pa.float64(),
    "date": pa.date32(),
    # Athena returns up to microseconds (Iceberg); "us" holds both that and Hive's millis.
    "timestamp": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "varbinary": pa.binary(),
    "binary": pa.binary(),
}
_TEXT_TYPES = (
    "varchar",
    "char",
    "string",
    "json",
    "uuid",
    "ipaddress",
    "interval",
    "array",
    "map",
    "row",
    "struct",
)


def arrow_type(
    athena_type: str, precision: int | None = None, scale: int | None = None
) -> pa.DataType:
    """The Arrow type of an Athena column type such as `bigint`, `decimal(12,2)`, `varchar(20)`."""
    text = " ".join(athena_type.strip().lower().split())
    if text.startswith("decimal"):
        # ColumnInfo gives precision/scale as fields; DDL gives them inline.
        inline = [int(n) for n in re.findall(r"\d+", text)]
        p = inline[0] if inline else precision
        s = inline[1] if len(inline) > 1 else scale
        return pa.decimal128(p or 38, s or 0)
    key = " ".join(re.sub(r"\(\d+\)", "", text).split())  # timestamp(3) with time zone
    if key in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[key]
    if re.match(r"[a-z]*", key).group() in _TEXT_TYPES:
        return pa.string()
    raise ConfigError(
        f"unknown Athena type {athena_type!r}: use one of "
        f"{', '.join([*_SIMPLE_TYPES, 'decimal(p,s)', 'varchar'])}"
    )


@dataclass(frozen=True)
class Partitioning:
    """How partition values are encoded in the object keys under a table's location."""

    style: str = "none"
    columns: tuple[str, ...] = ()  # in path order

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, table: str) -> "Partitioning":
        raw = dict(raw or {})
        style = raw.pop("style", "none")
        if style not in STYLES:
            raise ConfigError(
                f"table {table!r}: partitioning style {style!r} is not one of {STYLES}"
            )
        columns = list(raw.pop("columns", []))
        template = raw.pop("template", None)
        if raw:
            raise ConfigError(
                f"table {table!r}: unknown partitioning keys {sorted(raw)} (use style, columns, template)"
            )
        if template:
            columns = _TEMPLATE_VAR.findall(template)
            if not columns:
                raise ConfigError(f"table {table!r}: template {template!r} names no ${{column}}")
        if style == "none" and columns:
            raise ConfigError(
                f"table {table!r}: partition columns {columns} need style 'hive' or 'directory'"
            )
        if style == "directory" and not columns:
            raise ConfigError(
                f"table {table!r}: style 'directory' needs columns or a template like '${{year}}/${{month}}/${{day}}'"
            )
        return cls(style=style, columns=tuple(c.lower() for c in columns))


@dataclass(frozen=True)
class CatalogTable:
    """One table: where its files are and, optionally, its Athena column types."""

    name: str
    location: str  # s3://bucket/prefix/
    format: str = "parquet"
    partitioning: Partitioning = field(default_factory=Partitioning)
    columns: dict[str, str] = field(default_factory=dict)  # name -> Athena type, may be empty

    def __post_init__(self) -> None:
        if not self.location.startswith("s3://") or len(self.location) <= len("s3://"):
            raise ConfigError(
                f"table {self.name!r}: location {self.location!r} must look like s3://bucket/prefix/"
            )
        if self.format not in FORMATS:
            raise ConfigError(
                f"table {self.name!r}: format {self.format!r} is not supported (use {FORMATS})"
            )
        for column_type in self.columns.values():
            arrow_type(column_type)  # fail at load time, not at the first query

    @property
    def s3_path(self) -> str:
        """The location as pyarrow's S3FileSystem wants it: bucket/prefix, no scheme, no trailing /."""
        return self.location.removeprefix("s3://").rstrip("/")

    def partition_schema(self) -> pa.Schema:
        return pa.schema(
            [(c, arrow_type(self.columns.get(c, "string"))) for c in self.partitioning.columns]
        )

    def schema(self) -> pa.Schema | None:
        """The full Arrow schema (data then partition columns), or None if the catalog gives no columns."""
        if not self.columns:
            return None
        parts = set(self.partitioning.columns)
        data = [(c, arrow_type(t)) for c, t in self.columns.items() if c not in parts]
        return pa.schema(data + list(self.partition_schema()))

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any]) -> "CatalogTable":
        if "location" not in raw:
            raise ConfigError(f"table {name!r}: missing 'location' (s3://bucket/prefix/)")
        unknown = set(raw) - {"location", "format", "partitioning", "columns"}
        if unknown:
            raise ConfigError(
                f"table {name!r}: unknown keys {sorted(unknown)} (use location, format, partitioning, columns)"
            )
        return cls(
            name=name.lower(),
            location=raw["location"],
            format=raw.get("format", "parquet"),
            partitioning=Partitioning.from_dict(raw.get("partitioning"), name),
            columns={c.lower(): t for c, t in (raw.get("columns") or {}).items()},
        )


@dataclass
class Catalog:
    """Table name (lower case, as Athena folds it) -> CatalogTable; view name -> its SELECT."""

    tables: dict[str, CatalogTable] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # Athena SQL, expanded at query time

    def add(self, table: CatalogTable) -> None:
        self.tables[table.name.lower()] = table

    def add_view(self, name: str, select_sql: str) -> None:
        self.views[name.lower()] = select_sql

    def get(self, name: str) -> CatalogTable | None:
        return self.tables.get(name.lower())

    def names(self) -> list[str]:
        return sorted(self.tables)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "Catalog":
        tables = (raw or {}).get("tables", {})
        if not isinstance(tables, Mapping):
            raise ConfigError(
                "catalog 'tables' must map table names to {location, format, partitioning, columns}"
            )
        views = (raw or {}).get("views") or {}
        if not isinstance(views, Mapping) or not all(isinstance(v, str) for v in views.values()):
            raise ConfigError("catalog 'views' must map view names to their SELECT (Athena SQL)")
        return cls(
            {name.lower(): CatalogTable.from_dict(name, spec) for name, spec in tables.items()},
            {name.lower(): select for name, select in views.items()},
        )

    @classmethod
    def from_json(cls, path: str | Path) -> "Catalog":
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"catalog file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"catalog file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)
