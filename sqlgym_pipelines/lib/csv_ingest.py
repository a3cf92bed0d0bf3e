"""Write-audit-publish of one dataset's daily partition: CSV files in S3 -> Postgres.

stage():   every file of the day is streamed, typed, transformed and checked batch by batch;
           good rows are COPYed into an UNLOGGED staging table, failures into the quarantine
           (`<ingest_schema>.rejects`), whole-file rules (unique) applied in SQL; one
           transaction, recorded in `<ingest_schema>.stage_manifest`.
audit():   the partition-level verdicts (reject ratio, min rows, unique keys) on the staging.
publish(): re-checks the verdicts, then one transaction moves staging into the target
           (append / upsert / replace) and records the files in `loaded_files`.
"""

import dataclasses
import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
from botocore.exceptions import ClientError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sqlgym_pipelines.lib import pg, pg_load
from sqlgym_pipelines.lib.csv_config import CsvConfig, Dataset
from sqlgym_pipelines.lib.csv_read import LINE, BadRow, CsvFileError, read_batches
from sqlgym_pipelines.lib.csv_transform import check_dataset, process
from sqlgym_pipelines.lib.errors import ConfigError, SqlgymError
from sqlgym_pipelines.lib.pg_load import TableRef
from sqlgym_pipelines.lib.prefetch import prefetch
from sqlgym_pipelines.lib.s3_files import S3File, files_for_day

SQL_DIR = Path(__file__).parent / "sql"
FILE_COLUMN = "_sqlgym_file"
LINE_COLUMN = "_sqlgym_line"
PREVIEW_ROWS = 10
REJECT_BUFFER_BYTES = 32 << 20


class CsvDataError(SqlgymError):
    """The data (not the system) is wrong: retrying cannot help; fix the file or the config."""


@dataclasses.dataclass
class StageResult:
    dataset: str
    partition: dt.date
    files: list[S3File]
    staging: TableRef
    rows_read: int = 0
    rejected_rows: int = 0
    staged_rows: int = 0
    duplicate_keys: int = 0  # keys of the target held by more than one staged row
    bytes: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    duration_s: float = 0.0
    preview: pl.DataFrame | None = None
    reject_preview: pl.DataFrame | None = None

    @property
    def reject_ratio(self) -> float:
        return self.rejected_rows / self.rows_read if self.rows_read else 0.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    description: str
    metadata: dict


def staging_table(config: CsvConfig, dataset: Dataset, day: dt.date) -> TableRef:
    return TableRef(config.staging_schema, f"{dataset.name}__{day:%Y%m%d}")


def ensure_bookkeeping(conn: psycopg.Connection, config: CsvConfig) -> None:
    statement = pg.load_sql(SQL_DIR / "csv_bookkeeping.sql").format(
        schema=sql.Identifier(config.ingest_schema)
    )
    conn.execute(statement)


def stage(
    conn: psycopg.Connection,
    s3_client,
    config: CsvConfig,
    dataset: Dataset,
    day: dt.date,
    run_id: str,
) -> StageResult:
    """Stage the day's files in one transaction (the caller's connection commits)."""
    started = time.monotonic()
    files = files_for_day(s3_client, dataset.source, day)
    if not files:
        raise CsvDataError(
            f"dataset {dataset.name!r}: no file for {day} under s3://{dataset.source.bucket}/"
            f"{dataset.source.prefix} matching {dataset.source.pattern!r}"
        )
    result = StageResult(dataset.name, day, files, staging_table(config, dataset, day))
    output = check_dataset(dataset, config.path)
    arrow_schema = pl.DataFrame(schema=output).to_arrow().schema
    arrow_schema = arrow_schema.append(pa.field(FILE_COLUMN, pa.string()))
    arrow_schema = arrow_schema.append(pa.field(LINE_COLUMN, pa.int64()))
    arrow_schema = arrow_schema.append(pa.field(pg_load.ROW_COLUMN, pa.int64()))
    ensure_bookkeeping(conn, config)
    rejects = TableRef(config.ingest_schema, "rejects")
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE dataset = %s AND partition = %s").format(rejects.ident),
        (dataset.name, day),
    )
    pg_load.create_staging(conn, result.staging, arrow_schema)
    reasons: Counter[str] = Counter()
    for file in files:
        _stage_file(conn, s3_client, dataset, day, run_id, file, result, rejects, reasons)
    for rule in dataset.rules:
        if rule.check == "unique":
            dupes = _unique(conn, result, rule.columns, rejects, run_id)
            result.staged_rows -= dupes  # moved from staging to the quarantine
            if dupes:
                reasons[f"duplicate {', '.join(rule.columns)} (rule unique)"] += dupes
    result.rejected_rows = conn.execute(
        sql.SQL(
            "SELECT count(DISTINCT (file_key, line)) FROM {} WHERE dataset = %s AND partition = %s"
        ).format(rejects.ident),
        (dataset.name, day),
    ).fetchone()[0]
    if dataset.target.key:  # counted once here; the checks and publish read the number
        pg_load.raise_work_mem(conn)  # the count sorts every staged key
        result.duplicate_keys = _duplicate_keys(conn, result.staging, dataset.target.key)
    result.reasons = dict(reasons.most_common())
    _record_manifest(conn, config, result, run_id)
    result.duration_s = time.monotonic() - started
    return result


