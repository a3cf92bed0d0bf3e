"""The CSV ingestion config (config.yaml, the seed's shape): datasets, dialect, schema, rules,
transforms, target. Loaded once, validated whole: every error names the dataset and the field.

Order of work for each file: parse (CSV dialect) -> type the input columns (`schema`) ->
`transforms` in the order listed -> `rules` on the resulting columns -> load into `target`.
Strings may use ${VAR} / ${VAR:-default} to read the environment (bucket names per stage).
"""

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sqlgym_pipelines.lib.errors import ConfigError

ENV_VAR = "SQLGYM_CSV_CONFIG"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "defs" / "csv_ingest" / "config.yaml"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_DECIMAL = re.compile(r"(?:decimal|numeric)\((\d+),\s*(\d+)\)")
SIMPLE_TYPES = (
    "string", "text", "smallint", "integer", "int", "bigint", "float", "double", "real",
    "boolean", "date", "timestamp", "timestamptz",
)  # fmt: skip
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class CsvConfigError(ConfigError):
    """config.yaml is malformed or names a column, type or secret that does not exist."""


def check_type(value: str) -> str:
    value = value.strip().lower()
    if value in SIMPLE_TYPES or _DECIMAL.fullmatch(value):
        return value
    raise ValueError(f"unknown type {value!r}; use one of {', '.join(SIMPLE_TYPES)}, decimal(p,s)")


def decimal_of(type_name: str) -> tuple[int, int] | None:
    match = _DECIMAL.fullmatch(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    bucket: str
    prefix: str = ""
    pattern: str = Field("*.csv", description="glob on the key after the prefix, e.g. '*.csv.gz'")
    date_from: Literal["key", "last_modified"] = "key"
    date_regex: str = Field(
        r"(\d{4})-?(\d{2})-?(\d{2})", description="year, month, day groups in the key"
    )

    @field_validator("date_regex")
    @classmethod
    def _three_groups(cls, value: str) -> str:
        if re.compile(value).groups != 3:
            raise ValueError("needs exactly three groups: year, month, day")
        return value


class Dialect(_Model):
    delimiter: str = ","
    quote: str | None = '"'
    escape: str | None = None
    double_quote: bool = True
    header: bool = True
    encoding: str = "utf-8"
    null_values: tuple[str, ...] = ("",)
    newlines_in_values: bool = True

    @field_validator("delimiter", "quote", "escape")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be one character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        return value


class ColumnSpec(_Model):
    type: str = "string"
    required: bool = True  # the header must have it
    nullable: bool = True
    format: str | None = Field(None, description="strftime format for date/timestamp columns")

    _type = field_validator("type")(classmethod(lambda cls, v: check_type(v)))


class Rule(_Model):
    check: Literal["not_null", "unique", "range", "regex", "allowed_values", "min_rows"]
    columns: tuple[str, ...] = ()
    column: str | None = None
    min: float | str | None = None
    max: float | str | None = None
    pattern: str | None = None
    values: tuple[Any, ...] = ()
    value: int | None = None

    @model_validator(mode="after")
    def _fields_for_check(self) -> "Rule":
        needs = {
            "not_null": ("columns",),
            "unique": ("columns",),
            "range": ("column",),
            "regex": ("column", "pattern"),
            "allowed_values": ("column", "values"),
            "min_rows": ("value",),
        }[self.check]
        missing = [name for name in needs if not getattr(self, name)]
        if missing:
            raise ValueError(f"check {self.check!r} needs {', '.join(missing)}")
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check 'range' needs min and/or max")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regex: {exc}") from exc
        return self

    def referenced(self) -> tuple[str, ...]:
        return self.columns + ((self.column,) if self.column else ())


class ParseDate(_Model):
    column: str
    format: str
    type: Literal["date", "timestamp", "timestamptz"] = "date"
    to: str | None = None


class Derive(_Model):
    expr: str = Field(description="a SQL expression over the columns, e.g. 'price * quantity'")
    type: str | None = None

    _type = field_validator("type")(classmethod(lambda cls, v: v and check_type(v)))


