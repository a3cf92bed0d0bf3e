"""SecretsResource: JSON secrets from AWS Secrets Manager, with environment variables as fallback."""

import json
import os
import re

import boto3
import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, field_validator

from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed


def env_var_for(name: str) -> str:
    """The environment variable that stands in for a secret: 'sqlgym/prod/db' -> SQLGYM_SECRET_SQLGYM_PROD_DB."""
    return "SQLGYM_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()


class SecretsResource(dg.ConfigurableResource):
    """get_json(name) / get_string(name) by secret name; never log what it returns."""

    backend: str = Field(default="aws", description="'aws' (Secrets Manager) or 'env'")
    region_name: str | None = None
    endpoint_url: str | None = Field(default=None, description="moto's server locally")
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    env_fallback: bool = Field(
        default=True,
        description="if a secret is not in Secrets Manager, read its SQLGYM_SECRET_<NAME> env var",
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in ("aws", "env"):
            raise ValueError(f"secrets backend {value!r} is not 'aws' or 'env'")
        return value

    def get_string(self, name: str) -> str:
        if self.backend == "aws":
            value = self._from_aws(name)
            if value is not None:
                return value
        value = os.environ.get(env_var_for(name))
        if value is None:
            where = "Secrets Manager or " if self.backend == "aws" else ""
            raise ConfigError(
                f"secret {name!r} not found in {where}environment variable {env_var_for(name)}; "
                "create it or correct the name"
            )
        return value

    def get_json(self, name: str) -> dict:
        raw = self.get_string(name)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"secret {name!r} is not valid JSON ({exc.msg} at {exc.pos})"
            ) from exc
        if not isinstance(value, dict):
            raise ConfigError(f"secret {name!r} is JSON but not an object ({type(value).__name__})")
        return value

    def _from_aws(self, name: str) -> str | None:
        client = boto3.client(
            "secretsmanager",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
        )
        try:
            response = client.get_secret_value(SecretId=name)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ResourceNotFoundException" and self.env_fallback:
                return None
            raise ConfigError(f"Secrets Manager refused secret {name!r}: {code}") from exc
        except BotoCoreError as exc:
            raise ConnectionFailed(f"cannot reach Secrets Manager for {name!r}: {exc}") from exc
        finally:
            client.close()
        if "SecretString" not in response:
            raise ConfigError(f"secret {name!r} is binary; store it as a JSON string")
        return response["SecretString"]
