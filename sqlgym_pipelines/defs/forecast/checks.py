"""Checks of forecast_data per business_date: it matches Athena, and the seed's data rules hold."""

import dagster as dg

from sqlgym_pipelines.defs.forecast.assets import TABLE_KEY, location
from sqlgym_pipelines.defs.partitions import days_of, forecast_partitions
from sqlgym_pipelines.lib import forecast_athena, forecast_checks, pg
from sqlgym_pipelines.resources.athena import AthenaResource
from sqlgym_pipelines.resources.neon import NeonResource

# check name -> (lib rule, description)
RULES = {
    "forecast_data_y_50_not_null": ("y_50_not_null", "no NULL y_50"),
    "forecast_data_quantiles_ordered": ("quantiles_ordered", "y_05 <= y_50 <= y_95 where present"),
    "forecast_data_state_is_two_letters": (
        "state_is_two_letters",
        "state is two upper-case letters",
    ),
    "forecast_data_natural_key_unique": (
        forecast_checks.KEY_RULE,
        "no duplicate (restaurant_id, inventory_item_id, business_date)",
    ),
}


def _url(neon: NeonResource) -> str:
    return neon.connection_url(neon.target().neon_branch)


@dg.multi_asset_check(
    name="forecast_data_rules",
    specs=[
        dg.AssetCheckSpec(
            name,
            asset=TABLE_KEY,
            description=text,
            blocking=True,
            partitions_def=forecast_partitions,
        )
        for name, (_, text) in RULES.items()
    ],
    description="The seed's data rules, counted for the run's business_dates in one scan.",
)
def forecast_data_rules(context: dg.AssetCheckExecutionContext, neon: NeonResource):
    days = days_of(context)
    with pg.connection(_url(neon)) as conn:
        found = forecast_checks.violations(conn, days)
    for name, (rule, text) in RULES.items():
        bad = found[rule]
        yield dg.AssetCheckResult(
            asset_key=TABLE_KEY,
            check_name=name,
            passed=bad == 0,
            description=f"{bad} row(s) break it" if bad else text,
            metadata={"violations": bad, "days": [str(d) for d in days]},
        )


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

    return dg.Definitions(asset_checks=[rows_match_athena, indexes_valid, forecast_data_rules])
