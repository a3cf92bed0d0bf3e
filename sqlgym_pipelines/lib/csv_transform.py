"""Type, transform and check one batch of CSV strings (polars): good rows out, rejects listed.

A row fails when a value does not convert to its declared type, a non-nullable column is
empty, a transform cannot convert it, or a rule rejects it. Every failure becomes one reject
(line, column, reason, value); a row with several failures is rejected once with all of them.
`unique` rules and `min_rows` need the whole file: they are enforced in the staging table.
"""

import dataclasses
import datetime as dt

import polars as pl

from sqlgym_pipelines.lib.csv_config import (
    CsvConfigError,
    Dataset,
    Rule,
    Transform,
    check_type,
    decimal_of,
)
from sqlgym_pipelines.lib.csv_read import LINE

REJECT_SCHEMA = {"line": pl.Int64, "column": pl.Utf8, "reason": pl.Utf8, "value": pl.Utf8}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_DTYPES = {
    "string": pl.Utf8, "text": pl.Utf8, "smallint": pl.Int16, "integer": pl.Int32,
    "int": pl.Int32, "bigint": pl.Int64, "float": pl.Float64, "double": pl.Float64,
    "real": pl.Float32, "boolean": pl.Boolean, "date": pl.Date,
    "timestamp": pl.Datetime("us"), "timestamptz": pl.Datetime("us", "UTC"),
}  # fmt: skip


def dtype(type_name: str) -> pl.DataType:
    type_name = check_type(type_name)
    decimal = decimal_of(type_name)
    return pl.Decimal(*decimal) if decimal else _DTYPES[type_name]


def convert(expr: pl.Expr, type_name: str, fmt: str | None = None) -> pl.Expr:
    """A string expression as type_name; a value that does not convert becomes null."""
    type_name = check_type(type_name)
    target = dtype(type_name)
    text = expr.str.strip_chars()
    if target == pl.Utf8:
        return expr
    if target == pl.Boolean:
        lower = text.str.to_lowercase()
        return (
            pl.when(lower.is_in(_TRUE)).then(True).when(lower.is_in(_FALSE)).then(False)
            .otherwise(None).cast(pl.Boolean)
        )  # fmt: skip
    # cache=False: polars' per-value cache costs more than it saves (even on 365 distinct dates)
    if target == pl.Date:
        return text.str.to_date(fmt or "%Y-%m-%d", strict=False, cache=False)
    if isinstance(target, pl.Datetime):
        return text.str.to_datetime(
            fmt, strict=False, time_unit="us", time_zone=target.time_zone, cache=False
        )
    decimal = decimal_of(type_name)
    if decimal:  # no silent rounding: more fractional digits than the scale is a reject
        precision, scale = decimal
        exact = rf"^[+-]?(\d{{1,{max(precision - scale, 1)}}}(\.\d{{0,{scale}}}0*)?|\.\d{{1,{scale}}}0*)$"
        return pl.when(text.str.contains(exact)).then(text.cast(target, strict=False))
    return text.cast(target, strict=False)


# Tried, in order, before polars' format inference (which reads a timestamp ~8x slower): the
# first that reads every value of a batch is that batch's format.
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f",
                     "%Y-%m-%dT%H:%M:%S%.f")  # fmt: skip


def timestamp_format(values: pl.Series) -> str | None:
    """The first of TIMESTAMP_FORMATS that reads every non-null value; None: infer per value."""
    text = values.str.strip_chars()
    for fmt in TIMESTAMP_FORMATS:
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="us", cache=False)
        if parsed.null_count() == text.null_count():
            return fmt
    return None


def convert_any(expr: pl.Expr, current: pl.DataType, type_name: str) -> pl.Expr:
    if current == pl.Utf8:
        return convert(expr, type_name)
    return expr.cast(dtype(type_name), strict=False)


@dataclasses.dataclass(frozen=True)
class Step:
    column: str
    new: pl.Expr | None  # None: a check that leaves the value as it is
    ok: pl.Expr | None  # None: the value was null or `new` made something of it
    reason: str
    name: str | None = None


