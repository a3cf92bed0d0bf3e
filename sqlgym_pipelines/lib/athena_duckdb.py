"""The local Athena engine: Athena (Trino) SQL run by DuckDB over Parquet that pyarrow reads from S3.

sqlglot transpiles Trino to DuckDB but leaves a few Athena functions untouched and types some
results differently (TOOLCHAIN.md); `translate` patches exactly those, so a query gives the
same values and types here as on Athena. DuckDB's httpfs cannot be installed here, so every
table the query names is registered as a pyarrow dataset (DuckDB pushes filters into it).
"""

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from sqlgym_pipelines.lib.athena_catalog import Catalog, CatalogTable
from sqlgym_pipelines.lib.errors import QueryFailed

# Joda letters (Trino's format_datetime / parse_datetime) -> DuckDB strftime, by run length.
_JODA = {
    "y": {2: "%y", 0: "%Y"},
    "Y": {2: "%y", 0: "%Y"},
    "M": {1: "%-m", 2: "%m", 3: "%b", 0: "%B"},
    "d": {1: "%-d", 0: "%d"},
    "H": {1: "%-H", 0: "%H"},
    "h": {1: "%-I", 0: "%I"},
    "m": {1: "%-M", 0: "%M"},
    "s": {1: "%-S", 0: "%S"},
    "S": {3: "%g", 6: "%f"},
    "a": {0: "%p"},
    "E": {1: "%a", 2: "%a", 3: "%a", 0: "%A"},
    "D": {1: "%-j", 0: "%j"},
    "Z": {0: "%z"},
    "z": {0: "%Z"},
}
_JODA_TOKEN = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|[^A-Za-z']+")
# Trino keeps DATE for these on a DATE; DuckDB turns them into TIMESTAMP.
_DATE_KEEPING = (exp.DateAdd, exp.DateSub, exp.DateTrunc, exp.TimestampTrunc)
_DATE_UNITS = {"DAY", "WEEK", "MONTH", "QUARTER", "YEAR"}


def s3_filesystem(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
) -> pafs.S3FileSystem:
    """pyarrow's S3 client; endpoint_url like http://127.0.0.1:5000 points it at moto."""
    options: dict[str, Any] = {"region": region, "access_key": access_key, "secret_key": secret_key}
    if session_token:
        options["session_token"] = session_token
    if endpoint_url:
        url = urlparse(endpoint_url)
        options["endpoint_override"] = url.netloc or url.path
        options["scheme"] = url.scheme or "https"
    return pafs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})


def _head(sql: str) -> str:
    line = next((ln.strip() for ln in sql.splitlines() if ln.strip()), "")
    return line if len(line) <= 120 else line[:117] + "..."


def parse_athena(sql: str) -> exp.Expression:
    """One Athena statement as a sqlglot tree; malformed SQL raises QueryFailed saying where."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except sqlglot.errors.ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        where = (
            f" at line {err['line']}, column {err['col']} near {err.get('highlight')!r}"
            if err
            else ""
        )
        reason = err.get("description") or str(exc).splitlines()[0]
        # sqlglot says "Required keyword: 'this' missing for <class '...Where'>": name the clause.
        reason = re.sub(
            r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>",
            r"incomplete \1 clause",
            reason,
        )
        raise QueryFailed(
            f"cannot parse Athena SQL{where}: {reason} (query: {_head(sql)!r})"
        ) from exc
    except sqlglot.errors.TokenError as exc:
        raise QueryFailed(f"cannot parse Athena SQL: {exc} (query: {_head(sql)!r})") from exc
    if len(statements) != 1:
        raise QueryFailed(
            f"Athena runs one statement per query, got {len(statements)} (query: {_head(sql)!r})"
        )
    return statements[0]


def _in_database(table: exp.Table, database: str | None) -> bool:
    return not (table.db and database and table.db.lower() != database.lower())


def expand_views(
    tree: exp.Expression, catalog: Catalog, database: str | None, _path: tuple[str, ...] = ()
) -> None:
    """Replace each view the query names with its SELECT as a subquery, like Trino inlines views."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if name not in catalog.views or (not table.db and name in ctes):
            continue
        if not _in_database(table, database):
            continue  # referenced_tables names the unknown table
        if name in _path:
            raise QueryFailed(f"view {name!r} refers to itself: {' -> '.join((*_path, name))}")
        body = parse_athena(catalog.views[name])
        expand_views(body, catalog, database, (*_path, name))
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(exp.Subquery(this=body, alias=alias))


