"""Materialize the whole asset graph for one date, headless, and print a summary (`make demo`).

Runs go to the Dagster instance in $DAGSTER_HOME, so `make dev` shows them afterwards.
"""

import argparse
import itertools
import sys

import dagster as dg

from sqlgym_pipelines.definitions import defs as load_defs

SUMMARY_KEYS = ("rows", "row_count", "dagster/row_count", "bytes", "files")


def _steps(graph) -> list[tuple[object, list[dg.AssetKey]]]:
    """Keys in dependency order, cut where the partitions definition changes (one run each)."""
    ordered = [
        key
        for level in graph.toposorted_asset_keys_by_level
        for key in level
        if key in graph.materializable_asset_keys
    ]
    pdef = lambda key: graph.get(key).partitions_def  # noqa: E731
    return [(p, list(keys)) for p, keys in itertools.groupby(ordered, key=pdef)]


def materialize_all(date: str) -> int:
    definitions = load_defs()
    graph = definitions.resolve_asset_graph()
    steps = _steps(graph)
    if not steps:
        print("no assets are defined yet: nothing to materialize")
        return 0
    instance = dg.DagsterInstance.get()
    failed = False
    for partitions_def, keys in steps:
        job = definitions.resolve_implicit_job_def_def_for_assets(keys)
        partition_key = date if partitions_def else None
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            asset_selection=keys,
            raise_on_error=False,
        )
        failed |= not result.success
        for event in result.get_asset_materialization_events():
            mat = event.asset_materialization
            meta = {k: v.value for k, v in mat.metadata.items() if k in SUMMARY_KEYS}
            print(f"  {mat.asset_key.to_user_string():60} {partition_key or '-':10} {meta}")
        status = "ok" if result.success else "FAILED"
        print(f"{status}: {len(keys)} assets, partition {partition_key or '(none)'}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", required=True, help="YYYY-MM-DD")
    sys.exit(materialize_all(parser.parse_args().date))


if __name__ == "__main__":
    main()