class Batch:
    """One batch on its way through the dataset's steps: good rows and the rejects so far."""

    def __init__(self, frame: pl.DataFrame):
        self.raw = frame  # the strings as read, for the quarantine's record
        self.frame = frame
        self.rejects: list[pl.DataFrame] = []

    def apply_all(self, steps: list["Step"]) -> None:
        """Independent steps evaluated together: a row is rejected once, with every failure."""
        if not steps:
            return
        news = [s.new.alias(f"__new{i}") for i, s in enumerate(steps) if s.new is not None]
        oks = [
            (
                pl.col(s.column).is_null() | pl.col(f"__new{i}").is_not_null()
                if s.ok is None
                else s.ok
            )
            .fill_null(True)
            .alias(f"__ok{i}")
            for i, s in enumerate(steps)
        ]  # a conversion's check reads its result: the conversion runs once, not twice
        checked = self.frame.with_columns(*news).with_columns(*oks)
        failed = checked.select(
            pl.any_horizontal(~pl.col(f"__ok{i}") for i in range(len(steps))).any()
        ).item()
        for i, step in enumerate(steps if failed else ()):
            bad = checked.filter(~pl.col(f"__ok{i}"))
            if bad.height:
                self.rejects.append(
                    bad.select(
                        pl.col(LINE).alias("line"),
                        pl.lit(step.name or step.column).alias("column"),
                        pl.lit(step.reason).alias("reason"),
                        pl.col(step.column).cast(pl.Utf8).alias("value"),
                    )
                )
        writes = [i for i, s in enumerate(steps) if s.new is not None]
        temporary = [f"__new{i}" for i in writes] + [f"__ok{i}" for i in range(len(steps))]
        if failed:
            checked = checked.filter(pl.all_horizontal(f"__ok{i}" for i in range(len(steps))))
        self.frame = checked.with_columns(
            pl.col(f"__new{i}").alias(steps[i].name or steps[i].column) for i in writes
        ).drop(temporary)

    def convert(
        self, column: str, type_name: str, fmt: str | None = None, *, to: str | None = None
    ):
        self.apply_all([self.conversion(column, type_name, fmt, to=to)])

    def conversion(
        self, column: str, type_name: str, fmt: str | None = None, *, to: str | None = None
    ) -> "Step":
        current = self.frame.schema[column]
        parse = fmt
        if parse is None and current == pl.Utf8 and isinstance(dtype(type_name), pl.Datetime):
            parse = timestamp_format(self.frame[column])
        new = (
            convert(pl.col(column), type_name, parse)
            if current == pl.Utf8
            else convert_any(pl.col(column), current, type_name)
        )
        shown = f"{type_name} with format {fmt!r}" if fmt else type_name
        return Step(column, new, None, f"not a valid {shown}", to)

    def rejects_frame(self) -> pl.DataFrame:
        if not self.rejects:
            return pl.DataFrame(schema=REJECT_SCHEMA)
        return pl.concat([r.cast(REJECT_SCHEMA) for r in self.rejects])


def process(dataset: Dataset, frame: pl.DataFrame, partition: dt.date | None = None) -> Batch:
    """Steps of the dataset on a frame of strings (input names + _line)."""
    batch = Batch(frame)
    missing = [n for n in dataset.columns if n not in frame.columns]  # optional, not in file
    batch.frame = batch.frame.with_columns(pl.lit(None, pl.Utf8).alias(n) for n in missing)
    steps = []
    for name, spec in dataset.columns.items():
        if spec.type not in ("string", "text"):
            steps.append(batch.conversion(name, spec.type, spec.format))
        if not spec.nullable:
            steps.append(
                Step(name, None, pl.col(name).is_not_null(), "empty in a non-nullable column")
            )
    batch.apply_all(steps)
    batch.frame = batch.frame.select([*dataset.columns, LINE])
    for transform in dataset.transforms:
        _transform(batch, transform)
    batch.apply_all([step for rule in dataset.rules for step in _rule(batch, rule)])
    if dataset.target.mode == "replace" and partition is not None:
        _partition_column(batch, dataset.target.partition_column, partition)
    batch.frame = batch.frame.select(pl.exclude(LINE), LINE)
    return batch


def _transform(batch: Batch, t: Transform) -> None:
    kind = t.kind
    if kind == "rename":
        batch.frame = batch.frame.rename(t.rename)
    elif kind == "cast":
        for column, type_name in t.cast.items():
            batch.convert(column, type_name)
    elif kind == "trim":
        batch.frame = batch.frame.with_columns(pl.col(c).str.strip_chars() for c in t.trim)
    elif kind == "case":
        cases = {"upper": "to_uppercase", "lower": "to_lowercase", "title": "to_titlecase"}
        batch.frame = batch.frame.with_columns(
            getattr(pl.col(c).str, cases[how])() for c, how in t.case.items()
        )
    elif kind == "parse_date":
        p = t.parse_date
        batch.convert(p.column, p.type, p.format, to=p.to)
    elif kind == "default":
        batch.frame = batch.frame.with_columns(
            pl.col(c).fill_null(pl.lit(v).cast(batch.frame.schema[c])) for c, v in t.default.items()
        )
    elif kind == "derive":
        for name, spec in t.derive.items():
            expr, type_name = (spec, None) if isinstance(spec, str) else (spec.expr, spec.type)
            batch.frame = batch.frame.with_columns(pl.sql_expr(expr).alias(name))
            if type_name:  # a value that does not fit the declared type rejects its row
                batch.convert(name, type_name)
    elif kind == "drop":
        batch.frame = batch.frame.drop(t.drop)


