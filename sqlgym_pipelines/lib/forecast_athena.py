"""The Athena side of the forecast sync: the raw table over forecast/*.parquet and the view
the sync reads, created on either engine (AWS Athena runs the DDL; the local DuckDB engine
registers the same files), and the per-day queries."""

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

SQL_DIR = Path(__file__).parent / "sql"
RAW_TABLE = "forecast_raw"
VIEW = "athena_forecast"
COLUMNS = (
    "restaurant_id", "inventory_item_id", "business_date", "dma_id", "dc_id", "state",
    "y_05", "y_50", "y_95",
)  # fmt: skip


def _ident(name: str, dialect: str) -> str:
    from sqlglot import exp  # imported when used: sqlglot is ~8 MB in every run process

    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def table_ddl(location: str, table: str = RAW_TABLE) -> str:
    text = (SQL_DIR / "forecast_athena_table.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    from sqlglot import exp

    return body.format(
        table=_ident(table, "hive"), location=exp.Literal.string(location).sql(dialect="hive")
    )


def view_sql(view: str = VIEW, table: str = RAW_TABLE) -> str:
    text = (SQL_DIR / "forecast_athena_view.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return body.format(view=_ident(view, "trino"), table=_ident(table, "trino"))


def ensure_tables(athena, location: str, view: str = VIEW) -> list[str]:
    """Create the raw table and the view (idempotent); returns the statements, for metadata."""
    ddl = table_ddl(location)
    if athena.engine == "duckdb":
        # DuckDB cannot run Hive DDL: the catalog entry says what the DDL says (the files).
        athena.register_table(RAW_TABLE, location)
    else:
        athena.query(ddl)
    statement = view_sql(view)
    athena.query(statement)
    return [ddl, statement]


def day_rows(athena, day: dt.date, view: str = VIEW) -> pa.Table:
    columns = ", ".join(_ident(c, "trino") for c in COLUMNS)
    sql = f"SELECT {columns} FROM {_ident(view, 'trino')} WHERE business_date = ?"  # noqa: S608
    return athena.query(sql, [day])


def each_day_rows(
    athena, days: Iterable[dt.date], view: str = VIEW
) -> Iterator[tuple[dt.date, pa.Table | None, Exception | None]]:
    """(day, rows, None) for each day in turn; (day, None, error) for a read that failed, the
    last item: the caller records the failure against its day."""
    for day in days:
        try:
            rows = day_rows(athena, day, view)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
            yield day, None, exc
            return
        yield day, rows, None


def day_counts(athena, days: list[dt.date], view: str = VIEW) -> dict[dt.date, int]:
    """Rows per business_date for these days (0 for a day with none)."""
    if not days:
        return {}
    sql = (
        f"SELECT business_date, count(*) AS n FROM {_ident(view, 'trino')} "  # noqa: S608
        "WHERE business_date BETWEEN ? AND ? GROUP BY business_date"
    )
    table = athena.query(sql, [min(days), max(days)])
    found = dict(
        zip(table.column("business_date").to_pylist(), table.column("n").to_pylist(), strict=True)
    )
    return {d: int(found.get(d, 0)) for d in days}
