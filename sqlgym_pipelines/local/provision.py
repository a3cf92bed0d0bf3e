"""Creates what the pipelines expect on a fresh stack: databases, buckets, secrets."""

import contextlib
import json
import os
import shutil
from pathlib import Path

import boto3
import dagster as dg
from botocore.exceptions import ClientError

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.local.stack import PROJECT_ROOT, StackInfo

DATABASES = ("dagster", "sqlgym", "warehouse")
NEON_MAIN_DATABASE = "neon_main"  # the local Neon `main` branch (see lib/neon_local.py)


def aws_client(info: StackInfo, service: str):
    env = info.env()
    return boto3.client(
        service,
        endpoint_url=info.s3_endpoint_url,
        region_name=info.region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def buckets(info: StackInfo) -> list[str]:
    env = info.env()
    return [
        env["SQLGYM_LAKE_BUCKET"],
        env["SQLGYM_DATALAKE_BUCKET"],
        env["SQLGYM_CSV_BUCKET"],
        env["ATHENA_OUTPUT_LOCATION"].removeprefix("s3://").split("/")[0],
    ]


def prepare_dagster_home(home: Path) -> None:
    """DAGSTER_HOME with the project's dagster.yaml (Postgres storage on the stack)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")


def reset_stale_default_pools(home: Path, dagster_pg_url: str) -> list[str]:
    """Pools Dagster created from an earlier `pools.default_limit` of dagster.yaml, deleted so
    that it creates them again from the current one; returns their names.

    Dagster 1.13 re-applies a changed default with an INSERT then, on the unique violation, an
    UPDATE in the same transaction, which Postgres has aborted: every run naming such a pool
    failed (InFailedSqlTransaction) until the pool was reset.
    """
    with _environ(DAGSTER_PG_URL=dagster_pg_url), dg.DagsterInstance.from_config(str(home)) as inst:
        default = inst.global_op_concurrency_default_limit
        stale = [
            pool.name
            for pool in inst.event_log_storage.get_pool_limits()
            if pool.from_default and pool.limit != default
        ]
        for name in stale:
            inst.event_log_storage.delete_concurrency_limit(name)
    return stale


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def provision(info: StackInfo) -> None:
    """Idempotent: safe on every `up`."""
    env = info.env()
    prepare_dagster_home(Path(env["DAGSTER_HOME"]))
    for dbname in (*DATABASES, NEON_MAIN_DATABASE):
        pg.create_database(info.pg_url, dbname)
    reset_stale_default_pools(Path(env["DAGSTER_HOME"]), env["DAGSTER_PG_URL"])
    s3 = aws_client(info, "s3")
    for bucket in buckets(info):
        try:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": info.region}
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
    sm = aws_client(info, "secretsmanager")
    for name, dbname in (
        ("sqlgym/local/source-db", "sqlgym"),
        ("sqlgym/local/target-db", "warehouse"),
    ):
        value = json.dumps({"url": info.url_for(dbname), "dbname": dbname})
        try:
            sm.create_secret(Name=name, SecretString=value)
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=name, SecretString=value)
