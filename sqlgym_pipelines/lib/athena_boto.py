"""The production Athena engine: boto3 StartQueryExecution, capped-backoff polling, typed Arrow results.

dagster-aws's AthenaClientResource returns every value as a string (TOOLCHAIN.md); here each
column is typed from GetQueryResults' ColumnInfo, so an Athena `decimal(12,2)` arrives as an
exact Arrow decimal and a `date` as a date, and NULL stays distinct from ''.
"""

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from sqlgym_pipelines.lib.athena_catalog import arrow_type
from sqlgym_pipelines.lib.errors import ConnectionFailed, QueryFailed

_DONE_BAD = ("FAILED", "CANCELLED")


@dataclass(frozen=True)
class PollSettings:
    """How long to wait for a query and how often to ask: initial_s, doubling up to max_s."""

    initial_s: float = 0.2
    max_s: float = 5.0
    multiplier: float = 2.0
    timeout_s: float = 600.0


def _head(sql: str) -> str:
    line = next((ln.strip() for ln in sql.splitlines() if ln.strip()), "")
    return line if len(line) <= 120 else line[:117] + "..."


def athena_literal(value: Any) -> str:
    """A Python value as the SQL literal Athena's ExecutionParameters expect (they are text)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise QueryFailed(f"cannot bind a {type(value).__name__} as an Athena parameter: {value!r}")


def _timestamp_tz(text: str) -> dt.datetime:
    # Athena writes "2024-01-02 03:04:05.123 UTC" or "... America/New_York".
    stamp, _, zone = text.rpartition(" ")
    if not stamp or zone[:1] in "+-" or zone[:1].isdigit():
        return dt.datetime.fromisoformat(text)
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(zone))


def _converter(arrow: pa.DataType) -> Callable[[str], Any]:
    """How to turn Athena's text form of one value into a Python value Arrow can hold."""
    if pa.types.is_boolean(arrow):
        return lambda v: v.lower() == "true"
    if pa.types.is_integer(arrow):
        return int
    if pa.types.is_floating(arrow):
        return float  # Athena writes NaN, Infinity, -Infinity, which float() reads
    if pa.types.is_decimal(arrow):
        return Decimal
    if pa.types.is_date(arrow):
        return dt.date.fromisoformat
    if pa.types.is_timestamp(arrow):
        return _timestamp_tz if arrow.tz else dt.datetime.fromisoformat
    if pa.types.is_time(arrow):
        return dt.time.fromisoformat
    if pa.types.is_binary(arrow):
        return bytes.fromhex  # Athena writes varbinary as spaced hex: "68 65 6c"
    return str


def schema_from_column_info(column_info: Sequence[dict[str, Any]]) -> pa.Schema:
    """The Arrow schema of a result from ResultSetMetadata.ColumnInfo."""
    return pa.schema(
        [
            pa.field(
                c["Name"],
                arrow_type(c["Type"], c.get("Precision"), c.get("Scale")),
                c.get("Nullable") != "NOT_NULL",
            )
            for c in column_info
        ]
    )


def table_from_pages(pages: Iterable[dict[str, Any]], *, skip_header: bool) -> pa.Table:
    """GetQueryResults pages as one typed table; Athena repeats the column names as the first row of page one."""
    schema: pa.Schema | None = None
    columns: list[list[str | None]] = []
    for number, page in enumerate(pages):
        result_set = page["ResultSet"]
        if schema is None:
            schema = schema_from_column_info(result_set["ResultSetMetadata"]["ColumnInfo"])
            columns = [[] for _ in schema]
        rows = result_set.get("Rows", [])
        for row in rows[1:] if (number == 0 and skip_header) else rows:
            for values, cell in zip(columns, row["Data"], strict=False):
                values.append(cell.get("VarCharValue"))  # no VarCharValue means NULL
    if schema is None:
        return pa.table({})
    arrays = []
    for field, raw in zip(schema, columns, strict=True):
        convert = _converter(field.type)
        try:
            values = [None if v is None else convert(v) for v in raw]
        except (ValueError, ArithmeticError) as exc:
            raise QueryFailed(
                f"column {field.name!r} ({field.type}): Athena sent a value it cannot be read as: {exc}"
            ) from exc
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class BotoAthena:
    """Runs Athena SQL through a boto3 `athena` client (owned by the caller, who closes it)."""

    def __init__(
        self,
        client: Any,
        *,
        database: str,
        workgroup: str = "primary",
        output_location: str | None = None,
        catalog_name: str = "AwsDataCatalog",
        poll: PollSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.database = database
        self.workgroup = workgroup
        self.output_location = output_location
        self.catalog_name = catalog_name
        self.poll = poll or PollSettings()
        self._sleep = sleep

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one statement (`?` placeholders bound from params), wait for it, return typed rows."""
        query_id = self.start(sql, params)
        execution = self.wait(query_id, sql)
        # Only SELECTs (DML) carry the header row; SHOW / DESCRIBE results do not.
        return self.results(query_id, skip_header=execution.get("StatementType", "DML") == "DML")

    def start(self, sql: str, params: Sequence[Any] | None = None) -> str:
        request: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.database, "Catalog": self.catalog_name},
            "WorkGroup": self.workgroup,
        }
        if self.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        if params:
            request["ExecutionParameters"] = [athena_literal(p) for p in params]
        response = self._call("StartQueryExecution", sql, **request)
        return response["QueryExecutionId"]

    def wait(self, query_id: str, sql: str = "") -> dict[str, Any]:
        """Poll until the query ends; stop it (StopQueryExecution) if it outlives the timeout."""
        deadline = time.monotonic() + self.poll.timeout_s
        delay = self.poll.initial_s
        while True:
            execution = self._call("GetQueryExecution", sql, QueryExecutionId=query_id)[
                "QueryExecution"
            ]
            status = execution["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return execution
            if state in _DONE_BAD:
                raise QueryFailed(_failure_message(query_id, state, status, sql))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._call("StopQueryExecution", sql, QueryExecutionId=query_id)
                raise QueryFailed(
                    f"Athena query {query_id} still {state} after {self.poll.timeout_s:g}s and was "
                    f"stopped; raise query_timeout_s or make the query scan less (query: {_head(sql)!r})"
                )
            self._sleep(min(delay, remaining))
            delay = min(delay * self.poll.multiplier, self.poll.max_s)

    def results(self, query_id: str, *, skip_header: bool = True) -> pa.Table:
        paginator = self.client.get_paginator("get_query_results")
        pages = paginator.paginate(QueryExecutionId=query_id, PaginationConfig={"PageSize": 1000})
        try:
            return table_from_pages(pages, skip_header=skip_header)
        except ClientError as exc:
            raise QueryFailed(
                f"Athena GetQueryResults for {query_id}: {_client_error(exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise ConnectionFailed(f"Athena GetQueryResults for {query_id}: {exc}") from exc

    def _call(self, operation: str, sql: str, **request: Any) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        try:
            return method(**request)
        except ClientError as exc:
            raise QueryFailed(
                f"Athena {operation}: {_client_error(exc)} (query: {_head(sql)!r})"
            ) from exc
        except BotoCoreError as exc:
            raise ConnectionFailed(
                f"Athena {operation} could not reach the service: {exc}"
            ) from exc


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _client_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"


def _failure_message(query_id: str, state: str, status: dict[str, Any], sql: str) -> str:
    reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage")
    category = status.get("AthenaError", {}).get("ErrorType")
    detail = reason or "Athena gave no reason"
    if category:
        detail += f" (error type {category})"
    return f"Athena query {query_id} {state}: {detail} (query: {_head(sql)!r})"