def _rule(batch: Batch, rule: Rule) -> list[Step]:
    """The row-level steps of a rule (unique and min_rows are enforced in the staging table)."""
    check, c = rule.check, rule.column
    if check == "not_null":
        return [
            Step(n, None, pl.col(n).is_not_null(), "is empty (rule not_null)") for n in rule.columns
        ]
    if check == "range":
        ok, kind = pl.lit(True), batch.frame.schema[c]
        if rule.min is not None:
            ok = ok & (pl.col(c) >= _bound(rule.min, kind))
        if rule.max is not None:
            ok = ok & (pl.col(c) <= _bound(rule.max, kind))
        return [Step(c, None, ok, f"outside range [{_show(rule.min)}, {_show(rule.max)}]")]
    if check == "regex":
        ok = pl.col(c).cast(pl.Utf8).str.contains(f"^(?:{rule.pattern})$")
        return [Step(c, None, ok, f"does not match /{rule.pattern}/")]
    if check == "allowed_values":
        allowed = pl.Series(list(rule.values)).cast(batch.frame.schema[c], strict=False)
        shown = ", ".join(map(str, rule.values[:10])) + (", ..." if len(rule.values) > 10 else "")
        return [Step(c, None, pl.col(c).is_in(allowed.implode()), f"not one of: {shown}")]
    return []


def _partition_column(batch: Batch, column: str, partition: dt.date) -> None:
    if column not in batch.frame.columns:
        batch.frame = batch.frame.with_columns(pl.lit(partition).alias(column))
        return
    day = pl.col(column).cast(pl.Date, strict=False)
    batch.apply_all([Step(column, None, day == partition, f"not in partition {partition}")])


def _bound(value, kind: pl.DataType):
    if isinstance(value, str):
        return pl.lit(value).cast(pl.Utf8).pipe(lambda e: convert(e, _type_name(kind)))
    return pl.lit(value)


def _type_name(kind: pl.DataType) -> str:
    if kind == pl.Date:
        return "date"
    if isinstance(kind, pl.Datetime):
        return "timestamptz" if kind.time_zone else "timestamp"
    return "string"


def _show(value) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_dataset(dataset: Dataset, path: str) -> pl.Schema:
    """Columns referenced by transforms, rules and the target exist when they are used:
    runs the steps on an empty frame. Returns the output schema (the target's columns)."""
    where = f"{path}: dataset {dataset.name!r}"
    columns = list(dataset.columns)
    for i, t in enumerate(dataset.transforms):
        _need(where, f"transforms[{i}].{t.kind}", _referenced(t), columns)
        if t.kind == "rename":
            columns = [t.rename.get(c, c) for c in columns]
        elif t.kind == "parse_date" and t.parse_date.to:
            columns.append(t.parse_date.to)
        elif t.kind == "derive":
            columns.extend(n for n in t.derive if n not in columns)
        elif t.kind == "drop":
            columns = [c for c in columns if c not in t.drop]
    for i, rule in enumerate(dataset.rules):
        _need(where, f"rules[{i}].{rule.check}", rule.referenced(), columns)
    _need(where, "target.key", dataset.target.key, columns)
    empty = pl.DataFrame(schema={**{c: pl.Utf8 for c in dataset.columns}, LINE: pl.Int64})
    try:
        batch = process(dataset, empty, dt.date(2000, 1, 1))
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        raise CsvConfigError(
            f"{where}: the transforms or rules fail on its columns: {exc}"
        ) from exc
    return batch.frame.drop(LINE).schema


def _referenced(t: Transform) -> tuple[str, ...]:
    value = getattr(t, t.kind)
    if t.kind == "parse_date":
        return (value.column,)
    if t.kind == "derive":
        return ()  # checked by evaluating the expression
    return tuple(value)


def _need(where: str, field: str, names, columns: list[str]) -> None:
    missing = [n for n in names if n not in columns]
    if missing:
        raise CsvConfigError(
            f"{where}: field {field}: unknown column(s) {', '.join(map(repr, missing))} "
            f"(columns at this step: {', '.join(columns)})"
        )
