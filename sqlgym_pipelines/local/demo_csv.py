"""Demo CSV files for the ingestion pipeline, uploaded to the local landing bucket.

store_sales: clean files (quoted commas, doubled quotes, newlines inside quotes, CRLF, a BOM)
for the last three days. web_signups: people's typing: yesterday's and today's files have a
few bad rows (quarantined, the rest loads); the file of two days ago is mostly bad, so its
run fails the reject-ratio check and loads nothing.
"""

import csv
import datetime as dt
import io
import random

from sqlgym_pipelines.local.provision import aws_client
from sqlgym_pipelines.local.stack import StackInfo

PLANS = ("free", "pro", "team")
COUNTRIES = ("US", "DE", "fr", "GB", " es ", "CA")


def sales_csv(day: dt.date, rows: int, rng: random.Random) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["sale_id", "store_code", "sold_at", "sku", "quantity", "unit_price",
                     "is_online", "customer_email", "note"])  # fmt: skip
    base = int(day.strftime("%Y%m%d")) * 10_000
    for i in range(rows):
        sold = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86_400))
        note = rng.choice(["", "gift, wrapped", 'said "thanks"', "two\nlines", "NULL"])
        writer.writerow([
            base + i, f" {rng.choice(['ny', 'SF', 'la'])}-{rng.randrange(1, 999):03d}",
            sold.isoformat(sep=" "), f"SKU-{rng.randrange(1, 500):04d}", rng.randrange(1, 20),
            f"{rng.randrange(100, 99_999) / 100:.2f}", rng.choice(["true", "false", "1", "0"]),
            rng.choice(["", f"buyer{i}@example.com"]), note,
        ])  # fmt: skip
    return "\ufeff".encode() + out.getvalue().encode()


def signups_csv(day: dt.date, rows: int, bad_ratio: float, rng: random.Random) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(["signup_id", "email", "full_name", "country", "signed_up", "age", "plan"])
    base = int(day.strftime("%Y%m%d")) * 1_000
    for i in range(rows):
        row = [base + i, f" User{i}@Example.COM ", f"User {i}", rng.choice(COUNTRIES),
               day.strftime("%d/%m/%Y"), rng.randrange(16, 90), rng.choice([*PLANS, " Pro", ""])]  # fmt: skip
        if rng.random() < bad_ratio:
            fault = rng.randrange(5)
            if fault == 0:
                row[1] = "not-an-email"
            elif fault == 1:
                row[5] = rng.choice(["abc", "7", "200"])
            elif fault == 2:
                row[6] = "enterprise"
            elif fault == 3:
                row[4] = "31/02/2026"
            else:
                writer.writerow(row[:4])  # a truncated line: too few fields
                continue
        writer.writerow(row)
    return out.getvalue().encode()


def seed_csv(info: StackInfo, scale: float, reset: bool) -> dict[str, int]:
    """Upload the demo files (same content every time: a re-seed does not trigger new runs)."""
    bucket = info.env()["SQLGYM_CSV_BUCKET"]
    s3 = aws_client(info, "s3")
    today = dt.datetime.now(dt.UTC).date()
    counts = {"store_sales files": 0, "web_signups files": 0}
    for back in range(3):
        day = today - dt.timedelta(days=back)
        rng = random.Random(day.toordinal())
        sales = sales_csv(day, max(10, int(200 * scale)), rng)
        s3.put_object(Bucket=bucket, Key=f"store_sales/{day}.csv", Body=sales)
        bad = 0.45 if back == 2 else 0.1
        signups = signups_csv(day, max(10, int(60 * scale)), bad, rng)
        s3.put_object(Bucket=bucket, Key=f"web_signups/signups_{day:%Y%m%d}.csv", Body=signups)
        counts["store_sales files"] += 1
        counts["web_signups files"] += 1
    return counts
