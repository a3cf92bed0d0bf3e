"""Asset checks for every lake table (the seed's data_validator), per daily partition."""

import dagster as dg

from sqlgym_pipelines.defs.partitions import daily_partitions, days_of
from sqlgym_pipelines.defs.postgres_sync.assets import lake_key, sync_config
from sqlgym_pipelines.lib import lake_checks, pg
from sqlgym_pipelines.lib.lake_checks import CheckOutcome, Partitions
from sqlgym_pipelines.lib.pg_arrow import plan_columns, target_schema
from sqlgym_pipelines.lib.pg_catalog import table_columns
from sqlgym_pipelines.lib.sync_config import SyncConfig, TableConfig, validate_against_catalog
from sqlgym_pipelines.resources.lake import LakeResource
from sqlgym_pipelines.resources.postgres import PostgresResource


def _result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
            for k, v in outcome.metadata.items()
        },  # fmt: skip
    )


def _resolve(conn, table: TableConfig):
    only = SyncConfig(tables=(sync_config().table(table.name),), source=sync_config().source)
    return validate_against_catalog(conn, only)[0]


def build_checks(table: TableConfig) -> list[dg.AssetChecksDefinition]:
    key = lake_key(table)
    common = {"asset": key, "partitions_def": daily_partitions}

    def parts(context, lake: LakeResource) -> Partitions:
        return Partitions(lake.store(), lake.s3.pyarrow_filesystem(), table.name, days_of(context))

    @dg.asset_check(name=f"{table.name}_rows_match_source", blocking=True, **common)
    def rows_match_source(context, lake: LakeResource, source_pg: PostgresResource):
        """Files hold the source's rows for the synced window; no current source row is missing."""
        with pg.connection(source_pg.url) as conn:
            outcome = lake_checks.rows_match_source(
                parts(context, lake), conn, _resolve(conn, table)
            )
        return _result(outcome, dg.AssetCheckSeverity.ERROR)

    @dg.asset_check(name=f"{table.name}_versions_unique", blocking=True, **common)
    def versions_unique(context, lake: LakeResource, source_pg: PostgresResource):
        """No duplicate pk (full) or row version (incremental) in a partition."""
        with pg.connection(source_pg.url) as conn:
            resolved = _resolve(conn, table)
        return _result(
            lake_checks.versions_unique(parts(context, lake), resolved), dg.AssetCheckSeverity.ERROR
        )

    @dg.asset_check(name=f"{table.name}_columns_complete", blocking=True, **common)
    def columns_complete(context, lake: LakeResource, source_pg: PostgresResource):
        """NULL analysis; no NULL in a column the source declares NOT NULL."""
        with pg.connection(source_pg.url) as conn:
            columns = table_columns(conn, table.schema, table.source_table)
        not_null = {c.name for c in columns if c.not_null}
        return _result(
            lake_checks.columns_complete(parts(context, lake), not_null),
            dg.AssetCheckSeverity.ERROR,
        )

    @dg.asset_check(name=f"{table.name}_schema_matches_source", **common)
    def schema_matches_source(context, lake: LakeResource, source_pg: PostgresResource):
        """Data types follow the declared mapping; new, dropped or retyped columns are reported."""
        with pg.connection(source_pg.url) as conn:
            resolved = _resolve(conn, table)
            columns = [c for c in table_columns(conn, table.schema, table.source_table)
                       if c.name in set(resolved.columns)]  # fmt: skip
        expected = target_schema(plan_columns(columns))
        return _result(
            lake_checks.schema_matches(parts(context, lake), expected), dg.AssetCheckSeverity.WARN
        )

    checks = [rows_match_source, versions_unique, columns_complete, schema_matches_source]
    if table.incremental:

        @dg.asset_check(name=f"{table.name}_cursor_covered", **common)
        def cursor_covered(context, source_pg: PostgresResource):
            """Rows with a NULL cursor or one before SQLGYM_PARTITION_START are in no partition."""
            with pg.connection(source_pg.url) as conn:
                outcome = lake_checks.cursor_coverage(
                    conn, _resolve(conn, table), daily_partitions.start.date()
                )
            return _result(outcome, dg.AssetCheckSeverity.WARN)

        checks.append(cursor_covered)
    return checks


@dg.definitions
def postgres_sync_checks() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[c for t in sync_config().enabled_tables() for c in build_checks(t)]
    )
