"""The manual ETL's artifacts (seed 001): etl-manual.log, etl-report.json and
etl-validation-report.json, per run, in a local directory or under an S3 prefix.
Every line and value passes through redaction: no password or key reaches an artifact."""

import datetime as dt
import json
import os
import re
from pathlib import Path

from sqlgym_pipelines.lib import pg

ENV_VAR = "SQLGYM_ETL_ARTIFACTS"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".local" / "artifacts" / "etl"
_SECRETS = re.compile(r"(?i)(api[_-]?key|token|secret|password)(\"?\s*[:=]\s*\"?)([^\s\",}]+)")


def scrub(text: str) -> str:
    """Passwords in URLs / conninfo and key=value secrets replaced by ***."""
    return _SECRETS.sub(r"\1\2***", pg.redact(text))


class RunLog:
    """The run's log lines, kept for etl-manual.log and sent on to a logger."""

    def __init__(self, forward=None):
        self.lines: list[str] = []
        self._forward = forward

    def __call__(self, message: str) -> None:
        line = f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {scrub(message)}"
        self.lines.append(line)
        if self._forward:
            self._forward(scrub(message))


def location(run_id: str) -> str:
    base = os.environ.get(ENV_VAR) or str(DEFAULT_DIR)
    return f"{base.rstrip('/')}/{run_id}"


def write(where: str, files: dict[str, str], s3_client=None) -> dict[str, str]:
    """Write the artifacts under `where` (a directory or s3://bucket/prefix); their URIs."""
    uris = {}
    for name, text in files.items():
        body = scrub(text)
        if where.startswith("s3://"):
            bucket, _, prefix = where.removeprefix("s3://").partition("/")
            key = f"{prefix}/{name}".lstrip("/")
            s3_client.put_object(Bucket=bucket, Key=key, Body=body.encode())
            uris[name] = f"s3://{bucket}/{key}"
        else:
            path = Path(where) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            uris[name] = str(path)
    return uris


def as_json(value) -> str:
    return json.dumps(value, indent=2, default=str) + "\n"
