"""The files of a dataset in S3: paginated listing, glob filter, file date -> daily partition,
and the sensor's bounded cursor (new or changed objects by key + ETag)."""

import dataclasses
import datetime as dt
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator

from sqlgym_pipelines.lib.csv_config import Source


@dataclasses.dataclass(frozen=True)
class S3File:
    bucket: str
    key: str
    etag: str
    size: int
    last_modified: dt.datetime
    day: dt.date | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_dict(self) -> dict:
        return {"key": self.key, "etag": self.etag, "size": self.size,
                "last_modified": self.last_modified.isoformat()}  # fmt: skip


def file_day(source: Source, key: str, last_modified: dt.datetime) -> dt.date | None:
    """The partition a file belongs to: the date in its key (date_regex) or its upload day (UTC)."""
    if source.date_from == "last_modified":
        return last_modified.astimezone(dt.UTC).date()
    match = re.search(source.date_regex, key[len(source.prefix) :])
    if not match:
        return None
    try:
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


def list_files(s3_client, source: Source) -> Iterator[S3File]:
    """Every object under the prefix whose rest matches the glob (paginated ListObjectsV2)."""
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=source.bucket, Prefix=source.prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or not fnmatch.fnmatchcase(
                key[len(source.prefix) :], source.pattern
            ):
                continue
            yield S3File(
                bucket=source.bucket,
                key=key,
                etag=obj["ETag"].strip('"'),
                size=obj["Size"],
                last_modified=obj["LastModified"],
                day=file_day(source, key, obj["LastModified"]),
            )


def files_for_day(s3_client, source: Source, day: dt.date) -> list[S3File]:
    """The day's files in arrival order (upload time, then key): later rows win an upsert."""
    files = [f for f in list_files(s3_client, source) if f.day == day]
    return sorted(files, key=lambda f: (f.last_modified, f.key))


# -- the sensor's cursor -------------------------------------------------------------------
# {"watermark": ISO time, "seen": {key: etag}} where seen only holds objects modified at or
# after watermark - LOOKBACK: bounded by the arrivals of that window, not by the bucket. An
# object older than the window that is rewritten gets a new LastModified, so it is seen again.
LOOKBACK = dt.timedelta(hours=1)


@dataclasses.dataclass
class ArrivalCursor:
    watermark: dt.datetime | None = None
    seen: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "ArrivalCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        mark = data.get("watermark")
        return cls(dt.datetime.fromisoformat(mark) if mark else None, dict(data.get("seen", {})))

    def dump(self) -> str:
        mark = self.watermark.isoformat() if self.watermark else None
        return json.dumps({"watermark": mark, "seen": self.seen}, sort_keys=True)


def new_arrivals(
    files: Iterable[S3File], cursor: ArrivalCursor
) -> tuple[list[S3File], ArrivalCursor]:
    """Files not seen with this ETag since the watermark, and the advanced cursor."""
    floor = cursor.watermark - LOOKBACK if cursor.watermark else None
    window = [f for f in files if floor is None or f.last_modified >= floor]
    fresh = [f for f in window if cursor.seen.get(f.key) != f.etag]
    stamps = [f.last_modified for f in window] + ([cursor.watermark] if cursor.watermark else [])
    newest = max(stamps, default=None)
    new_floor = newest - LOOKBACK if newest else None
    seen = {f.key: f.etag for f in window if new_floor is None or f.last_modified >= new_floor}
    return fresh, ArrivalCursor(newest, seen)
