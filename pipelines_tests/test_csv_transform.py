"""Typing, each transform and each row rule on passing and failing values."""

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from sqlgym_pipelines.lib.csv_config import Dataset
from sqlgym_pipelines.lib.csv_transform import check_dataset, convert, process, timestamp_format


def dataset(schema: dict, transforms=(), rules=(), **target) -> Dataset:
    body = {
        "name": "t",
        "source": {"bucket": "b"},
        "schema": schema,
        "transforms": list(transforms),
        "rules": list(rules),
        "target": {"table": "t", **target},
    }
    ds = Dataset(**body)
    check_dataset(ds, "test.yaml")
    return ds


def frame(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    return pl.DataFrame(
        {**{k: pl.Series(v, dtype=pl.Utf8) for k, v in columns.items()}, "_line": range(2, n + 2)}
    )


def run(ds: Dataset, partition=None, **columns):
    batch = process(ds, frame(**columns), partition)
    return batch.frame, batch.rejects_frame()


def rejects(found: pl.DataFrame) -> list[tuple]:
    return found.select("line", "column", "reason", "value").rows()


@pytest.mark.parametrize(
    ("type_name", "good", "expected", "bad"),
    [
        ("integer", [" 42 ", "-7"], [42, -7], ["4.5", "abc", "99999999999"]),
        ("smallint", ["32767"], [32767], ["32768"]),
        ("bigint", ["9007199254740993"], [9007199254740993], ["1e3"]),
        ("double", ["1.5", "-2e3", "nan"], [1.5, -2000.0, float("nan")], ["x1"]),
        ("decimal(6,2)", ["1234.5", "-0.25", "3.100"], [Decimal("1234.50"), Decimal("-0.25"),
                                                        Decimal("3.10")], ["1.234", "12345.1", "x"]),
        ("boolean", ["true", "F", "yes", "0"], [True, False, True, False], ["maybe"]),
        ("date", ["2024-02-29"], [dt.date(2024, 2, 29)], ["2023-02-29", "29/02/2024"]),
        ("timestamp", ["2024-01-02 03:04:05.123456"], [dt.datetime(2024, 1, 2, 3, 4, 5, 123456)],
         ["yesterday"]),
    ],
)  # fmt: skip
def test_types_convert_or_reject_the_row(type_name, good, expected, bad):
    ds = dataset({"v": type_name})
    out, found = run(ds, v=[*good, *bad, None])
    values = out["v"].to_list()
    assert values[: len(good)] == expected or (
        type_name == "double" and values[2] != values[2] and values[:2] == expected[:2]
    )
    assert values[len(good) :] == [None]  # NULL stays NULL; it is not a conversion failure
    assert [r[3] for r in rejects(found)] == bad
    assert {r[2] for r in rejects(found)} == {f"not a valid {type_name}"}
    assert [r[0] for r in rejects(found)] == list(range(2 + len(good), 2 + len(good) + len(bad)))


def test_timestamptz_reads_offsets_as_utc():
    out, found = run(dataset({"v": "timestamptz"}), v=["2024-01-02T03:04:05+02:00"])
    assert out["v"].to_list() == [dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC)]
    assert found.height == 0


TIMESTAMP_TEXTS = ["2026-01-15 01:02:03", "2026-01-15 1:2:3", "2026-01-15T01:02:03",
                   "2026-01-15 01:02:03.5", "2026-01-15 01:02:03.123456789", " 2026-01-15 01:02:03 ",
                   "2026-01-15 23:59:60", "2026-01-15", "2026-01-15T01:02:03+02:00",
                   "15/01/2026 01:02", "2026-02-30 01:02:03", "2026-01-15 24:00:00"]  # fmt: skip


@pytest.mark.parametrize("type_name", ["timestamp", "timestamptz"])
@pytest.mark.parametrize("text", TIMESTAMP_TEXTS)
def test_timestamps_read_by_a_known_format_equal_polars_inference(type_name, text):
    """A batch whose timestamps all fit a common format is read with it (~8x faster than
    inferring): the values, and the rejects, are those of inference."""
    out, found = run(dataset({"v": type_name}), v=[text, text, None])
    inferred = pl.select(convert(pl.lit(pl.Series([text])), type_name)).item()
    assert out["v"].to_list() == ([None] if inferred is None else [inferred, inferred, None])
    assert found.height == (2 if inferred is None else 0)


def test_timestamp_format_is_chosen_per_batch_and_falls_back_to_inference():
    assert timestamp_format(pl.Series(["2026-01-15 01:02:03", None])) == "%Y-%m-%d %H:%M:%S"
    assert timestamp_format(pl.Series(["2026-01-15T01:02:03.25"])) == "%Y-%m-%dT%H:%M:%S%.f"
    assert timestamp_format(pl.Series(["2026-01-15 01:02:03", "2026-01-15"])) is None


def test_non_nullable_column_rejects_empty_values():
    ds = dataset({"id": {"type": "bigint", "nullable": False}, "x": "string"})
    out, found = run(ds, id=["1", None], x=["a", "b"])
    assert out["id"].to_list() == [1]
    assert rejects(found) == [(3, "id", "empty in a non-nullable column", None)]


def test_optional_column_missing_from_the_file_is_null():
    ds = dataset({"id": "integer", "note": {"type": "string", "required": False}})
    batch = process(ds, pl.DataFrame({"id": ["1"], "_line": [2]}))
    assert batch.frame.select("id", "note").rows() == [(1, None)]


