"""The local stack resets pools Dagster created from an older pools.default_limit."""

import shutil

import dagster as dg

from sqlgym_pipelines.local.provision import _environ, reset_stale_default_pools
from sqlgym_pipelines.local.stack import PROJECT_ROOT


def test_pools_from_an_older_default_limit_are_reset_and_runs_can_claim_them(pg_db, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    yaml = (PROJECT_ROOT / "dagster.yaml").read_text()
    assert "default_limit: 1" in yaml
    (old / "dagster.yaml").write_text(yaml.replace("default_limit: 1", "default_limit: 4"))
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", new / "dagster.yaml")
    with _environ(DAGSTER_PG_URL=pg_db), dg.DagsterInstance.from_config(str(old)) as inst:
        assert inst.event_log_storage.initialize_concurrency_limit_to_default("lake_sync_t")
        inst.event_log_storage.set_concurrency_slots("mine", 3)  # set by hand: kept
    assert reset_stale_default_pools(new, pg_db) == ["lake_sync_t"]
    assert reset_stale_default_pools(new, pg_db) == []  # idempotent
    with _environ(DAGSTER_PG_URL=pg_db), dg.DagsterInstance.from_config(str(new)) as inst:
        storage = inst.event_log_storage
        assert storage.initialize_concurrency_limit_to_default("lake_sync_t")  # no longer fails
        limits = {p.name: (p.limit, p.from_default) for p in storage.get_pool_limits()}
    assert limits == {"lake_sync_t": (1, True), "mine": (3, False)}