def referenced_tables(
    tree: exp.Expression, catalog: Catalog, database: str | None
) -> list[CatalogTable]:
    """The catalog tables the query reads; strips `db.` qualifiers since DuckDB sees bare names."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found: dict[str, CatalogTable] = {}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not table.db and name in ctes:
            continue
        entry = catalog.get(name)
        if entry is None or not _in_database(table, database):
            raise QueryFailed(
                f"unknown table {table.sql(dialect='trino')!r}: the catalog has "
                f"{', '.join(catalog.names() + sorted(catalog.views)) or 'no tables'}"
                + (f" (in database {database!r})" if database else "")
            )
        table.set("db", None)
        table.set("catalog", None)
        found[name] = entry
    return list(found.values())


def joda_to_strftime(pattern: str) -> str:
    """A Joda-Time pattern (format_datetime, parse_datetime) as a DuckDB strftime format."""
    out = []
    for match in _JODA_TOKEN.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            out.append((token[1:-1] or "'").replace("''", "'").replace("%", "%%"))
        elif match.group(1):
            forms = _JODA.get(token[0], {})
            form = forms.get(len(token), forms.get(0))
            if form is None:
                raise QueryFailed(
                    f"Joda pattern {pattern!r}: {token!r} has no DuckDB strftime equivalent"
                )
            out.append(form)
        else:
            out.append(token.replace("%", "%%"))
    return "".join(out)


def _literal_arg(node: exp.Expression, fn: str) -> str:
    if not isinstance(node, exp.Literal) or not node.is_string:
        raise QueryFailed(
            f"{fn}: the local engine needs its pattern as a string literal, got {node.sql()}"
        )
    return node.this


def _rewrite_athena_functions(tree: exp.Expression) -> None:
    """Rewrite the Athena functions sqlglot passes through untranslated."""
    for node in list(tree.find_all(exp.Anonymous, exp.ParseDatetime)):
        name = "parse_datetime" if isinstance(node, exp.ParseDatetime) else node.name.lower()
        args = [node.this, node.args["format"]] if name == "parse_datetime" else node.expressions
        if name in ("format_datetime", "parse_datetime") and len(args) == 2:
            fmt = exp.Literal.string(joda_to_strftime(_literal_arg(args[1], name)))
            fn = "strftime" if name == "format_datetime" else "strptime"
            node.replace(exp.Anonymous(this=fn, expressions=[args[0], fmt]))
        elif name == "at_timezone" and len(args) == 2:
            # Trino shifts the instant to the zone; DuckDB gives that zone's wall-clock time.
            instant = exp.cast(args[0], exp.DataType.build("TIMESTAMPTZ", dialect="duckdb"))
            node.replace(exp.Anonymous(this="timezone", expressions=[args[1], instant]))


def _sqlglot_type(arrow: pa.DataType) -> str:
    if pa.types.is_date(arrow):
        return "DATE"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP"
    if pa.types.is_integer(arrow):
        return "BIGINT"
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision}, {arrow.scale})"
    if pa.types.is_floating(arrow):
        return "DOUBLE"
    return "BOOLEAN" if pa.types.is_boolean(arrow) else "VARCHAR"


def _keep_dates(tree: exp.Expression, schemas: Mapping[str, pa.Schema]) -> None:
    """CAST date_add/date_trunc back to DATE where Trino would give a DATE (types from the data)."""
    marked = list(tree.find_all(*_DATE_KEEPING))
    for i, node in enumerate(marked):
        node.meta["athena_node"] = i  # meta survives copy(), so the typed copy points back here
    schema = {t: {f.name: _sqlglot_type(f.type) for f in s} for t, s in schemas.items()}
    typed = tree.copy()
    # If qualifying fails, columns stay untyped but literals and CASTs still get their types.
    with contextlib.suppress(sqlglot.errors.SqlglotError):
        typed = qualify(typed, schema=schema, dialect="trino", validate_qualify_columns=False)
    annotate_types(typed, schema=schema, dialect="trino")
    dates = set()
    for node in typed.find_all(*_DATE_KEEPING):
        unit = (node.text("unit") or "DAY").upper()
        if node.this.is_type(exp.DataType.Type.DATE) and unit in _DATE_UNITS:
            dates.add(node.meta["athena_node"])
    for i in sorted(dates):
        original = marked[i]
        original.replace(exp.cast(original.copy(), exp.DataType.build("DATE")))


def _name_columns_like_athena(tree: exp.Expression) -> None:
    """Unnamed result columns are `_col0`, `_col1`, ... on Athena; DuckDB would use the SQL text."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for i, column in enumerate(select.expressions):
        if not isinstance(column, exp.Alias | exp.Column | exp.Star):
            column.replace(exp.alias_(column.copy(), f"_col{i}"))


def translate(tree: exp.Expression, schemas: Mapping[str, pa.Schema]) -> str:
    """The DuckDB SQL for a parsed Athena query whose tables have these Arrow schemas."""
    _keep_dates(tree, schemas)
    _rewrite_athena_functions(tree)
    _name_columns_like_athena(tree)
    return tree.sql(dialect="duckdb")


