"""The local stack starts real servers, reuses them, stops exactly them, and explains failures."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConnectionFailed, StackError
from sqlgym_pipelines.local.stack import LocalStack, _alive


@pytest.fixture
def fresh_root():
    root = Path(tempfile.mkdtemp(prefix="sqlgym-stack-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    LocalStack(root).down()
    shutil.rmtree(root, ignore_errors=True)


def _s3(info):
    return boto3.client(
        "s3",
        endpoint_url=info.s3_endpoint_url,
        region_name=info.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _listening(url_or_port) -> bool:
    port = int(str(url_or_port).rsplit(":", 1)[-1].split("/")[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_answers_reuses_and_down_leaves_nothing(fresh_root):
    stack = LocalStack(fresh_root)
    info = stack.up(fast=True)

    with pg.connection(info.pg_url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("one",), ("two",)]
    s3 = _s3(info)
    s3.create_bucket(
        Bucket="stack-test", CreateBucketConfiguration={"LocationConstraint": info.region}
    )
    s3.put_object(Bucket="stack-test", Key="x/y.bin", Body=b"\x00payload")
    assert s3.get_object(Bucket="stack-test", Key="x/y.bin")["Body"].read() == b"\x00payload"

    again = LocalStack(fresh_root).up(fast=True)  # a second `up` while it runs reuses it
    assert (again.pg_pid, again.moto_pid, again.pg_url) == (info.pg_pid, info.moto_pid, info.pg_url)

    env_file = (fresh_root / "stack.env").read_text()
    assert f"SQLGYM_S3_ENDPOINT_URL={info.s3_endpoint_url}" in env_file
    assert "SQLGYM_SOURCE_PG_URL=" in env_file

    stack.down()
    assert not _alive(info.moto_pid, "moto_process")
    assert not _alive(info.pg_pid, "postgres")  # gone (a zombie awaiting init counts as gone)
    assert not _listening(info.pg_url) and not _listening(info.s3_endpoint_url)
    assert not (fresh_root / "stack.env").exists()

    # data survives a restart on the kept data dir
    info2 = stack.up(fast=True)
    with pg.connection(info2.pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    stack.down()


def test_half_dead_stack_restarts_cleanly(fresh_root):
    stack = LocalStack(fresh_root)
    info = stack.up(fast=True)
    os.kill(info.moto_pid, 9)
    os.waitpid(info.moto_pid, 0)
    assert stack.info() is None  # not reported as running
    info2 = stack.up(fast=True)
    assert info2.moto_pid != info.moto_pid
    assert _s3(info2).list_buckets()["Buckets"] == []
    with pg.connection(info2.pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cli_up_status_env_down(fresh_root):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "sqlgym_pipelines.local", "--root", str(fresh_root), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("status").returncode == 1
    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert "local stack started" in up.stdout
    assert "already running" in cli("up").stdout
    env = dict(line.split("=", 1) for line in cli("env").stdout.splitlines())
    with pg.connection(env["SQLGYM_SOURCE_PG_URL"]) as conn:  # provisioned databases exist
        assert conn.execute("SELECT current_database()").fetchone() == ("sqlgym",)
    assert cli("status").returncode == 0
    assert cli("down").returncode == 0
    assert cli("status").returncode == 1


def test_busy_port_is_reported_with_the_fix(fresh_root, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("SQLGYM_PG_PORT", str(port))
        with pytest.raises(StackError, match=rf"port {port} .* already in use"):
            LocalStack(fresh_root).up(fast=True)
        monkeypatch.delenv("SQLGYM_PG_PORT")
        monkeypatch.setenv("SQLGYM_MOTO_PORT", str(port))
        with pytest.raises(StackError, match="SQLGYM_MOTO_PORT"):
            LocalStack(fresh_root).up(fast=True)
    assert LocalStack(fresh_root).info() is None


def test_missing_binaries_are_reported(fresh_root, monkeypatch):
    monkeypatch.setenv("SQLGYM_PG_BIN", "/nonexistent/bin")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    with pytest.raises(StackError, match="initdb.*not found.*SQLGYM_PG_BIN=/nonexistent/bin"):
        LocalStack(fresh_root).up(fast=True)


def test_foreign_data_dir_is_refused(fresh_root):
    data = fresh_root / "pg" / "data"
    data.mkdir(parents=True)
    (data / "notes.txt").write_text("not a cluster")
    with pytest.raises(StackError, match="not a PostgreSQL data directory"):
        LocalStack(fresh_root).up(fast=True)
    assert (data / "notes.txt").exists()  # nothing of the user's was deleted


def test_external_server_with_bad_credentials(fresh_root, stack, monkeypatch):
    bad = stack.pg_url.replace(stack.pg_url.split("@")[0].split(":")[-1], "wrong-password")
    monkeypatch.setenv("SQLGYM_PG_URL", bad)
    with pytest.raises(ConnectionFailed, match="password authentication failed") as err:
        LocalStack(fresh_root).up(fast=True)
    assert "wrong-password" not in str(err.value)


def test_external_server_is_used_not_started(fresh_root, stack, monkeypatch):
    monkeypatch.setenv("SQLGYM_PG_URL", stack.pg_url)
    info = LocalStack(fresh_root).up(fast=True)
    assert info.pg_managed is False and info.pg_pid is None
    assert not (fresh_root / "pg" / "data").exists()
    LocalStack(fresh_root).down()
    with pg.connection(stack.pg_url) as conn:  # down did not stop a server it did not start
        assert conn.execute("SELECT 1").fetchone() == (1,)
