"""Materialize the whole asset graph for one date, headless, and print a summary (`make demo`).

Runs go to the Dagster instance in $DAGSTER_HOME, so `make dev` shows them afterwards.
"""

import argparse
import datetime as dt
import itertools
import sys

import dagster as dg

from sqlgym_pipelines.definitions import defs as load_defs

SUMMARY_KEYS = ("rows", "row_count", "dagster/row_count", "bytes", "files")


SNAPSHOT_TAG = "sqlgym/partition_semantics"


def _steps(graph) -> list[tuple[tuple, list[dg.AssetKey]]]:
    """Keys in dependency order, cut where the partitions definition changes (one run each).

    A snapshot asset (a full-sync table) can only make today's partition, so it gets its own
    step on today's date rather than a date its data would not represent.
    """

    def kind(key):
        node = graph.get(key)
        return node.partitions_def, node.tags.get(SNAPSHOT_TAG) == "snapshot"

    def order(key):  # keys of one level share no dependency: bunch them by kind
        pdef, snapshot = kind(key)
        return repr(pdef), snapshot

    ordered = [
        key
        for level in graph.toposorted_asset_keys_by_level
        for key in sorted((k for k in level if k in graph.materializable_asset_keys), key=order)
    ]

    return [(k, list(keys)) for k, keys in itertools.groupby(ordered, key=kind)]


def materialize_all(date: str) -> int:
    definitions = load_defs()
    graph = definitions.resolve_asset_graph()
    steps = _steps(graph)
    if not steps:
        print("no assets are defined yet: nothing to materialize")
        return 0
    instance = dg.DagsterInstance.get()
    failed = False
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for (partitions_def, snapshot), keys in steps:
        job = definitions.resolve_implicit_job_def_def_for_assets(keys)
        partition_key = (today if snapshot else date) if partitions_def else None
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            asset_selection=keys,
            raise_on_error=False,
        )
        failed |= not result.success
        for event in result.get_asset_materialization_events():
            mat = event.materialization
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
