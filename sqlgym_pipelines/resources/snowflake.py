"""Snowflake: snowflake-connector-python in production, fakesnow (Snowflake SQL on DuckDB) locally.

No `from __future__ import annotations` here: Dagster reads the field annotations at runtime.
"""

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field, model_validator

from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed, QueryFailed


class SnowflakeResource(dg.ConfigurableResource):
    """A Snowflake connection, opened per use and always closed; `mode` picks the backend."""

    mode: Literal["snowflake", "fakesnow"] = Field(
        default="snowflake", description="'snowflake' (the real service) or 'fakesnow' (local)"
    )
    account: str = Field(default="", description="account identifier, e.g. 'myorg-myaccount'")
    user: str = ""
    password: str | None = Field(default=None, description="secret: pass dg.EnvVar(...)")
    warehouse: str | None = None
    database: str | None = None
    # `schema` would shadow pydantic's BaseModel.schema(): the attribute is schema_, the
    # config key and constructor keyword stay `schema` (as in dagster-snowflake).
    schema_: str | None = Field(default=None, alias="schema")
    role: str | None = None
    host: str | None = Field(default=None, description="only for PrivateLink/custom hosts")
    login_timeout: int = Field(default=30, description="seconds before a login attempt gives up")
    fakesnow_db_path: str | None = Field(
        default=None,
        description="fakesnow: directory of its database files, so data outlives a connection "
        "(and the process); unset keeps data in memory only while a connection is open",
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_schema_underscore(cls, data: Any) -> Any:
        # Without this, SnowflakeResource(schema_="X") is silently ignored (pydantic drops
        # unknown keywords and the field's name for input is its alias).
        if isinstance(data, dict) and "schema_" in data:
            raise ConfigError("SnowflakeResource: pass schema=..., not schema_=...")
        return data

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A snowflake.connector connection (or fakesnow's stand-in), closed on exit."""
        if self.mode == "fakesnow":
            with _fakesnow_session(self.fakesnow_db_path):
                conn = self._connect_fakesnow()
                try:
                    yield conn
                finally:
                    conn.close()
        else:
            conn = self._connect_snowflake()
            try:
                yield conn
            finally:
                conn.close()

    def fetch_arrow(self, sql: str, params: Sequence | dict | None = None) -> pa.Table:
        """Run one query (pyformat params: %s / %(name)s) and return its rows as a typed Arrow table."""
        from snowflake.connector.errors import ProgrammingError

        with self.get_connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql, params)
            except ProgrammingError as exc:
                raise QueryFailed(
                    f"Snowflake ({self.mode}) rejected the query: {exc.msg or exc}\n  query: {sql.strip()[:500]}"
                ) from exc
            return cursor_to_arrow(cur)

    def _connect_snowflake(self) -> Any:
        import snowflake.connector

        missing = [name for name in ("account", "user") if not getattr(self, name)]
        if missing:
            raise ConfigError(
                f"SnowflakeResource(mode='snowflake') needs {' and '.join(missing)}: set them "
                "(e.g. from SNOWFLAKE_ACCOUNT / SNOWFLAKE_USER) or use mode='fakesnow' locally"
            )
        kwargs = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "warehouse": self.warehouse,
            "database": self.database,
            "schema": self.schema_,
            "role": self.role,
            "host": self.host,
            "login_timeout": self.login_timeout,
            "network_timeout": self.login_timeout,
            "socket_timeout": self.login_timeout,
            # NUMBER(p,s) with s > 0 stays exact (decimal128) instead of float64 in Arrow.
            "arrow_number_to_decimal": True,
            "session_parameters": {"TIMEZONE": "UTC"},
        }
        try:
            return snowflake.connector.connect(**{k: v for k, v in kwargs.items() if v is not None})
        except snowflake.connector.errors.Error as exc:
            raise ConnectionFailed(
                connection_error_message(
                    exc, account=self.account, user=self.user, login_timeout=self.login_timeout
                )
            ) from exc

    def _connect_fakesnow(self) -> Any:
        import duckdb
        import snowflake.connector

        try:
            return snowflake.connector.connect(
                account=self.account or "fakesnow",
                user=self.user or "fake",
                password="fake",  # never the real secret: fakesnow ignores it
                database=self.database,
                schema=self.schema_,
            )
        except duckdb.IOException as exc:
            raise ConnectionFailed(
                f"fakesnow cannot open its database in {self.fakesnow_db_path}: {exc}. DuckDB lets "
                "one process at a time open a file: stop the other process or use another "
                "fakesnow_db_path"
            ) from exc


def connection_error_message(exc: Exception, *, account: str, user: str, login_timeout: int) -> str:
    """What failed, for whom, and what to check, from a snowflake.connector error (never the password)."""
    reason = str(getattr(exc, "msg", None) or exc).strip()
    lowered = reason.lower()
    if "incorrect username or password" in lowered or "authentication" in lowered:
        hint = (
            "check the user and the password (SNOWFLAKE_PASSWORD) and that the user is not locked"
        )
    elif "role" in lowered or "warehouse" in lowered or "database" in lowered:
        hint = "check that the role, warehouse and database exist and the user may use them"
    elif (
        "could not connect" in lowered
        or "timed out" in lowered
        or "timeout" in lowered
        or "name or service not known" in lowered
        or "failed to connect" in lowered
    ):
        hint = (
            "check the account identifier (orgname-accountname, or locator.region, without "
            f"'.snowflakecomputing.com') and the network path to Snowflake; login_timeout was "
            f"{login_timeout}s"
        )
    else:
        hint = "check the account, user, password and network"
    return f"cannot connect to Snowflake account {account!r} as {user!r}: {reason} ({hint})"


