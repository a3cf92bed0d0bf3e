"""Fixtures: one real local stack (Postgres cluster + moto server) for the whole test session."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.local.provision import aws_client, provision
from sqlgym_pipelines.local.stack import LocalStack, StackInfo
from sqlgym_pipelines.resources.snowflake import SnowflakeResource


@pytest.fixture(scope="session")
def stack_root() -> Path:
    # Not pytest's 0700 basetemp: as root, the postgres OS user must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix="sqlgym-test-stack-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def local_stack(stack_root) -> LocalStack:
    stack = LocalStack(stack_root)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack(local_stack) -> StackInfo:
    """The running stack; its endpoints are also exported to os.environ for EnvVar-based resources."""
    info = local_stack.up(fast=True)
    provision(info)
    saved = dict(os.environ)
    os.environ.update(info.env())
    yield info
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def pg_db(stack) -> str:
    """URL of a fresh, empty database (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.create_database(stack.pg_url, name)
    yield stack.url_for(name)
    with pg.connection(stack.pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def s3_bucket(stack) -> str:
    """A fresh, empty bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    aws_client(stack, "s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": stack.region}
    )
    return name


@pytest.fixture
def fake_snowflake(tmp_path) -> SnowflakeResource:
    """Snowflake as fakesnow, its database files in the test's own folder."""
    return SnowflakeResource(
        mode="fakesnow",
        database="SQLGYM",
        schema="CONFLICTS",
        fakesnow_db_path=str(tmp_path / "fakesnow"),
    )
