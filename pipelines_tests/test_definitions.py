"""The code location loads, and every resource built in defs/resources.py works in a real run."""

import dagster as dg

from sqlgym_pipelines.definitions import defs
from sqlgym_pipelines.defs.resources import build_resources

RESOURCE_KEYS = {"source_pg", "target_pg", "s3", "athena", "neon", "snowflake", "secrets"}


def test_definitions_load_with_every_resource():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    assert set(definitions.resources) >= RESOURCE_KEYS


def test_every_resource_answers_in_a_dagster_run(stack):
    """Built from the stack's environment only, as `make dev` builds them."""
    seen: dict[str, object] = {}

    @dg.asset(required_resource_keys=RESOURCE_KEYS)
    def every_backend(context: dg.AssetExecutionContext) -> None:
        r = context.resources
        seen["source_pg"] = r.source_pg.server_version()
        with r.target_pg.get_connection() as conn:
            seen["target_db"] = conn.execute("SELECT current_database()").fetchone()[0]
        seen["buckets"] = sorted(b["Name"] for b in r.s3.list_buckets()["Buckets"])
        seen["athena"] = r.athena.query("SELECT 1 + 1 AS two").to_pylist()
        seen["neon"] = sorted(b.name for b in r.neon.list_branches())
        seen["secret"] = r.secrets.get_json("sqlgym/local/target-db")["dbname"]
        seen["snowflake"] = r.snowflake.fetch_arrow("SELECT 40 + 2 AS answer").to_pylist()

    result = dg.materialize([every_backend], resources=build_resources())
    assert result.success
    assert seen["source_pg"].startswith("15")
    assert seen["target_db"] == "warehouse"
    assert "sqlgym-lake-local" in seen["buckets"]
    assert seen["athena"] == [{"two": 2}]
    assert "main" in seen["neon"]
    assert seen["secret"] == "warehouse"
    assert [{k.lower(): v for k, v in row.items()} for row in seen["snowflake"]] == [{"answer": 42}]
