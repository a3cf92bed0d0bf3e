"""AthenaResource in real Dagster runs: both engines, catalog from config, file or register_table."""

import json
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines_tests.test_athena_boto import inject, row
from sqlgym_pipelines.lib.athena_duckdb import s3_filesystem
from sqlgym_pipelines.lib.errors import ConfigError, QueryFailed
from sqlgym_pipelines.resources.athena import AthenaResource

SALES = pa.table(
    {
        "region": ["eu", "eu", "us"],
        "amount": pa.array(
            [Decimal("1.10"), Decimal("2.20"), Decimal("5.00")], pa.decimal128(10, 2)
        ),
    }
)


def resource(stack, **overrides) -> AthenaResource:
    """Configured the way defs/resources.py does it: endpoints and secrets from the environment."""
    settings = dict(
        engine="duckdb",
        region=stack.region,
        database="sqlgym",
        output_location=dg.EnvVar("ATHENA_OUTPUT_LOCATION"),
        endpoint_url=dg.EnvVar("SQLGYM_S3_ENDPOINT_URL"),
        s3_endpoint_url=dg.EnvVar("SQLGYM_S3_ENDPOINT_URL"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    return AthenaResource(**{**settings, **overrides})


def initialized(athena: AthenaResource) -> AthenaResource:
    """Outside a run Dagster has not resolved the EnvVars yet; this is what a run does first."""
    return athena.process_config_and_initialize()


def run_query(athena: AthenaResource, sql: str) -> pa.Table:
    """Materialize an asset that runs sql through the resource; return what the query gave."""

    @dg.asset
    def query_result(athena: AthenaResource) -> pa.Table:
        return athena.query(sql)

    result = dg.materialize([query_result], resources={"athena": athena})
    return result.output_for_node("query_result")


@pytest.fixture
def sales(stack, s3_bucket) -> str:
    fs = s3_filesystem(stack.s3_endpoint_url, stack.region, "testing", "testing")
    pq.write_table(SALES, f"{s3_bucket}/lake/sales/part-0.parquet", filesystem=fs)
    return f"s3://{s3_bucket}/lake/sales/"


def test_duckdb_engine_with_catalog_in_config(stack, sales):
    athena = resource(stack, catalog={"tables": {"sales": {"location": sales}}})
    table = run_query(
        athena,
        "SELECT region, sum(amount) AS total FROM sqlgym.sales GROUP BY region ORDER BY region",
    )
    assert table.to_pylist() == [
        {"region": "eu", "total": Decimal("3.30")},
        {"region": "us", "total": Decimal("5.00")},
    ]


def test_duckdb_engine_with_catalog_file(stack, sales, tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "tables": {
                    "sales": {
                        "location": sales,
                        "columns": {"region": "varchar", "amount": "decimal(10,2)"},
                    }
                }
            }
        )
    )
    table = run_query(
        resource(stack, catalog_path=str(path)),
        "SELECT count(*) AS n FROM sales WHERE region = 'eu'",
    )
    assert table.to_pylist() == [{"n": 2}]


def test_register_table_then_query_in_one_session(stack, sales):
    athena = initialized(resource(stack))
    athena.register_table("sales", sales, columns={"region": "varchar", "amount": "decimal(10,2)"})
    with athena.session() as engine:
        assert engine.query("SELECT max(amount) AS top FROM sales").to_pylist() == [
            {"top": Decimal("5.00")}
        ]
        assert engine.query(
            "SELECT region FROM sales WHERE amount < ?", [Decimal("2")]
        ).to_pylist() == [{"region": "eu"}]


def test_athena_engine_against_moto(stack):
    inject(
        stack,
        [row("region", "total"), row("eu", "3.30")],
        [("region", "varchar", 0, 0), ("total", "decimal", 12, 2)],
    )
    athena = resource(stack, engine="athena", poll_initial_s=0.01)
    table = run_query(athena, "SELECT region, sum(amount) AS total FROM sales GROUP BY region")
    assert table.to_pylist() == [{"region": "eu", "total": Decimal("3.30")}]
    assert table.schema.field("total").type == pa.decimal128(12, 2)


def test_invalid_engine_is_refused(stack):
    with pytest.raises(ValidationError, match="Input should be 'athena' or 'duckdb'"):
        resource(stack, engine="presto")

    @dg.asset
    def needs_athena(athena: AthenaResource) -> None: ...

    with pytest.raises(dg.DagsterInvalidConfigError, match="engine not in enum"):
        dg.materialize(
            [needs_athena],
            resources={"athena": AthenaResource.configure_at_launch()},
            run_config={"resources": {"athena": {"config": {"engine": "presto"}}}},
        )


def test_bad_sql_and_unknown_tables_fail_with_clear_messages(stack, sales):
    athena = initialized(resource(stack, catalog={"tables": {"sales": {"location": sales}}}))
    with pytest.raises(
        QueryFailed,
        match=r"cannot parse Athena SQL.*incomplete Where.*'SELECT region FROM sales WHERE'",
    ):
        athena.query("SELECT region FROM sales WHERE")
    with pytest.raises(QueryFailed, match=r"unknown table 'orders': the catalog has sales"):
        athena.query("SELECT * FROM orders")


def test_bad_catalog_config_is_a_config_error(stack, sales):
    athena = initialized(
        resource(stack, catalog={"tables": {"sales": {"location": sales, "format": "orc"}}})
    )
    with pytest.raises(ConfigError, match="format 'orc' is not supported"):
        athena.query("SELECT 1")
    with pytest.raises(ConfigError, match="is for engine 'duckdb'"):
        resource(stack, engine="athena").register_table("sales", sales)
