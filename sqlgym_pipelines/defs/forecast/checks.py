"""Checks of forecast_data per business_date: it matches Athena, and the seed's data rules hold."""

import dagster as dg

from sqlgym_pipelines.defs.forecast.assets import TABLE_KEY, location
from sqlgym_pipelines.defs.partitions import days_of, forecast_partitions
from sqlgym_pipelines.lib import forecast_athena, forecast_checks, pg
from sqlgym_pipelines.resources.athena import AthenaResource
from sqlgym_pipelines.resources.neon import NeonResource

RULES = {
    "forecast_data_y_50_not_null": (forecast_checks.y_50_nulls, "no NULL y_50"),
    "forecast_data_quantiles_ordered": (
        forecast_checks.quantiles_out_of_order,
        "y_05 <= y_50 <= y_95 where present",
    ),
    "forecast_data_state_is_two_letters": (
        forecast_checks.bad_states,
        "state is two upper-case letters",
    ),
    "forecast_data_natural_key_unique": (
        forecast_checks.duplicate_keys,
        "no duplicate (restaurant_id, inventory_item_id, business_date)",
    ),
}


def _url(neon: NeonResource) -> str:
    return neon.connection_url(neon.target().neon_branch)


def _rule_check(name: str, count, description: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name=name,
        asset=TABLE_KEY,
        partitions_def=forecast_partitions,
        blocking=True,
        description=description,
    )
    def _check(context, neon: NeonResource) -> dg.AssetCheckResult:
        days = days_of(context)
        with pg.connection(_url(neon)) as conn:
            bad = count(conn, days)
        return dg.AssetCheckResult(
            passed=bad == 0,
            description=f"{bad} row(s) break it" if bad else description,
            metadata={"violations": bad, "days": [str(d) for d in days]},
        )

    return _check


@dg.definitions
def forecast_checks_defs() -> dg.Definitions:
    @dg.asset_check(
        name="forecast_data_rows_match_athena",
        asset=TABLE_KEY,
        partitions_def=forecast_partitions,
        blocking=True,
        description="Rows per business_date in Neon equal Athena's.",
    )
    def rows_match_athena(context, athena: AthenaResource, neon: NeonResource):
        days = days_of(context)
        forecast_athena.ensure_tables(athena, location(neon))
        source = forecast_athena.day_counts(athena, days)
        with pg.connection(_url(neon)) as conn:
            loaded = forecast_checks.neon_counts(conn, days)
        differ = {str(d): {"athena": source[d], "neon": loaded[d]} for d in days
                  if source[d] != loaded[d]}  # fmt: skip
        return dg.AssetCheckResult(
            passed=not differ,
            description=f"{len(differ)} day(s) differ" if differ else "counts match",
            metadata={
                "athena_rows": sum(source.values()),
                "neon_rows": sum(loaded.values()),
                "differences": dg.MetadataValue.json(differ),
            },
        )

    @dg.asset_check(
        name="forecast_data_indexes_valid",
        asset=TABLE_KEY,
        description="The six indexes the seed names exist and are valid.",
    )
    def indexes_valid(neon: NeonResource):
        with pg.connection(_url(neon)) as conn:
            report = forecast_checks.indexes(conn)
        bad = {name: state for name, state in report.items() if state != "valid"}
        return dg.AssetCheckResult(
            passed=not bad,
            description=", ".join(f"{n} {s}" for n, s in bad.items()) or "all six valid",
            metadata={"indexes": dg.MetadataValue.json(report)},
        )

    rules = [_rule_check(name, count, text) for name, (count, text) in RULES.items()]
    return dg.Definitions(asset_checks=[rows_match_athena, indexes_valid, *rules])
