"""The manual Athena -> Neon ETL's four parameters (seed 001), typed and checked before any
work: from the launchpad, or from the seed's etl-config.json for direct script execution.

| parameter         | meaning                                                       | default |
|-------------------|---------------------------------------------------------------|---------|
| `target_branch`   | the Neon branch to write (empty: main)                        | main    |
| `data_mode`       | `full` (Athena's rows), `schema-only`, `test-data` (synthetic) | full    |
| `table_filter`    | comma-separated tables and/or two-letter states, e.g. `CA,TX` | all     |
| `date_range_days` | business_dates from today - N days on; 0: all history         | 0       |
"""

import dataclasses
import json
import re
from pathlib import Path

from sqlgym_pipelines.lib.branch_mapping import MAIN_BRANCH
from sqlgym_pipelines.lib.errors import ConfigError

DATA_MODES = ("full", "schema-only", "test-data")
TABLES = ("forecast_data", "forecast_sync_status")
STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
    ]
)
MAX_BRANCH_NAME = 256  # Neon's limit
# Neon refuses control characters; a leading/trailing space or slash is a typo in practice.
_BAD_BRANCH = re.compile(r"[\x00-\x1f\x7f]|^[\s/]|[\s/]$|//")
_CONFIG_KEYS = {
    "targetBranch": "target_branch",
    "dataMode": "data_mode",
    "tableFilter": "table_filter",
    "dateRangeDays": "date_range_days",
    "connectionString": "connection_string",
}


class EtlParamError(ConfigError):
    """A parameter of the manual ETL is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class EtlParams:
    target_branch: str = MAIN_BRANCH
    data_mode: str = "full"
    tables: tuple[str, ...] = TABLES
    states: tuple[str, ...] = ()  # empty: every state
    date_range_days: int = 0
    connection_string: str | None = None  # the seed's direct path: a branch URL given outright

    def as_report(self) -> dict:
        """The parameters as the report shows them (never the connection string)."""
        return {
            "target_branch": self.target_branch,
            "data_mode": self.data_mode,
            "tables": list(self.tables),
            "states": list(self.states),
            "date_range_days": self.date_range_days,
            "connection_string": "***" if self.connection_string else None,
        }


def parse(
    target_branch: str | None = "",
    data_mode: str | None = "full",
    table_filter: str | None = "",
    date_range_days: int | str | None = 0,
    connection_string: str | None = None,
) -> EtlParams:
    """Check every parameter; EtlParamError names the first wrong one and what is allowed."""
    branch = (target_branch or "").strip() or MAIN_BRANCH
    if len(branch) > MAX_BRANCH_NAME or _BAD_BRANCH.search(branch):
        raise EtlParamError(
            f"target_branch {branch!r}: not a name Neon accepts (1 to {MAX_BRANCH_NAME} "
            "characters, no control characters, no leading/trailing space or slash, no '//')"
        )
    mode = (data_mode or "full").strip()
    if mode not in DATA_MODES:
        raise EtlParamError(f"data_mode {mode!r}: use one of {', '.join(DATA_MODES)}")
    tables, states = _filter(table_filter or "")
    days = _days(date_range_days)
    return EtlParams(branch, mode, tables, states, days, connection_string or None)


def _filter(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    tables = [i.lower() for i in items if i.lower() in TABLES]
    states = [i.upper() for i in items if i.upper() in STATES and i.lower() not in TABLES]
    unknown = [i for i in items if i.lower() not in TABLES and i.upper() not in STATES]
    if unknown:
        raise EtlParamError(
            f"table_filter: {', '.join(map(repr, unknown))} is neither a table "
            f"({', '.join(TABLES)}) nor a US state code (e.g. CA, TX)"
        )
    return tuple(dict.fromkeys(tables)) or TABLES, tuple(sorted(set(states)))


def _days(value: int | str | None) -> int:
    if value in (None, ""):
        return 0
    try:
        days = int(value)
    except (TypeError, ValueError):
        raise EtlParamError(f"date_range_days {value!r}: a whole number of days (0: all)") from None
    if isinstance(value, float) or days < 0:
        raise EtlParamError(f"date_range_days {value!r}: a whole number >= 0 (0: all history)")
    return days


def from_config_file(path: str | Path) -> EtlParams:
    """The seed's etl-config.json (targetBranch, dataMode, tableFilter, dateRangeDays,
    connectionString); unknown keys are refused by name."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EtlParamError(f"ETL config {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise EtlParamError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(raw, dict):
        raise EtlParamError(f"{path}: must be a JSON object with {', '.join(_CONFIG_KEYS)}")
    unknown = sorted(set(raw) - set(_CONFIG_KEYS))
    if unknown:
        raise EtlParamError(
            f"{path}: unknown field(s) {', '.join(unknown)} (fields: {', '.join(_CONFIG_KEYS)})"
        )
    try:
        return parse(**{_CONFIG_KEYS[k]: v for k, v in raw.items()})
    except EtlParamError as exc:
        raise EtlParamError(f"{path}: {exc}") from exc