def _stage_file(conn, s3_client, dataset, day, run_id, file, result, rejects, reasons) -> None:
    try:
        body = s3_client.get_object(Bucket=file.bucket, Key=file.key, IfMatch=file.etag)["Body"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("PreconditionFailed", "NoSuchKey", "412", "404"):
            raise CsvDataError(
                f"{file.uri} changed or vanished while the run read it ({code}); "
                "the sensor will pick up the new version"
            ) from exc
        raise
    try:
        names, batches = read_batches(
            _decompressed(body, file.key),
            dataset.csv,
            names=list(dataset.columns),
            block_size=dataset.block_size_bytes,
        )
        _check_header(dataset, file, names)
        # One COPY for the file's good rows: Postgres parses a batch while the next one is
        # parsed, typed and transformed (pyarrow / polars, GIL released). Rejects wait in
        # memory, up to REJECT_BUFFER_BYTES, for the COPY to end (one COPY at a time).
        held: list[pl.DataFrame] = []
        with pg_load.ArrowCopy(conn, result.staging, freeze=True) as staging:
            first_row = result.staged_rows + 1  # the file's rows follow the previous files'
            processed = _processed(prefetch(batches, 1), dataset, day, file, run_id, first_row)
            for good, bad, read in prefetch(processed, 1):
                result.staged_rows += staging.write(good)
                if bad.height:
                    held.append(bad)
                    reasons.update(bad["reason"].to_list())
                    if result.reject_preview is None or result.reject_preview.height < PREVIEW_ROWS:
                        result.reject_preview = bad.head(PREVIEW_ROWS)
                    if sum(frame.estimated_size() for frame in held) > REJECT_BUFFER_BYTES:
                        staging.close()
                        _quarantine(conn, rejects, held)
                if result.preview is None or result.preview.height < PREVIEW_ROWS:
                    result.preview = pl.from_arrow(good.drop([FILE_COLUMN, LINE_COLUMN])).head(
                        PREVIEW_ROWS
                    )
                result.rows_read += read
        _quarantine(conn, rejects, held)
    except CsvFileError as exc:
        raise CsvDataError(f"{file.uri}: {exc}") from exc
    finally:
        body.close()
    result.bytes += file.size


def _quarantine(conn, rejects: TableRef, held: list[pl.DataFrame]) -> None:
    """COPY the held rejects into the quarantine table and let go of them."""
    pg_load.copy_arrow(conn, rejects, [frame.to_arrow() for frame in held])
    held.clear()


COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


def _decompressed(body, key: str):
    """The object's bytes, decompressed when its key ends in .gz, .bz2, .zst or .lz4."""
    for suffix, codec in COMPRESSION.items():
        if key.endswith(suffix):
            return pa.CompressedInputStream(pa.PythonFile(body, mode="r"), codec)
    return body


def _processed(batches, dataset: Dataset, day, file: S3File, run_id: str, first_row: int):
    """(good rows as Arrow, rejects, records read) per batch; good rows numbered from first_row
    in arrival order (ROW_COLUMN: numbered here, not by a sequence in the server's COPY)."""
    row = first_row
    for batch in batches:
        processed = process(dataset, batch.frame, day)
        n = processed.frame.height
        good = processed.frame.with_columns(
            pl.lit(file.key).alias(FILE_COLUMN),
            pl.col(LINE).alias(LINE_COLUMN),
            pl.int_range(row, row + n, dtype=pl.Int64).alias(pg_load.ROW_COLUMN),
        ).drop(LINE)
        row += n
        bad = _reject_rows(processed, batch.bad_rows, dataset, day, file, run_id)
        yield good.to_arrow(), bad, batch.frame.height + len(batch.bad_rows)


def _check_header(dataset: Dataset, file: S3File, names: list[str]) -> None:
    columns = dataset.columns
    missing = [n for n, spec in columns.items() if spec.required and n not in names]
    if missing:
        raise CsvDataError(
            f"{file.uri}: dataset {dataset.name!r} requires column(s) {', '.join(missing)}; "
            f"the header has {', '.join(names)}"
        )
    extra = [n for n in names if n not in columns]
    if extra and dataset.extra_columns == "error":
        raise CsvDataError(
            f"{file.uri}: unexpected column(s) {', '.join(extra)} "
            f"(dataset {dataset.name!r} sets extra_columns: error)"
        )


def _reject_rows(processed, bad_rows: list[BadRow], dataset, day, file, run_id) -> pl.DataFrame:
    found = processed.rejects_frame()
    if found.height:
        records = processed.raw.filter(pl.col(LINE).is_in(found["line"].implode())).select(
            pl.col(LINE).alias("line"),
            pl.struct(pl.exclude(LINE)).struct.json_encode().alias("record"),
        )
        found = found.join(records, on="line", how="left")
    else:
        found = found.with_columns(pl.lit(None, pl.Utf8).alias("record"))
    ragged = pl.DataFrame(
        {
            "line": [b.line for b in bad_rows],
            "column": [None] * len(bad_rows),
            "reason": [b.reason for b in bad_rows],
            "value": [None] * len(bad_rows),
            "record": [b.text for b in bad_rows],
        },
        schema=found.schema,
    )
    return pl.concat([ragged, found]).select(
        pl.lit(dataset.name).alias("dataset"),
        pl.lit(day).alias("partition"),
        pl.lit(file.key).alias("file_key"),
        pl.lit(file.etag).alias("file_etag"),
        "line",
        pl.col("column").alias("column_name"),
        "reason",
        "value",
        "record",
        pl.lit(run_id).alias("run_id"),
    )


def _unique(conn, result: StageResult, key, rejects: TableRef, run_id: str) -> int:
    idents = [sql.Identifier(k) for k in key]
    statement = pg.load_sql(SQL_DIR / "csv_unique_rejects.sql").format(
        row=sql.Identifier(pg_load.ROW_COLUMN),
        staging=result.staging.ident,
        key=sql.SQL(", ").join(idents),
        key_text=sql.SQL(" || ', ' || ").join(sql.SQL("{}::text").format(i) for i in idents),
        rejects=rejects.ident,
    )
    etags = json.dumps({f.key: f.etag for f in result.files})
    params = {"dataset": result.dataset, "partition": result.partition,
              "columns": ", ".join(key), "run_id": run_id, "etags": etags}  # fmt: skip
    return conn.execute(statement, params).rowcount


def _record_manifest(conn, config: CsvConfig, result: StageResult, run_id: str) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (dataset, partition, run_id, staging_table, files, rows_read, "
            "rejected_rows, staged_rows, duplicate_keys, reasons) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (dataset, partition) DO UPDATE SET run_id = EXCLUDED.run_id, "
            "staging_table = EXCLUDED.staging_table, files = EXCLUDED.files, "
            "rows_read = EXCLUDED.rows_read, rejected_rows = EXCLUDED.rejected_rows, "
            "staged_rows = EXCLUDED.staged_rows, duplicate_keys = EXCLUDED.duplicate_keys, "
            "reasons = EXCLUDED.reasons, "
            "staged_at = now(), published_at = NULL"
        ).format(sql.Identifier(config.ingest_schema, "stage_manifest")),
        (
            result.dataset,
            result.partition,
            run_id,
            str(result.staging),
            json.dumps([f.as_dict() for f in result.files]),
            result.rows_read,
            result.rejected_rows,
            result.staged_rows,
            result.duplicate_keys,
            json.dumps(result.reasons),
        ),
    )


