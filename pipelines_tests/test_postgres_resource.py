"""PostgresResource against the real local cluster."""

import psycopg
import pytest

from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed
from sqlgym_pipelines.resources.postgres import PostgresResource


def test_connection_commits_and_carries_session_settings(pg_db):
    res = PostgresResource(url=pg_db, application_name="sqlgym-test", statement_timeout_ms=1500)
    with res.get_connection() as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, qty numeric(10,2))")
        conn.execute("INSERT INTO items VALUES (1, 2.50)")
    with res.get_connection() as conn:
        assert conn.execute("SELECT qty::text FROM items").fetchone() == ("2.50",)
        assert conn.execute("SHOW application_name").fetchone() == ("sqlgym-test",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1500ms",)
    assert res.server_version().startswith("15")


def test_error_rolls_back_and_closes(pg_db):
    res = PostgresResource(url=pg_db)
    with res.get_connection() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with pytest.raises(psycopg.errors.UniqueViolation), res.get_connection() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert conn.closed
    with res.get_connection() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_statement_timeout_cancels_long_queries(pg_db):
    res = PostgresResource(url=pg_db, statement_timeout_ms=200)
    with pytest.raises(psycopg.errors.QueryCanceled), res.get_connection() as conn:
        conn.execute("SELECT pg_sleep(5)")


def test_bad_credentials_name_the_server_not_the_password(stack):
    url = stack.url_for("sqlgym").replace(stack.pg_url.split(":")[2].split("@")[0], "s3cr3t-wrong")
    with pytest.raises(ConnectionFailed) as err:
        PostgresResource(url=url).server_version()
    message = str(err.value)
    assert "password authentication failed" in message and "127.0.0.1" in message
    assert "s3cr3t-wrong" not in message


def test_unreachable_server_and_malformed_url():
    with pytest.raises(ConnectionFailed, match="127.0.0.1:1/"):
        PostgresResource(
            url="postgresql://u:p@127.0.0.1:1/db", connect_timeout_s=2
        ).server_version()
    with pytest.raises(ConfigError, match="malformed Postgres URL.*invalid URI query parameter"):
        PostgresResource(url="postgresql://u:p@h:5432/db?colour=red").server_version()
    with pytest.raises(ConfigError, match="malformed Postgres URL .mysql://u@h/db"):
        PostgresResource(url="mysql://u@h/db").server_version()


def test_tls_required_against_a_server_without_tls(stack):
    with pytest.raises(ConnectionFailed, match="SSL"):
        PostgresResource(url=stack.pg_url, sslmode="require").server_version()
