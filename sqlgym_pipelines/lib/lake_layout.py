"""Where lake files live, and the sync record that commits them (see docs/postgres_sync.md).

Keys (prefix default `postgres-sync`):
  <prefix>/<table>/YYYY/MM/DD/{incremental|full}_<sync_id>.parquet   published data
  <prefix>/_metadata/<table>/<sync_id>.json                          sync record = commit point
  <prefix>/_metadata/<table>/_partitions/YYYY-MM-DD.json             cache: the partition's latest record
  <prefix>/_staging/<table>/<sync_id>/_pending.json                   marks a sync in progress
  (data is written as multipart uploads at the final keys, completed only after the commit)
"""

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from sqlgym_pipelines.lib.errors import ConfigError

SyncType = Literal["incremental", "full"]
SYNC_ID_FORMAT = "%Y%m%d_%H%M%S"
_SYNC_ID = re.compile(r"^\d{8}_\d{6}$")
FORMAT_VERSION = 1


def sync_id_for(moment: dt.datetime) -> str:
    """The seed's YYYYMMDD_HHMMSS stamp of a sync's start (UTC)."""
    return moment.astimezone(dt.UTC).strftime(SYNC_ID_FORMAT)


def is_sync_id(text: str) -> bool:
    return bool(_SYNC_ID.match(text))


@dataclass(frozen=True)
class LakeLocation:
    """A lake root: bucket + prefix. Every key this project writes is built here."""

    bucket: str
    prefix: str = "postgres-sync"

    def __post_init__(self):
        if not self.bucket:
            raise ConfigError("lake bucket is empty: set SQLGYM_LAKE_BUCKET")
        object.__setattr__(self, "prefix", self.prefix.strip("/"))

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def table_prefix(self, table: str) -> str:
        return self._key(table) + "/"

    def partition_prefix(self, table: str, day: dt.date) -> str:
        return self._key(table, day.strftime("%Y/%m/%d")) + "/"

    def data_key(self, table: str, day: dt.date, sync_type: SyncType, sync_id: str) -> str:
        return self.partition_prefix(table, day) + f"{sync_type}_{sync_id}.parquet"

    def metadata_prefix(self, table: str) -> str:
        return self._key("_metadata", table) + "/"

    def record_key(self, table: str, sync_id: str) -> str:
        return self.metadata_prefix(table) + f"{sync_id}.json"

    def pointer_key(self, table: str, day: dt.date) -> str:
        return self.metadata_prefix(table) + f"_partitions/{day.isoformat()}.json"

    def staging_prefix(self, table: str, sync_id: str | None = None) -> str:
        return self._key("_staging", table, sync_id or "") + "/"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass
class DataFile:
    key: str
    rows: int
    bytes: int


@dataclass
class PartitionSync:
    """What one sync did to one daily partition, and what the partition holds afterwards."""

    day: str  # YYYY-MM-DD
    lower: str | None  # cursor window [lower, upper), ISO 8601 UTC; None for full snapshots
    upper: str | None
    added: list[DataFile] = field(default_factory=list)
    # final key -> the pending multipart upload (upload_id, parts) that publish completes
    staged: dict[str, dict] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)
    files: list[DataFile] = field(
        default_factory=list
    )  # every file of the partition after this sync
    source_rows: int | None = None  # rows the source held for this sync's window (same snapshot)
    source_rows_total: int | None = None  # ... summed over the syncs that made `files`

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.added)


@dataclass
class SyncRecord:
    """One sync of one table: written once; its presence with status=committed commits the files."""

    table: str
    sync_id: str
    sync_type: SyncType
    mode: Literal["append", "replace"]
    status: Literal["committed", "failed"]
    started_at: str
    finished_at: str
    source: dict  # schema, table, cursor expression, safe-upper method
    partitions: dict[str, PartitionSync] = field(default_factory=dict)
    arrow_schema: str | None = None
    schema_hash: str | None = None
    run_id: str | None = None
    error: str | None = None
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def bytes(self) -> int:
        return sum(f.bytes for p in self.partitions.values() for f in p.added)

    @property
    def files(self) -> int:
        return sum(len(p.added) for p in self.partitions.values())

    @property
    def duration_s(self) -> float:
        start, end = (dt.datetime.fromisoformat(t) for t in (self.started_at, self.finished_at))
        return (end - start).total_seconds()

    def to_json(self) -> str:
        body = asdict(self)
        body.update(rows=self.rows, bytes=self.bytes, files=self.files, duration_s=self.duration_s)
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SyncRecord":
        body = json.loads(text)
        for derived in ("rows", "bytes", "files", "duration_s"):
            body.pop(derived, None)
        parts = {}
        for day, p in body.pop("partitions", {}).items():
            for name in ("added", "files"):
                p[name] = [DataFile(**f) for f in p.get(name, [])]
            parts[day] = PartitionSync(**p)
        return cls(partitions=parts, **body)