def manifest(conn, config: CsvConfig, dataset: Dataset, day: dt.date) -> dict | None:
    cur = conn.execute(
        sql.SQL(
            "SELECT run_id, files, rows_read, rejected_rows, staged_rows, duplicate_keys, reasons, "
            "published_at "
            "FROM {} WHERE dataset = %s AND partition = %s"
        ).format(sql.Identifier(config.ingest_schema, "stage_manifest")),
        (dataset.name, day),
    )
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True)) if row else None


def audit(
    conn, config: CsvConfig, dataset: Dataset, day: dt.date, staged: dict | None = None
) -> list[Verdict]:
    """The partition-level rules on what stage() left, each with its numbers."""
    staged = staged or manifest(conn, config, dataset, day)
    if staged is None or staged["published_at"] is not None:
        raise CsvDataError(
            f"dataset {dataset.name!r} has nothing staged for {day}; materialize its staged "
            "asset for that partition first"
        )
    read, rejected, rows = staged["rows_read"], staged["rejected_rows"], staged["staged_rows"]
    ratio = rejected / read if read else 0.0
    verdicts = [
        Verdict(
            "reject_ratio_within_limit",
            ratio <= dataset.max_reject_ratio,
            f"{rejected} of {read} rows rejected ({ratio:.2%}; limit {dataset.max_reject_ratio:.2%})",
            {
                "rows_read": read,
                "rejected_rows": rejected,
                "reject_ratio": round(ratio, 6),
                "max_reject_ratio": dataset.max_reject_ratio,
                "reasons": staged["reasons"],
            },  # fmt: skip
        )
    ]
    for rule in dataset.rules:
        if rule.check == "min_rows":
            verdicts.append(
                Verdict(
                    "min_rows",
                    rows >= rule.value,
                    f"{rows} rows staged (minimum {rule.value})",
                    {"staged_rows": rows, "min_rows": rule.value},
                )
            )
    key = dataset.target.key
    if key:
        dupes = staged["duplicate_keys"]
        allowed = dataset.target.mode == "upsert"  # the last version of a key wins
        verdicts.append(
            Verdict(
                "key_unique",
                allowed or dupes == 0,
                f"{dupes} key(s) ({', '.join(key)}) appear more than once"
                + (" (upsert keeps the last)" if allowed and dupes else ""),
                {"duplicate_keys": dupes},
            )
        )
    return verdicts


