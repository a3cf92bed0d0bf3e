"""Postgres connections (psycopg 3): one place that opens them, with timeouts and safe errors."""

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)([^@]*)(@)")


def redact(url: str) -> str:
    """The URL or conninfo with its password replaced by '***' (for logs and errors)."""
    masked = _PASSWORD_IN_URL.sub(r"\1***\3", url)
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", masked)


def conninfo(
    url: str,
    *,
    dbname: str | None = None,
    application_name: str | None = None,
    statement_timeout_ms: int | None = None,
    connect_timeout_s: int | None = 10,
    sslmode: str | None = None,
    sslrootcert: str | None = None,
) -> str:
    """A libpq conninfo from a URL plus the session settings every connection of ours carries."""
    if not url:
        raise ConfigError(
            "empty Postgres URL: set it to postgresql://user:password@host:port/dbname"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"malformed Postgres URL {redact(url)!r}: {exc}") from exc
    if dbname:
        params["dbname"] = dbname
    if application_name:
        params["application_name"] = application_name
    if connect_timeout_s:
        params.setdefault("connect_timeout", str(connect_timeout_s))
    if sslmode:
        params["sslmode"] = sslmode
    if sslrootcert:
        params["sslrootcert"] = sslrootcert
    if statement_timeout_ms is not None:
        options = params.get("options", "")
        params["options"] = f"{options} -c statement_timeout={int(statement_timeout_ms)}".strip()
    return make_conninfo(**params)


def connect(url: str, *, autocommit: bool = False, **settings) -> psycopg.Connection:
    """Open a connection; a failure names the server and database, never the password."""
    info = conninfo(url, **settings)
    try:
        return psycopg.connect(info, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        params = conninfo_to_dict(info)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        reason = redact(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
        raise ConnectionFailed(
            f"cannot connect to Postgres at {where} as {params.get('user', '?')!r}: {reason}"
        ) from exc


@contextlib.contextmanager
def connection(url: str, *, autocommit: bool = False, **settings) -> Iterator[psycopg.Connection]:
    """A connection that is always closed; commits on success, rolls back on error."""
    conn = connect(url, autocommit=autocommit, **settings)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database (as a URL-free conninfo)."""
    return conninfo(url, dbname=dbname, connect_timeout_s=None)


def database_exists(conn: psycopg.Connection, dbname: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return row is not None


def create_database(admin_url: str, dbname: str, *, template: str | None = None) -> None:
    """CREATE DATABASE (optionally from a template) unless it exists."""
    with connection(admin_url, autocommit=True) as conn:
        if database_exists(conn, dbname):
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)


def load_sql(path: Path) -> sql.SQL:
    """A .sql file as a psycopg SQL object (identifiers are composed with sql.Identifier)."""
    return sql.SQL(Path(path).read_text())
