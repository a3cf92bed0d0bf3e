"""Write a stream of record batches into one pending Parquet upload per day, a row group at a time."""

import datetime as dt
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sqlgym_pipelines.lib.lake_layout import DataFile
from sqlgym_pipelines.lib.s3_upload import PendingUpload

SYNCED_AT = "_synced_at"
PREVIEW_ROWS = 5


class DayFiles:
    """Rows arrive ordered by day; each day's rows go to the upload `open_sink(day)`.

    Batches are buffered up to `row_group_rows` rows or `row_group_bytes` of Arrow data,
    whichever comes first, so row groups have a reader-friendly size (ParquetWriter writes
    one row group per call) and memory is bounded by that buffer, whatever the table's width.
    """

    def __init__(
        self,
        schema: pa.Schema,
        open_sink: Callable[[dt.date], PendingUpload],
        *,
        synced_at: dt.datetime,
        row_group_rows: int = 262_144,
        row_group_bytes: int = 16 * 1024 * 1024,
    ):
        self.open_sink = open_sink
        self.sink: PendingUpload | None = None
        self.row_group_rows, self.row_group_bytes = row_group_rows, row_group_bytes
        self.synced_at = pa.scalar(synced_at, pa.timestamp("us", tz="UTC"))
        self.schema = schema.append(pa.field(SYNCED_AT, pa.timestamp("us", tz="UTC")))
        self.day: dt.date | None = None
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self.buffered_bytes = 0
        self.rows = 0
        self.written: dict[dt.date, tuple[DataFile, dict]] = {}
        self.preview: pa.Table | None = None  # the first rows written, for the run's metadata

    def write(self, batch: pa.RecordBatch, day: dt.date) -> None:
        if self.day != day:
            if self.day is not None and day < self.day:
                raise RuntimeError(
                    f"rows for {day} arrived after {self.day}: the query must be ordered"
                )
            self._close()
            self.day = day
            self.sink = self.open_sink(day)
            # A file object is not closed by the writer: _close() closes it after the footer.
            self.writer = pq.ParquetWriter(
                pa.PythonFile(self.sink, mode="w"), self.schema, compression="snappy"
            )
        column = pa.repeat(self.synced_at, batch.num_rows)
        full = pa.RecordBatch.from_arrays([*batch.columns, column], schema=self.schema)
        if self.preview is None and full.num_rows:
            self.preview = pa.Table.from_batches([full.slice(0, PREVIEW_ROWS)])
        self.buffer.append(full)
        self.buffered += batch.num_rows
        self.buffered_bytes += full.nbytes
        self.rows += batch.num_rows
        if self.buffered >= self.row_group_rows or self.buffered_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            # one row group per flush (row_group_size above what is buffered)
            self.writer.write_table(
                pa.Table.from_batches(self.buffer), row_group_size=self.buffered
            )
            self.buffer, self.buffered, self.buffered_bytes = [], 0, 0

    def _close(self) -> None:
        if self.writer is None:
            return
        self._flush()
        self.writer.close()
        self.sink.close()
        file = DataFile(key=self.sink.key, rows=self.rows, bytes=self.sink.size)
        self.written[self.day] = (file, self.sink.handle)
        self.writer, self.sink, self.rows = None, None, 0

    def close(self) -> dict[dt.date, tuple[DataFile, dict]]:
        """Finish the last file; returns day -> (the file, the handle that completes its upload)."""
        self._close()
        return self.written

    def abort(self) -> None:
        """Drop the upload being written (the finished ones are aborted by the caller's recovery)."""
        if self.sink is not None and not self.sink.closed:
            self.sink.abort()


def split_by_day(batch: pa.RecordBatch, cursor: str) -> list[tuple[dt.date, pa.RecordBatch]]:
    """Consecutive runs of the batch by the UTC day of `cursor`, without that column."""
    if batch.num_rows == 0:
        return []
    days = pc.cast(pc.cast(batch.column(cursor), pa.timestamp("us", tz="UTC")), pa.date32())
    runs = pc.run_end_encode(days)
    data = batch.drop_columns([cursor])
    out, start = [], 0
    for end, day in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        out.append((day, data.slice(start, end - start)))
        start = end
    return out