def _duplicate_keys(conn, staging: TableRef, key) -> int:
    """Keys held by more than one row (NULL keys grouped together)."""
    if len(key) == 1:  # the usual answer, none, from a sort: ~3x faster than hashing 1M groups
        surplus = conn.execute(
            sql.SQL("SELECT count(*) - count(DISTINCT {k}) FROM {t}").format(
                k=sql.Identifier(key[0]), t=staging.ident
            )
        ).fetchone()[0]
        if surplus == 0:
            return 0
    return conn.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} GROUP BY {} HAVING count(*) > 1) d").format(
            staging.ident, sql.SQL(", ").join(sql.Identifier(k) for k in key)
        )
    ).fetchone()[0]


def publish(
    conn, config: CsvConfig, dataset: Dataset, day: dt.date, run_id: str
) -> pg_load.MergeCounts:
    """Move the day's staged rows into the target in one transaction, after re-auditing them."""
    staged = manifest(conn, config, dataset, day)  # read once: audit, ledger and dedupe use it
    failed = [v for v in audit(conn, config, dataset, day, staged) if not v.passed]
    if failed:
        raise CsvDataError(
            f"dataset {dataset.name!r} {day}: not published, "
            + "; ".join(f"{v.name}: {v.description}" for v in failed)
        )
    staging = staging_table(config, dataset, day)
    target = TableRef(dataset.target.schema_, dataset.table)
    columns = [c for c in pg_load.target_columns(conn, staging) if c not in _internal()]
    if dataset.target.create and not pg_load.target_columns(conn, target):
        _create_target(
            conn, staging, target, columns, dataset.target.key, dataset.target.touch_column
        )
    ledger = sql.Identifier(config.ingest_schema, "loaded_files")
    staged_rows = staged["staged_rows"]
    if dataset.target.mode == "append":  # a file (key + ETag) already loaded is not appended again
        staged_rows -= conn.execute(
            sql.SQL(
                "DELETE FROM {s} WHERE {f} IN (SELECT file_key FROM {l} WHERE dataset = %s "
                "AND (file_key, file_etag) IN (SELECT x->>'key', x->>'etag' FROM "
                "jsonb_array_elements(%s::jsonb) x))"
            ).format(s=staging.ident, f=sql.Identifier(FILE_COLUMN), l=ledger),
            (dataset.name, json.dumps(staged["files"])),
        ).rowcount
    superseded = 0
    if dataset.target.mode == "upsert" and staged["duplicate_keys"]:
        superseded = pg_load.dedupe(conn, staging, dataset.target.key)
        staged_rows -= superseded
    replace_where = None
    if dataset.target.mode == "replace":
        replace_where = sql.SQL("{} = {}").format(
            sql.Identifier(dataset.target.partition_column), sql.Literal(day)
        )
    counts = pg_load.merge(
        conn,
        staging,
        target,
        columns=columns,
        mode=dataset.target.mode,
        key=dataset.target.key,
        replace_where=replace_where,
        touch_column=dataset.target.touch_column,
        upsert_with="merge",
        staged_rows=staged_rows,
    )
    counts.superseded = superseded
    if len(staged["files"]) == 1:
        per_file = {staged["files"][0]["key"]: counts.staged}
    else:
        per_file = dict(
            conn.execute(
                sql.SQL("SELECT {f}, count(*) FROM {s} GROUP BY 1").format(
                    f=sql.Identifier(FILE_COLUMN), s=staging.ident
                )
            ).fetchall()
        )
    for f in staged["files"]:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (dataset, file_key, file_etag, partition, rows, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dataset, file_key, file_etag) DO NOTHING"
            ).format(ledger),
            (dataset.name, f["key"], f["etag"], day, per_file.get(f["key"], 0), run_id),
        )
    conn.execute(
        sql.SQL("UPDATE {} SET published_at = now() WHERE dataset = %s AND partition = %s").format(
            sql.Identifier(config.ingest_schema, "stage_manifest")
        ),
        (dataset.name, day),
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(staging.ident))
    return counts