def test_transforms_in_order():
    ds = dataset(
        {"id": "integer", "Name": "string", "price": "string", "qty": "integer", "day": "string",
         "tier": "string", "junk": "string"},
        transforms=[
            {"rename": {"Name": "name"}},
            {"trim": ["name", "price"]},
            {"case": {"name": "title", "tier": "upper"}},
            {"cast": {"price": "decimal(8,2)"}},
            {"parse_date": {"column": "day", "format": "%d.%m.%Y", "to": "sold_on"}},
            {"default": {"tier": "BASIC", "qty": 1}},
            {"derive": {"total": {"expr": "price * qty", "type": "decimal(10,2)"},
                        "label": "concat(name, '-', tier)"}},
            {"drop": ["junk", "day"]},
        ],
    )  # fmt: skip
    out, found = run(
        ds,
        id=["1", "2"],
        Name=["  ada lovelace ", "bob"],
        price=[" 10.50 ", "3"],
        qty=["2", None],
        day=["31.12.2024", "01.01.2025"],
        tier=["gold", None],
        junk=["x", "y"],
    )
    assert found.height == 0
    assert out.columns == [
        "id",
        "name",
        "price",
        "qty",
        "tier",
        "sold_on",
        "total",
        "label",
        "_line",
    ]
    assert out.drop("_line").rows() == [
        (1, "Ada Lovelace", Decimal("10.50"), 2, "GOLD", dt.date(2024, 12, 31), Decimal("21.00"),
         "Ada Lovelace-GOLD"),
        (2, "Bob", Decimal("3.00"), 1, "BASIC", dt.date(2025, 1, 1), Decimal("3.00"), "Bob-BASIC"),
    ]  # fmt: skip


def test_failing_cast_and_parse_date_reject_with_the_format():
    ds = dataset(
        {"a": "string", "d": "string"},
        transforms=[
            {"cast": {"a": "integer"}},
            {"parse_date": {"column": "d", "format": "%d/%m/%Y"}},
        ],
    )
    out, found = run(ds, a=["1", "x", "3"], d=["01/02/2024", "01/02/2024", "2024-02-01"])
    assert out["a"].to_list() == [1]
    assert rejects(found) == [
        (3, "a", "not a valid integer", "x"),
        (4, "d", "not a valid date with format '%d/%m/%Y'", "2024-02-01"),
    ]


def test_rules_pass_and_fail():
    ds = dataset(
        {"id": "integer", "email": "string", "age": "integer", "plan": "string", "when": "date"},
        rules=[
            {"check": "not_null", "columns": ["email"]},
            {"check": "regex", "column": "email", "pattern": r"[^@]+@[^@]+\.[a-z]+"},
            {"check": "range", "column": "age", "min": 18, "max": 65},
            {"check": "allowed_values", "column": "plan", "values": ["free", "pro"]},
            {"check": "range", "column": "when", "min": "2024-01-01"},
        ],
    )
    out, found = run(
        ds,
        id=["1", "2", "3", "4", "5", "6", "7"],
        email=["a@b.io", None, "nope", "c@d.io", "e@f.io", "g@h.io", "x@y.io"],
        age=["30", "30", "30", "17", "66", None, "40"],
        plan=["pro", "pro", "pro", "pro", "pro", "free", "team"],
        when=["2024-05-01"] * 6 + ["2023-12-31"],
    )
    assert out["id"].to_list() == [1, 6]  # NULL passes range / regex / allowed rules
    assert rejects(found) == [
        (3, "email", "is empty (rule not_null)", None),
        (4, "email", r"does not match /[^@]+@[^@]+\.[a-z]+/", "nope"),
        (5, "age", "outside range [18, 65]", "17"),
        (6, "age", "outside range [18, 65]", "66"),
        (8, "plan", "not one of: free, pro", "team"),
        (8, "when", "outside range [2024-01-01, ]", "2023-12-31"),  # one row, both failures
    ]


def test_a_row_failing_twice_is_listed_under_each_column():
    ds = dataset({"a": "integer", "b": "date"})
    out, found = run(ds, a=["x"], b=["never"])
    assert out.height == 0
    assert sorted(r[1] for r in rejects(found)) == ["a", "b"]


def test_replace_mode_fills_or_checks_the_partition_column():
    ds = dataset({"id": "integer"}, mode="replace", partition_column="day")
    out, _ = run(ds, dt.date(2024, 3, 1), id=["1"])
    assert out.select("id", "day").rows() == [(1, dt.date(2024, 3, 1))]
    ds = dataset({"id": "integer", "day": "date"}, mode="replace", partition_column="day")
    out, found = run(ds, dt.date(2024, 3, 1), id=["1", "2"], day=["2024-03-01", "2024-03-02"])
    assert out["id"].to_list() == [1]
    assert rejects(found) == [(3, "day", "not in partition 2024-03-01", "2024-03-02")]


def test_a_derived_value_that_does_not_fit_its_type_rejects_the_row():
    ds = dataset(
        {"a": "string", "b": "string"},
        transforms=[{"derive": {"n": {"expr": "concat(a, b)", "type": "integer"}}}],
    )
    out, found = run(ds, a=["1", "x"], b=["2", "y"])
    assert out.select("a", "n").rows() == [("1", 12)]
    assert rejects(found) == [(3, "n", "not a valid integer", "xy")]
