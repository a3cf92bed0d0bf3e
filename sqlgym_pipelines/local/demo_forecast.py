"""Demo forecast Parquet in the local datalake bucket: ten business_dates (two days ago to a
week ahead) for five states, two days per file, as a forecasting job would drop them."""

import datetime as dt
import io
import random

import pyarrow as pa
import pyarrow.parquet as pq

from sqlgym_pipelines.local.provision import aws_client
from sqlgym_pipelines.local.stack import StackInfo

STATES = ("CA", "TX", "NY", "FL", "WA")
SCHEMA = pa.schema(
    [("restaurant_id", pa.int32()), ("inventory_item_id", pa.int32()),
     ("business_date", pa.date32()), ("dma_id", pa.string()), ("dc_id", pa.int32()),
     ("state", pa.string()), ("y_05", pa.float64()), ("y_50", pa.float64()),
     ("y_95", pa.float64())]
)  # fmt: skip


def forecast_rows(days: list[dt.date], restaurants: int, items: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for day in days:
        for r in range(1, restaurants + 1):
            state = STATES[r % len(STATES)]
            for i in range(1, items + 1):
                median = round(rng.uniform(5, 500), 2)
                values = (r, i, day, f"DMA-{r % 7}" if r % 4 else None, r % 5 or None, state,
                          round(median * rng.uniform(0.5, 0.95), 2), median,
                          round(median * rng.uniform(1.05, 1.6), 2))  # fmt: skip
                for name, value in zip(SCHEMA.names, values, strict=True):
                    rows[name].append(value)
    return pa.table(rows, schema=SCHEMA)


def seed_forecast(info: StackInfo, scale: float, reset: bool) -> dict[str, int]:
    """Upload the files (same bytes on every seed, so the sensor does not fire again)."""
    bucket = info.env()["SQLGYM_DATALAKE_BUCKET"]
    s3 = aws_client(info, "s3")
    today = dt.datetime.now(dt.UTC).date()
    days = [today + dt.timedelta(days=n) for n in range(-2, 8)]
    restaurants = max(2, int(30 * scale))
    rows = 0
    for start in range(0, len(days), 2):
        pair = days[start : start + 2]
        table = forecast_rows(pair, restaurants, 20, seed=pair[0].toordinal())
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        key = f"forecast/forecast_{pair[0]:%Y%m%d}_{pair[-1]:%Y%m%d}.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        rows += table.num_rows
    return {"forecast rows": rows, "forecast files": (len(days) + 1) // 2}