class DuckDBAthena:
    """Runs Athena SQL on an in-memory DuckDB; one instance holds one connection (close it)."""

    def __init__(
        self, catalog: Catalog, filesystem: pafs.FileSystem, *, database: str | None = None
    ):
        self.catalog = catalog
        self.filesystem = filesystem
        self.database = database
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")  # Athena's session zone
        self._functions: set[str] | None = None

    def __enter__(self) -> "DuckDBAthena":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one Athena statement (`?` placeholders bound from params); the result as Arrow."""
        tree = parse_athena(sql)
        if isinstance(tree, exp.Create) and tree.kind == "VIEW":
            self.create_view(tree, sql)
            return pa.table({})  # Athena's DDL result: no rows, no columns
        expand_views(tree, self.catalog, self.database)
        tables = referenced_tables(tree, self.catalog, self.database)
        datasets = {t.name: self.dataset(t) for t in tables}
        duck_sql = translate(tree, {name: d.schema for name, d in datasets.items()})
        self._check_functions(tree, sql)
        for name, dataset in datasets.items():
            self.con.register(name, dataset)
        try:
            relation = self.con.sql(duck_sql, params=list(params) if params else None)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise QueryFailed(
                f"{exc} (query: {_head(sql)!r}; as DuckDB: {_head(duck_sql)!r})"
            ) from exc

    def create_view(self, tree: exp.Create, sql: str) -> None:
        """`CREATE [OR REPLACE] VIEW name AS SELECT ...`: kept in this engine's catalog."""
        target = tree.this
        if not isinstance(target, exp.Table) or not isinstance(tree.expression, exp.Query):
            raise QueryFailed(
                f"the local engine supports CREATE [OR REPLACE] VIEW name AS SELECT ... only "
                f"(no column list) (query: {_head(sql)!r})"
            )
        name = target.name.lower()
        if not _in_database(target, self.database):
            raise QueryFailed(
                f"view {target.sql(dialect='trino')!r} is not in database {self.database!r}"
            )
        if name in self.catalog.tables:
            raise QueryFailed(f"{name!r} is a table: name the view differently")
        if name in self.catalog.views and not tree.args.get("replace"):
            raise QueryFailed(
                f"{name!r} already exists: use CREATE OR REPLACE VIEW (query: {_head(sql)!r})"
            )
        # Athena analyzes the view when it is created: unknown tables fail now, not at first use.
        body = tree.expression.copy()
        expand_views(body, self.catalog, self.database)
        referenced_tables(body, self.catalog, self.database)
        self.catalog.add_view(name, tree.expression.sql(dialect="trino"))

    def dataset(self, table: CatalogTable) -> ds.Dataset:
        """The table's files as one pyarrow dataset, partition columns included."""
        try:
            infos = self.filesystem.get_file_info(
                pafs.FileSelector(table.s3_path, recursive=True, allow_not_found=True)
            )
        except OSError as exc:
            raise QueryFailed(f"table {table.name!r}: cannot list {table.location}: {exc}") from exc
        base = table.s3_path + "/"
        # Like Athena (Hive), skip files and dirs whose name starts with "_" or ".".
        files = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and not any(
                part.startswith(("_", ".")) for part in i.path.removeprefix(base).split("/")
            )
        )
        schema = table.schema()
        if not files:
            if schema is None:
                raise QueryFailed(
                    f"table {table.name!r} has no data files under {table.location} and the catalog "
                    "gives no columns to type an empty result: add 'columns' to its catalog entry"
                )
            return ds.dataset(schema.empty_table())
        partitioning = None
        if table.partitioning.style != "none":
            flavor = "hive" if table.partitioning.style == "hive" else None
            parts = table.partition_schema()
            partitioning = (
                ds.partitioning(parts, flavor=flavor)
                if len(parts)
                else ds.partitioning(flavor="hive")
            )
        return ds.dataset(
            files,
            filesystem=self.filesystem,
            format=table.format,
            schema=schema,
            partitioning=partitioning,
            partition_base_dir=table.s3_path,
        )

    def _check_functions(self, tree: exp.Expression, sql: str) -> None:
        """Name an Athena function DuckDB lacks, instead of DuckDB's 'does not exist' error."""
        if self._functions is None:
            rows = self.con.execute(
                "SELECT DISTINCT lower(function_name) FROM duckdb_functions()"
            ).fetchall()
            self._functions = {r[0] for r in rows}
        for node in tree.find_all(exp.Anonymous):
            if node.name.lower() not in self._functions:
                raise QueryFailed(
                    f"Athena function {node.name.lower()}() has no DuckDB translation in the local "
                    f"engine; rewrite the query or run it with engine='athena' (query: {_head(sql)!r})"
                )
