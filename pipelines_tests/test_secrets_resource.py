"""SecretsResource: JSON secrets from moto's Secrets Manager, env-var fallback, clear errors."""

import json
import os

import pytest

from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.local.provision import aws_client
from sqlgym_pipelines.resources.secrets import SecretsResource, env_var_for


@pytest.fixture
def secrets_res(stack) -> SecretsResource:
    return SecretsResource(
        backend="aws",
        endpoint_url=stack.s3_endpoint_url,
        region_name=stack.region,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def test_reads_the_provisioned_secret(secrets_res, stack):
    value = secrets_res.get_json("sqlgym/local/source-db")
    assert value == {"url": stack.url_for("sqlgym"), "dbname": "sqlgym"}


def test_json_and_string_secrets(secrets_res, stack):
    sm = aws_client(stack, "secretsmanager")
    sm.create_secret(Name="test/api", SecretString=json.dumps({"key": "abc", "n": 3}))
    sm.create_secret(Name="test/plain", SecretString="not json")
    assert secrets_res.get_json("test/api") == {"key": "abc", "n": 3}
    assert secrets_res.get_string("test/plain") == "not json"
    with pytest.raises(ConfigError, match="'test/plain' is not valid JSON"):
        secrets_res.get_json("test/plain")


def test_env_fallback_and_missing(secrets_res, monkeypatch):
    assert env_var_for("sqlgym/prod/db-url") == "SQLGYM_SECRET_SQLGYM_PROD_DB_URL"
    monkeypatch.setenv("SQLGYM_SECRET_ONLY_IN_ENV", '{"user": "u"}')
    assert secrets_res.get_json("only/in-env") == {"user": "u"}
    assert SecretsResource(backend="env").get_json("only-in-env") == {"user": "u"}
    with pytest.raises(ConfigError, match="secret 'nowhere' not found.*SQLGYM_SECRET_NOWHERE"):
        secrets_res.get_string("nowhere")
    strict = secrets_res.model_copy(update={"env_fallback": False})
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        strict.get_string("only/in-env")
