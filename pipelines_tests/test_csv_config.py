"""config.yaml: the repo's file loads; every mistake is named by file, dataset and field."""

import textwrap

import pytest

from sqlgym_pipelines.lib.csv_config import CsvConfigError, load_csv_config

GOOD = """
datasets:
  orders:
    source: {bucket: "${TEST_CSV_BUCKET:-landing}", prefix: orders/}
    schema:
      id: {type: bigint, nullable: false}
      amount: decimal(10,2)
      placed: string
    transforms:
      - parse_date: {column: placed, format: "%Y%m%d"}
    rules:
      - {check: range, column: amount, min: 0}
    target: {schema: shop, key: [id], mode: upsert}
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_repo_config_loads():
    config = load_csv_config()
    assert {"store_sales", "web_signups"} <= set(config.datasets)
    assert config.dataset("store_sales").target.mode == "upsert"


def test_defaults_and_environment_references(tmp_path, monkeypatch):
    config = load_csv_config(write(tmp_path, GOOD))
    orders = config.dataset("orders")
    assert orders.source.bucket == "landing"
    assert orders.table == "orders" and orders.target.schema_ == "shop"
    assert orders.csv.delimiter == "," and orders.csv.header and orders.max_reject_ratio == 0.0
    monkeypatch.setenv("TEST_CSV_BUCKET", "prod-landing")
    assert load_csv_config(write(tmp_path, GOOD)).dataset("orders").source.bucket == "prod-landing"


def test_sqlgym_csv_config_selects_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLGYM_CSV_CONFIG", str(write(tmp_path, GOOD)))
    assert list(load_csv_config().datasets) == ["orders"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("mode: upsert", "mode: merge", r"dataset 'orders': field target.mode: Input should be"),
        ("key: [id], mode: upsert", "mode: upsert", "mode 'upsert' needs key"),
        ("mode: upsert", "mode: replace", "mode 'replace' needs partition_column"),
        ("amount: decimal(10,2)", "amount: money", r"field schema.amount.*unknown type 'money'"),
        ("column: amount, min: 0", "column: amout, min: 0",
         r"field rules\[0\].range: unknown column\(s\) 'amout' \(columns at this step: id, amount, placed\)"),
        ("column: placed,", "column: place,", r"field transforms\[0\].parse_date: unknown column\(s\) 'place'"),
        ("key: [id]", "key: [order_id]", r"field target.key: unknown column\(s\) 'order_id'"),
        ("{check: range, column: amount, min: 0}", "{check: regex, column: amount}",
         "check 'regex' needs pattern"),
        ("{check: range, column: amount, min: 0}", "{check: regex, column: amount, pattern: '(['}",
         "is not a regex"),
        ("source: {", "source: {colour: red, ", r"field source.colour: Extra inputs are not permitted"),
        ("prefix: orders/}", "prefix: orders/, date_regex: '(\\d+)'}", "exactly three groups"),
        ("${TEST_CSV_BUCKET:-landing}", "${TEST_CSV_UNSET_VAR}", r"\$\{TEST_CSV_UNSET_VAR\} is not set"),
        ("  orders:", "  Orders:", "dataset name 'Orders' must be lowercase"),
        ("- parse_date: {column: placed, format: \"%Y%m%d\"}",
         "- {trim: [placed], drop: [placed]}", "a transform has exactly one of"),
        ("- parse_date: {column: placed, format: \"%Y%m%d\"}",
         "- derive: {total: 'amount * nothing_here'}", "the transforms or rules fail"),
    ],
)  # fmt: skip
def test_mistakes_name_the_dataset_and_field(tmp_path, monkeypatch, old, new, message):
    monkeypatch.delenv("TEST_CSV_UNSET_VAR", raising=False)
    assert old in GOOD
    with pytest.raises(CsvConfigError, match=message) as raised:
        load_csv_config(write(tmp_path, GOOD.replace(old, new)))
    assert "config.yaml" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets: {}", "needs a 'datasets:' mapping"),
        ("datasets: [\n", "not valid YAML"),
    ],
)
def test_unusable_files(tmp_path, text, message):
    with pytest.raises(CsvConfigError, match=message):
        load_csv_config(write(tmp_path, text))


def test_missing_file_names_the_variable(tmp_path):
    with pytest.raises(CsvConfigError, match="does not exist.*SQLGYM_CSV_CONFIG"):
        load_csv_config(tmp_path / "nope.yaml")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(CsvConfigError, match=r"no dataset 'x' \(datasets: orders\)"):
        load_csv_config(write(tmp_path, GOOD)).dataset("x")
