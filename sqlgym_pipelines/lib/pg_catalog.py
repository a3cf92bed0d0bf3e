"""A table's columns as pg_catalog declares them: the input of the Postgres -> Arrow mapping."""

from dataclasses import dataclass

import psycopg

from sqlgym_pipelines.lib.errors import ConfigError

_RELATION_SQL = """
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS_SQL = """
SELECT attname, attnum, format_type(atttypid, atttypmod), atttypid, atttypmod, attndims, attnotnull
FROM pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""

_TYPE_SQL = """
SELECT typname, typnamespace = 'pg_catalog'::regnamespace, typtype, typcategory,
       typbasetype, typtypmod, typelem
FROM pg_type WHERE oid = %s
"""


@dataclass(frozen=True)
class PgType:
    """A type after resolving domains: what the values on the wire really are."""

    name: str  # pg_type.typname, e.g. 'numeric', 'int4', 'mood', '_int4'
    builtin: bool  # lives in pg_catalog, so the name means the built-in type
    typtype: str  # 'b' base, 'c' composite, 'e' enum, 'r' range, 'm' multirange, 'p' pseudo
    category: str  # pg_type.typcategory: 'N' numeric, 'S' string, 'A' array, 'D' datetime, ...
    typmod: int  # -1 when unconstrained

    @property
    def precision(self) -> int | None:
        """numeric(p,s): p; None for unconstrained numeric and other types."""
        return ((self.typmod - 4) >> 16) & 0xFFFF if self._is_sized_numeric else None

    @property
    def scale(self) -> int | None:
        """numeric(p,s): s (Postgres 15 allows negative scales, stored as 11-bit two's complement)."""
        if not self._is_sized_numeric:
            return None
        raw = (self.typmod - 4) & 0x7FF
        return raw - 0x800 if raw & 0x400 else raw

    @property
    def _is_sized_numeric(self) -> bool:
        return self.builtin and self.name == "numeric" and self.typmod >= 4


@dataclass(frozen=True)
class PgColumn:
    relation: str  # 'schema.table', for error messages
    name: str
    attnum: int
    type_name: str  # as declared (format_type): 'numeric(10,2)', 'price', 'integer[]'
    typtype: str  # of the declared type: 'd' for a domain, else base.typtype
    base: PgType  # the declared type with domains resolved (recursively)
    element: PgType | None  # for arrays: the element type, domains resolved
    ndims: int  # declared array dimensions; Postgres does not enforce it
    not_null: bool

    @property
    def qualified(self) -> str:
        return f"{self.relation}.{self.name}"


def _resolve(conn: psycopg.Connection, oid: int, typmod: int) -> tuple[PgType, int, str]:
    """Follow a domain chain to its base type; returns the base, its typelem, the first typtype."""
    first = None
    while True:
        name, builtin, typtype, category, basetype, typtypmod, elem = conn.execute(
            _TYPE_SQL, (oid,)
        ).fetchone()
        first = first or typtype
        if typtype != "d":
            return PgType(name, builtin, typtype, category, typmod), elem, first
        # A domain column has atttypmod -1; the domain itself carries the base's typmod.
        oid, typmod = basetype, typtypmod if typtypmod != -1 else typmod


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[PgColumn]:
    """The columns of schema.table in catalog order, with domains and array elements resolved."""
    rel = conn.execute(_RELATION_SQL, (schema, table)).fetchone()
    if rel is None:
        raise ConfigError(
            f"table {schema}.{table} does not exist (or is not visible to this role); "
            "check the schema and table names in the sync config"
        )
    columns = []
    for name, attnum, type_name, typoid, typmod, ndims, not_null in conn.execute(
        _COLUMNS_SQL, rel
    ).fetchall():
        base, elem, typtype = _resolve(conn, typoid, typmod)
        element = None
        if base.category == "A" and elem:
            # An array's typmod (numeric(10,2)[] -> 655366) applies to its elements.
            element, _, _ = _resolve(conn, elem, typmod)
        columns.append(
            PgColumn(
                f"{schema}.{table}",
                name,
                attnum,
                type_name,
                typtype,
                base,
                element,
                ndims,
                not_null,
            )
        )
    return columns
