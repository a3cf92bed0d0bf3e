"""Blocking checks on each staged partition (the audit of write-audit-publish): a failed one
stops the run before the published table is touched."""

import dagster as dg

from sqlgym_pipelines.defs.csv_ingest.assets import (
    csv_config,
    failing_fast_on_bad_data,
    staged_key,
    table_key,
    target_url,
)
from sqlgym_pipelines.defs.partitions import daily_partitions, days_of
from sqlgym_pipelines.lib import csv_ingest, pg
from sqlgym_pipelines.lib.csv_config import Dataset
from sqlgym_pipelines.resources.postgres import PostgresResource
from sqlgym_pipelines.resources.secrets import SecretsResource

VERDICTS = {
    "reject_ratio_within_limit": "Rejected rows / rows read stays within max_reject_ratio.",
    "min_rows": "At least the rule's minimum number of rows is staged.",
    "key_unique": "The target key is unique among the staged rows (upsert keeps the last).",
}


def _names(dataset: Dataset) -> list[str]:
    names = ["reject_ratio_within_limit"]
    if any(rule.check == "min_rows" for rule in dataset.rules):
        names.append("min_rows")
    if dataset.target.key:
        names.append("key_unique")
    return names


def _combine(verdicts: list[csv_ingest.Verdict]) -> dg.AssetCheckResult:
    """One result over the run's days: passes when every day passes."""
    return dg.AssetCheckResult(
        passed=all(v.passed for v in verdicts),
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(v.description for v in verdicts),
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
            for k, v in verdicts[-1].metadata.items()
        },
    )


def build_check(dataset: Dataset, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name=f"{dataset.name}_{name}",
        asset=staged_key(dataset),
        partitions_def=daily_partitions,
        blocking=True,
        description=VERDICTS[name],
    )
    def _check(context, target_pg: PostgresResource, secrets: SecretsResource):
        verdicts = []
        with failing_fast_on_bad_data():
            url = target_url(dataset, target_pg, secrets)
            with pg.connection(url) as conn:
                for day in days_of(context):
                    found = csv_ingest.audit(conn, csv_config(), dataset, day)
                    verdicts.extend(v for v in found if v.name == name)
        return _combine(verdicts)

    return _check


def build_table_check(dataset: Dataset) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name=f"{dataset.table}_key_unique",
        asset=table_key(dataset),
        description=f"No duplicate ({', '.join(dataset.target.key)}) in the published table.",
    )
    def _check(target_pg: PostgresResource, secrets: SecretsResource):
        with (
            failing_fast_on_bad_data(),
            pg.connection(target_url(dataset, target_pg, secrets)) as conn,
        ):
            dupes = csv_ingest.published_duplicates(conn, dataset)
        return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicate_keys": dupes})

    return _check


@dg.definitions
def csv_ingest_checks() -> dg.Definitions:
    checks = []
    for dataset in csv_config().datasets.values():
        checks.extend(build_check(dataset, name) for name in _names(dataset))
        if dataset.target.key:
            checks.append(build_table_check(dataset))
    return dg.Definitions(asset_checks=checks)
