"""S3 side of the lake: commit a sync record, publish its staged files, recover after a crash.

Order of a sync (docs/postgres_sync.md): staging marker -> Parquet as multipart uploads at
their final keys, not completed -> record (commit point, If-None-Match so it is written once)
-> complete the uploads -> delete superseded files -> partition pointers -> drop the marker.
Every step after the commit is idempotent, so `recover()` can finish it; a marker without a
committed record is rolled back (its uploads aborted). Nothing is copied.
"""

import contextlib
import datetime as dt
import json
from dataclasses import asdict

from botocore.exceptions import ClientError

from sqlgym_pipelines.lib.errors import SqlgymError
from sqlgym_pipelines.lib.lake_layout import (
    DataFile,
    LakeLocation,
    PartitionSync,
    SyncRecord,
    is_sync_id,
)
from sqlgym_pipelines.lib.s3_upload import abort_uploads, complete

STAGING_MARKER = "_pending.json"


class CommitConflict(SqlgymError):
    """Another sync of the same table committed first; nothing of this sync became data."""


class LakeStore:
    def __init__(self, client, location: LakeLocation):
        self.s3 = client
        self.loc = location

    # -- reading -----------------------------------------------------------------------------
    def _get_json(self, key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def read_record(self, table: str, sync_id: str) -> SyncRecord | None:
        body = self._get_json(self.loc.record_key(table, sync_id))
        return SyncRecord.from_json(json.dumps(body)) if body is not None else None

    def record_ids(self, table: str) -> list[str]:
        """Every sync id recorded for the table, oldest first."""
        ids = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=self.loc.metadata_prefix(table), Delimiter="/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1].removesuffix(".json")
                if is_sync_id(name):
                    ids.append(name)
        return sorted(ids)

    def partition_state(self, table: str, day: dt.date) -> tuple[str, PartitionSync] | None:
        """(sync_id, entry) of the partition's latest committed sync, from its pointer."""
        body = self._get_json(self.loc.pointer_key(table, day))
        if body is None:
            return None
        sync_id = body.pop("sync_id")
        for name in ("added", "files"):
            body[name] = [DataFile(**f) for f in body.get(name, [])]
        return sync_id, PartitionSync(**body)

    def sync_id_taken(self, table: str, sync_id: str) -> bool:
        """A record or staging already uses this id (e.g. a sync that crashed in the same second)."""
        staged = self.s3.list_objects_v2(
            Bucket=self.loc.bucket, Prefix=self.loc.staging_prefix(table, sync_id), MaxKeys=1
        )
        return (
            bool(staged.get("KeyCount"))
            or self._get_json(self.loc.record_key(table, sync_id)) is not None
        )

    def _list_keys(self, prefix: str) -> list[dict]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=prefix
        )
        return [obj for page in pages for obj in page.get("Contents", [])]

    # -- writing -----------------------------------------------------------------------------
    def begin(self, table: str, sync_id: str, now: dt.datetime) -> None:
        """Mark the staging area first, so a sync that crashes before any file is still found."""
        body = json.dumps({"table": table, "sync_id": sync_id, "started_at": now.isoformat()})
        self.s3.put_object(
            Bucket=self.loc.bucket,
            Key=self.loc.staging_prefix(table, sync_id) + STAGING_MARKER,
            Body=body.encode(),
        )

    def commit(self, record: SyncRecord, expected: dict[str, str | None]) -> None:
        """Write the record once. `expected`: day -> the pointer's sync id when we read the state."""
        for day, sync_id in expected.items():
            now = self.partition_state(record.table, dt.date.fromisoformat(day))
            if (now[0] if now else None) != sync_id:
                raise CommitConflict(
                    f"table {record.table!r} partition {day}: another sync ({now[0] if now else None}) "
                    f"committed while this one ran; nothing of sync {record.sync_id} was published. "
                    "Re-run the partition."
                )
        for other in self._staged_sync_ids(record.table):
            found = self.read_record(record.table, other) if other != record.sync_id else None
            if found is not None and found.status == "committed":
                raise CommitConflict(
                    f"table {record.table!r}: sync {other} committed and is still publishing; "
                    f"nothing of sync {record.sync_id} was published. Re-run the partition."
                )
        try:
            self.s3.put_object(
                Bucket=self.loc.bucket,
                Key=self.loc.record_key(record.table, record.sync_id),
                Body=record.to_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "412"):
                raise CommitConflict(
                    f"table {record.table!r}: a sync record {record.sync_id} already exists "
                    "(two syncs in the same second); nothing of this sync was published. Re-run."
                ) from exc
            raise

    def record_failure(self, record: SyncRecord) -> None:
        """Keep the history (`make monitor`); a failed record commits nothing."""
        # If a record already exists for this second, history keeps that one.
        with contextlib.suppress(ClientError):
            self.s3.put_object(
                Bucket=self.loc.bucket,
                Key=self.loc.record_key(record.table, record.sync_id),
                Body=record.to_json().encode(),
                IfNoneMatch="*",
            )
        self._abandon(record.table, record.sync_id)

    def publish(self, record: SyncRecord) -> None:
        """Make a committed record's files the partitions' data. Idempotent."""
        bucket = self.loc.bucket
        for day, part in record.partitions.items():
            for final, handle in part.staged.items():
                complete(self.s3, bucket, final, handle)
            for key in part.superseded:
                self.s3.delete_object(Bucket=bucket, Key=key)
            pointer = {"sync_id": record.sync_id, **asdict(part)}
            self.s3.put_object(
                Bucket=bucket,
                Key=self.loc.pointer_key(record.table, dt.date.fromisoformat(day)),
                Body=json.dumps(pointer, indent=2).encode(),
            )
        self._delete_prefix(self.loc.staging_prefix(record.table, record.sync_id))

    def _abandon(self, table: str, sync_id: str) -> None:
        """Abort the sync's pending uploads and drop its marker: none of it was data."""
        abort_uploads(self.s3, self.loc.bucket, self.loc.table_prefix(table), f"_{sync_id}.parquet")
        self._delete_prefix(self.loc.staging_prefix(table, sync_id))

    def _delete_prefix(self, prefix: str) -> None:
        keys = [{"Key": o["Key"]} for o in self._list_keys(prefix)]
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(
                Bucket=self.loc.bucket, Delete={"Objects": keys[start : start + 1000]}
            )

    def _staged_sync_ids(self, table: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.loc.bucket, Prefix=self.loc.staging_prefix(table), Delimiter="/"
        )
        return [
            common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            for page in pages
            for common in page.get("CommonPrefixes", [])
        ]

    def recover(
        self, table: str, now: dt.datetime, stale_after: dt.timedelta
    ) -> dict[str, list[str]]:
        """Finish committed syncs whose publish was cut short; drop stale uncommitted staging."""
        done: dict[str, list[str]] = {"rolled_forward": [], "rolled_back": [], "in_progress": []}
        for sync_id in self._staged_sync_ids(table):
            prefix = self.loc.staging_prefix(table, sync_id)
            record = self.read_record(table, sync_id)
            if record is not None and record.status == "committed":
                self.publish(record)
                done["rolled_forward"].append(sync_id)
                continue
            newest = max((o["LastModified"] for o in self._list_keys(prefix)), default=None)
            if record is not None or newest is None or now - newest > stale_after:
                self._abandon(table, sync_id)
                done["rolled_back"].append(sync_id)
            else:
                done["in_progress"].append(sync_id)  # may belong to a sync still running
        return done