class Transform(_Model):
    """Exactly one of the fields; they run in the order listed."""

    rename: dict[str, str] | None = None
    cast: dict[str, str] | None = None
    trim: tuple[str, ...] | None = None
    case: dict[str, Literal["upper", "lower", "title"]] | None = None
    parse_date: ParseDate | None = None
    default: dict[str, Any] | None = None
    derive: dict[str, Derive | str] | None = None
    drop: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Transform":
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a transform has exactly one of {', '.join(type(self).model_fields)}; got "
                f"{', '.join(given) or 'none'}"
            )
        if self.cast:
            for column, type_name in self.cast.items():
                try:
                    check_type(type_name)
                except ValueError as exc:
                    raise ValueError(f"cast of {column!r}: {exc}") from exc
        return self

    @property
    def kind(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)


class Target(_Model):
    schema_: str = Field("public", alias="schema")
    table: str | None = None
    key: tuple[str, ...] = ()
    mode: Literal["append", "upsert", "replace"] = "append"
    partition_column: str | None = Field(
        None, description="replace: the date column that holds the partition day"
    )
    touch_column: str | None = Field(None, description="upsert: set to now() when a row changes")
    create: bool = True
    secret: str | None = Field(
        None, description="Secrets Manager name of the target DB ({'url': ...} or RDS-style)"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _mode_needs(self) -> "Target":
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode 'upsert' needs key (the columns of the natural key)")
        if self.mode == "replace" and not self.partition_column:
            raise ValueError("mode 'replace' needs partition_column (the date column of the day)")
        return self


class Dataset(_Model):
    name: str = ""
    source: Source
    csv: Dialect = Dialect()
    schema_: dict[str, ColumnSpec] = Field(alias="schema")
    extra_columns: Literal["ignore", "error"] = "ignore"
    transforms: tuple[Transform, ...] = ()
    rules: tuple[Rule, ...] = ()
    max_reject_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    target: Target
    block_size_bytes: Annotated[int, Field(ge=1 << 16)] = 4 << 20  # CSV read per batch

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_", mode="before")
    @classmethod
    def _shorthand(cls, value):
        """`column: integer` is short for `column: {type: integer}`."""
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        return dict(self.schema_)

    @property
    def table(self) -> str:
        return self.target.table or self.name


class CsvConfig(_Model):
    ingest_schema: str = Field("sqlgym_csv", description="rejects, stage manifests, file ledger")
    staging_schema: str = "sqlgym_csv_staging"
    datasets: dict[str, Dataset]
    path: str = ""

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise CsvConfigError(
                f"{self.path}: no dataset {name!r} (datasets: {', '.join(self.datasets)})"
            )
        return self.datasets[name]


def config_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_csv_config(path: str | Path | None = None) -> CsvConfig:
    """Read, expand ${VAR}s, validate; CsvConfigError names the file, the dataset and the field."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise CsvConfigError(f"CSV config {path} does not exist (set {ENV_VAR})") from exc
    except yaml.YAMLError as exc:
        raise CsvConfigError(f"{path}: not valid YAML: {exc}") from exc
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("datasets"), dict)
        or not raw["datasets"]
    ):
        raise CsvConfigError(f"{path}: needs a 'datasets:' mapping of name -> dataset")
    raw = _expand(raw, str(path))
    for name, body in raw["datasets"].items():
        if not _NAME.fullmatch(str(name)):
            raise CsvConfigError(
                f"{path}: dataset name {name!r} must be lowercase letters, digits, _ "
                "(it names assets and tables)"
            )
        if isinstance(body, dict):
            body["name"] = name
    try:
        config = CsvConfig(**raw, path=str(path))
    except ValidationError as exc:
        raise CsvConfigError(_describe(path, exc)) from exc
    from sqlgym_pipelines.lib.csv_transform import check_dataset  # columns flow through transforms

    for dataset in config.datasets.values():
        check_dataset(dataset, str(path))
    return config


def _expand(value, where: str):
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: _env_value(m, where), value)
    return value


def _env_value(match: re.Match, where: str) -> str:
    name, default = match.group(1), match.group(2)
    value = os.environ.get(name) or default
    if value is None:
        raise CsvConfigError(f"{where}: ${{{name}}} is not set (give it a value or a :-default)")
    return value


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if len(loc) >= 2 and loc[0] == "datasets":
            where = f"dataset {loc[1]!r}: field {'.'.join(loc[2:]) or '(dataset)'}"
        else:
            where = f"field {'.'.join(loc)}"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {where}: {message}")
    return "\n".join(lines)