def _internal() -> tuple[str, ...]:
    return (FILE_COLUMN, LINE_COLUMN, pg_load.ROW_COLUMN)


def _create_target(conn, staging: TableRef, target: TableRef, columns, key, touch_column) -> None:
    types = pg_load.target_columns(conn, staging)
    defs = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns]
    if touch_column and touch_column not in columns:
        defs.append(
            sql.SQL("{} timestamptz NOT NULL DEFAULT now()").format(sql.Identifier(touch_column))
        )
    if key:
        defs.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
        )
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target.ident, sql.SQL(", ").join(defs)))


def rejects_for(conn, config: CsvConfig, dataset: Dataset, day: dt.date) -> list[dict]:
    """The quarantine of a partition, in file and line order."""
    cur = conn.execute(
        sql.SQL(
            "SELECT file_key, line, column_name, reason, value, record FROM {} "
            "WHERE dataset = %s AND partition = %s ORDER BY file_key, line, column_name"
        ).format(sql.Identifier(config.ingest_schema, "rejects")),
        (dataset.name, day),
    )
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def url_from_secret(secret: dict, name: str) -> str:
    """A Postgres URL from a secret: {"url": ...} or the RDS shape (host, port, username, ...)."""
    if secret.get("url"):
        return secret["url"]
    try:
        user, password, host = secret["username"], secret["password"], secret["host"]
    except KeyError as exc:
        raise ConfigError(
            f"secret {name!r} has neither 'url' nor host/username/password (missing {exc})"
        ) from exc
    return make_conninfo(
        host=host,
        port=str(secret.get("port", 5432)),
        user=user,
        password=password,
        dbname=secret.get("dbname") or secret.get("database") or "postgres",
    )


def published_duplicates(conn, dataset: Dataset) -> int:
    """Keys of the published table held by more than one row (0 if it does not exist yet)."""
    target = TableRef(dataset.target.schema_, dataset.table)
    if not pg_load.target_columns(conn, target):
        return 0
    if set(dataset.target.key) in [set(k) for k in pg_load.unique_keys(conn, target)]:
        return 0  # a primary key or unique index enforces it: no need to scan the table
    return _duplicate_keys(conn, target, dataset.target.key)
