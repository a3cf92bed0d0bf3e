"""The lake's commit protocol on moto's S3: commit once, publish idempotently, recover after crashes."""

import datetime as dt

import pytest

from sqlgym_pipelines.lib.lake_layout import (
    DataFile,
    LakeLocation,
    PartitionSync,
    SyncRecord,
    sync_id_for,
)
from sqlgym_pipelines.lib.lake_store import CommitConflict, LakeStore
from sqlgym_pipelines.lib.s3_upload import PendingUpload
from sqlgym_pipelines.local.provision import aws_client

DAY = dt.date(2025, 10, 24)
T0 = dt.datetime(2025, 10, 24, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(stack, s3_bucket) -> LakeStore:
    return LakeStore(aws_client(stack, "s3"), LakeLocation(s3_bucket))


def _keys(store: LakeStore) -> set[str]:
    return {o["Key"] for o in store._list_keys("")}


def _stage(store: LakeStore, at: dt.datetime, *, previous: list[DataFile] = (), replace=False):
    """Stage one file for DAY as a sync would, and build its record."""
    sync_id = sync_id_for(at)
    loc = store.loc
    store.begin("users", sync_id, at)
    final = loc.data_key("users", DAY, "incremental", sync_id)
    upload = PendingUpload(store.s3, loc.bucket, final)
    upload.write(b"PAR1 fake parquet PAR1")
    upload.close()
    added = [DataFile(key=final, rows=3, bytes=22)]
    part = PartitionSync(
        day=DAY.isoformat(),
        lower=at.isoformat(),
        upper=(at + dt.timedelta(hours=1)).isoformat(),
        added=added,
        staged={final: upload.handle},
        superseded=[f.key for f in previous] if replace else [],
        files=added if replace else [*previous, *added],
        source_rows=3,
    )
    record = SyncRecord(
        table="users",
        sync_id=sync_id,
        sync_type="incremental",
        mode="replace" if replace else "append",
        status="committed",
        started_at=at.isoformat(),
        finished_at=(at + dt.timedelta(seconds=2)).isoformat(),
        source={"schema": "public", "table": "users"},
        partitions={DAY.isoformat(): part},
    )
    return record, final, upload.upload_id


def _pending(store: LakeStore) -> list[str]:
    return [
        u["Key"]
        for u in store.s3.list_multipart_uploads(Bucket=store.loc.bucket).get("Uploads", [])
    ]


def test_commit_then_publish_makes_the_files_data(store):
    record, final, staged = _stage(store, T0)
    assert store.partition_state("users", DAY) is None
    store.commit(record, expected={DAY.isoformat(): None})
    store.publish(record)

    keys = _keys(store)
    assert final in keys and _pending(store) == []
    assert not any("/_staging/" in k for k in keys)
    sync_id, state = store.partition_state("users", DAY)
    assert sync_id == record.sync_id and state.upper == record.partitions[DAY.isoformat()].upper
    assert [f.key for f in state.files] == [final]
    back = store.read_record("users", record.sync_id)
    assert back.to_json() == record.to_json() and back.rows == 3 and back.files == 1
    assert store.record_ids("users") == [record.sync_id]  # pointers are not records


def test_the_same_record_is_committed_once(store):
    record, *_ = _stage(store, T0)
    store.commit(record, expected={DAY.isoformat(): None})
    with pytest.raises(CommitConflict, match="already exists"):
        store.commit(record, expected={DAY.isoformat(): None})


def test_a_commit_on_a_moved_partition_is_refused(store):
    first, *_ = _stage(store, T0)
    store.commit(first, expected={DAY.isoformat(): None})
    store.publish(first)
    late, _, late_staged = _stage(store, T0 + dt.timedelta(hours=1))
    with pytest.raises(CommitConflict, match="another sync"):
        store.commit(late, expected={DAY.isoformat(): None})  # it read the state before `first`
    assert store.read_record("users", late.sync_id) is None


def test_crash_after_commit_is_rolled_forward(store):
    record, final, _ = _stage(store, T0)
    store.commit(record, expected={DAY.isoformat(): None})  # ... and the process dies here
    assert final not in _keys(store)  # written, committed, but not yet visible
    done = store.recover("users", now=T0, stale_after=dt.timedelta(hours=6))
    assert done["rolled_forward"] == [record.sync_id]
    assert final in _keys(store) and _pending(store) == []
    assert store.partition_state("users", DAY)[0] == record.sync_id


def test_crash_before_commit_is_rolled_back_once_stale(store):
    record, final, _ = _stage(store, T0)  # written, never committed
    fresh = store.recover("users", now=dt.datetime.now(dt.UTC), stale_after=dt.timedelta(hours=6))
    assert fresh["in_progress"] == [record.sync_id] and _pending(store) == [final]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)
    done = store.recover("users", now=later, stale_after=dt.timedelta(hours=6))
    assert done["rolled_back"] == [record.sync_id]
    assert _keys(store) == set() and _pending(store) == []
    assert store.partition_state("users", DAY) is None


def test_replace_supersedes_the_old_files(store):
    first, first_key, _ = _stage(store, T0)
    store.commit(first, expected={DAY.isoformat(): None})
    store.publish(first)
    redo, redo_key, _ = _stage(
        store,
        T0 + dt.timedelta(hours=2),
        previous=first.partitions[DAY.isoformat()].files,
        replace=True,
    )
    store.commit(redo, expected={DAY.isoformat(): first.sync_id})
    store.publish(redo)
    data = {k for k in _keys(store) if k.endswith(".parquet")}
    assert data == {redo_key}
    assert [f.key for f in store.partition_state("users", DAY)[1].files] == [redo_key]


def test_a_failed_sync_keeps_history_and_commits_nothing(store):
    record, final, _ = _stage(store, T0)
    record.status = "failed"
    record.error = "boom"
    store.record_failure(record)
    assert store.read_record("users", record.sync_id).error == "boom"
    assert not any(k.endswith(".parquet") for k in _keys(store)) and _pending(store) == []
    assert store.partition_state("users", DAY) is None
