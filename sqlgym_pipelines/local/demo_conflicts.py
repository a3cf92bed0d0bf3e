"""Demo visits in the local Snowflake (fakesnow): caregivers with 3 to 8 visits a day, some
double-booked, some with EVV times, patients around New York, for the conflict report."""

import datetime as dt
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from sqlgym_pipelines.lib.conflict_visits import ARROW_TYPES, DEFAULT_SOURCE_TABLE
from sqlgym_pipelines.local.stack import StackInfo

SNOWFLAKE_TYPES = {
    pa.int64(): "NUMBER(38, 0)",
    pa.string(): "VARCHAR",
    pa.date32(): "DATE",
    pa.timestamp("us"): "TIMESTAMP_NTZ",
    pa.float64(): "FLOAT",
}
PROVIDERS = ("Acme Home Care", "Zoë's Home Health", "Bright Path Nursing", "CareFirst Aides")
SERVICES = ("PCA", "HHA", "RN", "PT")


def visit_rows(day: dt.date, caregivers: int, seed: int, first_id: int = 1) -> pa.Table:
    """One day's visits: each caregiver's visits start at random quarter hours, so some
    overlap, some touch, and some leave too little time to drive to the next patient."""
    rng = random.Random(seed)
    columns: dict[str, list] = {name: [] for name in ARROW_TYPES}
    visit_id = first_id
    base = dt.datetime.combine(day, dt.time(7))
    for caregiver in range(caregivers):
        ssn = f"{900 + caregiver // 1_000_000:03d}-{caregiver // 10_000 % 100:02d}-{caregiver % 10_000:04d}"
        for _ in range(rng.randint(3, 8)):
            start = base + dt.timedelta(minutes=15 * rng.randint(0, 44))
            end = start + dt.timedelta(minutes=15 * rng.randint(2, 12))
            evv = rng.random() < 0.7
            jitter = dt.timedelta(minutes=rng.randint(-10, 10), seconds=rng.randint(0, 59))
            located = rng.random() < 0.95
            values = {
                "VisitID": visit_id,
                "ProviderID": rng.randint(1, len(PROVIDERS)),
                "PatientID": rng.randint(1, 50_000),
                "SSN": ssn,
                "VisitDate": day,
                "SchStartTime": start,
                "SchEndTime": end,
                "VisitStartTime": start + jitter if evv else None,
                "VisitEndTime": end + jitter if evv else None,
                "PatientLatitude": round(rng.uniform(40.5, 41.0), 6) if located else None,
                "PatientLongitude": round(rng.uniform(-74.2, -73.6), 6) if located else None,
                "ProviderName": None,
                "PatientName": f"Patient {rng.randint(1, 50_000)}",
                "ServiceCode": rng.choice(SERVICES),
            }
            values["ProviderName"] = PROVIDERS[values["ProviderID"] - 1]
            for name, value in values.items():
                columns[name].append(value)
            visit_id += 1
    return pa.table(columns, schema=pa.schema(ARROW_TYPES.items()))


def put_visits(snowflake: Any, table: str, data: pa.Table, *, replace: bool = False) -> int:
    """Bulk-load visits into Snowflake the way Snowflake loads files: PUT a CSV, COPY INTO."""
    columns = ", ".join(f"{f.name} {SNOWFLAKE_TYPES[f.type]}" for f in data.schema)
    create = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    with tempfile.TemporaryDirectory() as tmp, snowflake.get_connection() as conn:
        # a new name each time: COPY INTO skips a file name it has loaded before
        path = Path(tmp) / f"visits_{uuid.uuid4().hex}.csv"
        pacsv.write_csv(data, str(path), pacsv.WriteOptions(include_header=False))
        cur = conn.cursor()
        cur.execute(f"{create} {table} ({columns})")
        cur.execute("CREATE STAGE IF NOT EXISTS sqlgym_visits_stage")
        cur.execute(f"PUT file://{path} @sqlgym_visits_stage OVERWRITE = TRUE")
        cur.execute(
            f"COPY INTO {table} FROM @sqlgym_visits_stage/{path.name}.gz "
            "FILE_FORMAT = (TYPE = CSV FIELD_OPTIONALLY_ENCLOSED_BY = '\"' "
            "EMPTY_FIELD_AS_NULL = TRUE) PURGE = TRUE"
        )
        return sum(row[2] for row in cur.fetchall())


def seed_conflicts(info: StackInfo, scale: float, reset: bool) -> dict[str, int]:
    """Visits for the last three days and today, unless they are there already."""
    from sqlgym_pipelines.resources.snowflake import SnowflakeResource

    env = info.env()
    snowflake = SnowflakeResource(
        mode="fakesnow",
        database=env["SNOWFLAKE_DATABASE"],
        schema=env["SNOWFLAKE_SCHEMA"],
        fakesnow_db_path=env["SNOWFLAKE_FAKESNOW_DB_PATH"],
    )
    table = DEFAULT_SOURCE_TABLE
    if not reset:
        with snowflake.get_connection() as conn:
            cur = conn.cursor()
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = %s", (table,)
            )
            if cur.fetchone()[0]:
                return {"visits (kept)": 0}
    today = dt.datetime.now(dt.UTC).date()
    caregivers = max(5, int(200 * scale))
    rows, first_id = 0, 1
    for n, day in enumerate(today - dt.timedelta(days=d) for d in range(3, -1, -1)):
        data = visit_rows(day, caregivers, seed=day.toordinal(), first_id=first_id)
        rows += put_visits(snowflake, table, data, replace=reset and n == 0)
        first_id += data.num_rows
    return {"visits": rows}
