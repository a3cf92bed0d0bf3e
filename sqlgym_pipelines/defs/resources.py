"""THE one place resources are built: every endpoint and secret comes from the environment.

The local stack (`make dev`, tests) exports its endpoints (see .local/stack.env); production
sets the same variables to real AWS / Neon / Snowflake (see .env.example). Nothing here says
"if testing": only configuration picks the backend.
"""

import os

import dagster as dg

from sqlgym_pipelines.resources.athena import AthenaResource
from sqlgym_pipelines.resources.lake import LakeResource
from sqlgym_pipelines.resources.neon import NeonResource
from sqlgym_pipelines.resources.postgres import PostgresResource
from sqlgym_pipelines.resources.s3 import S3Resource
from sqlgym_pipelines.resources.secrets import SecretsResource
from sqlgym_pipelines.resources.snowflake import SnowflakeResource


def _env(name: str, default: str | None = None) -> str | None:
    """A non-secret setting, read when definitions load."""
    return os.environ.get(name) or default


def _secret(name: str) -> dg.EnvVar | None:
    """A secret: resolved by Dagster at run time, never stored in run config; None if unset."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    region = _env("AWS_REGION", "us-east-2")
    aws = {
        "region_name": region,
        "aws_access_key_id": _secret("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": _secret("AWS_SECRET_ACCESS_KEY"),
    }
    s3_endpoint = _env("SQLGYM_S3_ENDPOINT_URL")
    s3 = S3Resource(endpoint_url=s3_endpoint, **aws)
    return {
        "source_pg": PostgresResource(url=dg.EnvVar("SQLGYM_SOURCE_PG_URL")),
        "target_pg": PostgresResource(url=dg.EnvVar("SQLGYM_TARGET_PG_URL")),
        "s3": s3,
        "lake": LakeResource(
            s3=s3,
            bucket=_env("SQLGYM_LAKE_BUCKET", ""),
            prefix=_env("SQLGYM_LAKE_PREFIX", "postgres-sync"),
        ),
        "athena": AthenaResource(
            engine=_env("SQLGYM_ATHENA_ENGINE", "athena"),
            region=region,
            database=_env("ATHENA_DB_NAME", "default"),
            workgroup=_env("ATHENA_WORKGROUP", "primary"),
            output_location=_env("ATHENA_OUTPUT_LOCATION"),
            s3_endpoint_url=s3_endpoint,
            catalog_path=_env("SQLGYM_ATHENA_CATALOG"),
            aws_access_key_id=aws["aws_access_key_id"],
            aws_secret_access_key=aws["aws_secret_access_key"],
        ),
        "neon": NeonResource(
            mode=_env("NEON_MODE", "api"),
            api_key=_secret("NEON_API_KEY"),
            project_id=_env("NEON_PROJECT_ID"),
            database_name=_env("NEON_DATABASE_NAME", "neondb"),
            role_name=_env("NEON_ROLE_NAME", "neondb_owner"),
            local_admin_url=_secret("NEON_LOCAL_PG_URL"),
            git_branch=_env("SQLGYM_GIT_BRANCH"),
        ),
        "snowflake": SnowflakeResource(
            mode=_env("SNOWFLAKE_MODE", "snowflake"),
            account=_env("SNOWFLAKE_ACCOUNT", ""),
            user=_env("SNOWFLAKE_USER", ""),
            password=_secret("SNOWFLAKE_PASSWORD"),
            warehouse=_env("SNOWFLAKE_WAREHOUSE"),
            database=_env("SNOWFLAKE_DATABASE"),
            schema=_env("SNOWFLAKE_SCHEMA"),
            role=_env("SNOWFLAKE_ROLE"),
            fakesnow_db_path=_env("SNOWFLAKE_FAKESNOW_DB_PATH"),
        ),
        "secrets": SecretsResource(
            backend=_env("SQLGYM_SECRETS_BACKEND", "aws"), endpoint_url=s3_endpoint, **aws
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