# -- Arrow ----------------------------------------------------------------------------------
def _timestamp_unit(scale: int | None) -> str:
    # The connector's own rule for Arrow results (fractional digits -> unit).
    if scale is None or scale > 6:
        return "ns"
    return "s" if scale == 0 else "ms" if scale <= 3 else "us"


def arrow_type(type_name: str, precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type for a Snowflake result column (type name as in FIELD_ID_TO_NAME)."""
    if type_name == "FIXED":
        if scale:
            return pa.decimal128(precision or 38, scale)
        return pa.int64()
    if type_name in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
        return pa.timestamp(_timestamp_unit(scale), tz="UTC")
    if type_name in ("TIMESTAMP_NTZ", "TIMESTAMP"):
        return pa.timestamp(_timestamp_unit(scale))
    simple = {
        "REAL": pa.float64(),
        "TEXT": pa.string(),
        "DATE": pa.date32(),
        "BOOLEAN": pa.bool_(),
        "BINARY": pa.binary(),
        "TIME": pa.time64("ns") if _timestamp_unit(scale) == "ns" else pa.time64("us"),
    }
    # VARIANT, OBJECT, ARRAY, GEOGRAPHY...: JSON text, as the connector returns them
    return simple.get(type_name, pa.string())


def arrow_schema(description: Sequence[Any]) -> pa.Schema:
    """The Arrow schema of a cursor's result, from its description (ResultMetadata)."""
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    return pa.schema(
        pa.field(col.name, arrow_type(FIELD_ID_TO_NAME[col.type_code], col.precision, col.scale))
        for col in description
    )


def cursor_to_arrow(cur: Any) -> pa.Table:
    """An executed cursor's rows as Arrow typed from its description, on either backend."""
    schema = arrow_schema(cur.description)
    if hasattr(cur, "fetch_arrow_all"):  # the real connector: columnar all the way
        table = cur.fetch_arrow_all(force_return_table=True)
        columns = []
        for field, column in zip(schema, table.columns, strict=True):
            try:  # narrow ints -> int64, decimal128(38,s) -> (p,s): same values, stable types
                columns.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                columns.append(column)  # keep what the connector delivered rather than lose data
        return pa.Table.from_arrays(columns, names=schema.names)
    # fakesnow has no fetch_arrow_all: build the columns from the rows with the declared types.
    rows = cur.fetchall()
    columns = [
        pa.array([row[i] for row in rows], type=field.type) for i, field in enumerate(schema)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


# -- fakesnow process state -------------------------------------------------------------------
# fakesnow.patch() replaces snowflake.connector.connect for the whole process and refuses to
# nest, so all fakesnow connections of a process share one patch: it starts with the first
# connection and ends with the last (which also closes the in-memory DuckDB holding the data,
# hence fakesnow_db_path for anything that must outlive a connection).
_lock = threading.Lock()
_state: dict[str, Any] = {"users": 0, "db_path": None, "patch": None, "stages": None}
_IMPORT_STAGE_DIR: list[str] = []  # fakesnow's own mkdtemp at import, removed once


@contextmanager
def _fakesnow_session(db_path: str | None) -> Iterator[None]:
    path = str(Path(db_path).resolve()) if db_path else None
    with _lock:
        if _state["users"] == 0:
            _start_fakesnow(path)
        elif _state["db_path"] != path:
            raise ConfigError(
                f"fakesnow is already open in this process with fakesnow_db_path={_state['db_path']!r}; "
                f"one process can use one fakesnow_db_path at a time (asked for {path!r})"
            )
        _state["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0:
                _stop_fakesnow()


def _start_fakesnow(path: str | None) -> None:
    import fakesnow
    from fakesnow.transforms import stage

    # fakesnow makes a fakesnow_bucket_* dir in the temp dir at import and never removes it;
    # internal stages go where LOCAL_BUCKET_PATH points, so point it at a dir we own.
    if not _IMPORT_STAGE_DIR:
        _IMPORT_STAGE_DIR.append(stage.LOCAL_BUCKET_PATH)
        with suppress(OSError):
            os.rmdir(stage.LOCAL_BUCKET_PATH)  # only succeeds while empty
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        stages = Path(path) / "stages"
        stages.mkdir(exist_ok=True)
        owned = None
    else:
        stages = Path(tempfile.mkdtemp(prefix="sqlgym_fakesnow_stages_"))
        owned = stages
    stage.LOCAL_BUCKET_PATH = str(stages)
    patch = ExitStack()
    patch.enter_context(fakesnow.patch(db_path=path))
    _state.update(db_path=path, patch=patch, stages=owned)


def _stop_fakesnow() -> None:
    patch, owned = _state["patch"], _state["stages"]
    _state.update(db_path=None, patch=None, stages=None)
    try:
        patch.close()
    finally:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
