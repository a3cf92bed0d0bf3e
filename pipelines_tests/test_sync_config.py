"""The sync config: its shape errors, loading, and the check against a live catalog."""

import copy
import json

import pytest

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.sync_config import (
    DEFAULT_PATH,
    TableConfigError,
    load_sync_config,
    parse_sync_config,
    validate_against_catalog,
)
from sqlgym_pipelines.local.demo_sqlgym import FULL_TABLES, INCREMENTAL_TABLES, seed_sqlgym

USERS = {"pk": "id", "updated_col": "updated_at", "sync_enabled": True, "sync_type": "incremental", "priority": 1}  # fmt: skip
BASE = {"tables": {"users": USERS}}


def _with(path: str, value) -> dict:
    """BASE with one field set ("tables.users.priority") or removed (value=...)."""
    data = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tables.users.updatedcol", "x", "table 'users': unknown field 'updatedcol' (did you mean 'updated_col'?)"),
        ("table", {}, "<dict>: unknown field 'table' (did you mean 'tables'?)"),
        ("defaults.lag_secs", 5, "defaults: unknown field 'lag_secs' (did you mean 'lag_seconds'?)"),
        ("tables.users.zzz", 1, "table 'users': unknown field 'zzz' (allowed: pk, sync_type,"),
        ("tables.users.priority", "1", "table 'users': field 'priority' must be a positive integer, got '1' (string)"),
        ("tables.users.priority", 0, "table 'users': field 'priority' must be a positive integer, got 0 (number)"),
        ("tables.users.priority", True, "field 'priority' must be a positive integer, got True (boolean)"),
        ("tables.users.lag_seconds", -1, "table 'users': field 'lag_seconds' must be a non-negative integer, got -1"),
        ("tables.users.sync_enabled", "yes", "table 'users': field 'sync_enabled' must be true or false, got 'yes' (string)"),
        ("tables.users.schema", "", "table 'users': field 'schema' must be a non-empty string, got ''"),
        ("tables.users.sync_type", "delta", "table 'users': field 'sync_type' must be 'incremental' or 'full', got 'delta'"),
        ("tables.users.sync_type", ..., "table 'users': field 'sync_type' is required"),
        ("tables.users.pk", ..., "table 'users': field 'pk' is required"),
        ("tables.users.pk", [], "table 'users': field 'pk' must be a column name or a non-empty list of them, got []"),
        ("tables.users.pk", ["id", "id"], "table 'users': field 'pk' lists 'id' twice"),
        ("tables.users.updated_col", None, "table 'users': sync_type 'incremental' needs 'updated_col' or 'cursor'"),
        ("tables.users.cursor", "now(); DROP TABLE users", "table 'users': field 'cursor' must be one SQL expression, without ';'"),
        ("tables.users.columns", "id", "table 'users': field 'columns' must be a list of names, got 'id'"),
        ("tables.users.exclude_columns", ["email"], None),  # valid alone; with columns below
        ("tables.Users", USERS, "table 'Users': the name is the lake's S3 path segment and Athena table name"),
        ("tables._metadata", USERS, "table '_metadata': the name is the lake's S3 path segment"),
        ("tables.a/b", USERS, 'name the Postgres table in "source_table" (e.g. "source_table": \'a/b\')'),
        ("tables.users_v2", {**USERS, "source_table": "users"}, "tables 'users' and 'users_v2' both configure public.users"),
        ("tables.users", "yes", "table 'users': must be an object of settings, got string"),
        ("tables", {}, "'tables' must be a non-empty object of table name -> settings"),
        ("defaults", [], "'defaults' must be an object, got array"),
    ],
)  # fmt: skip
def test_shape_errors_name_the_table_and_the_field(path, value, message):
    data = _with(path, value)
    if message is None:
        parse_sync_config(data)
        data["tables"]["users"]["columns"] = ["id"]
        message = "table 'users': set either 'columns' (include) or 'exclude_columns', not both"
    with pytest.raises(ConfigError) as err:
        parse_sync_config(data)
    assert message in str(err.value)


def test_defaults_apply_and_tables_override_them():
    data = {
        "defaults": {"schema": "app", "lag_seconds": 300, "batch_rows": 5000},
        "tables": {
            "users": {**USERS, "lag_seconds": 0},
            "events": {"pk": ["a", "b"], "sync_type": "full", "schema": "public"},
            "users_public": {**USERS, "schema": "public", "source_table": "users"},
        },
    }
    config = parse_sync_config(data)
    users, events, users_public = config.tables
    assert (users.schema, users.lag_seconds, users.batch_rows) == ("app", 0, 5000)
    assert (events.pk, events.schema, events.lag_seconds) == (("a", "b"), "public", 300)
    assert (events.priority, events.sync_enabled, events.updated_col) == (100, True, None)
    assert users_public.qualified_name == "public.users"  # another schema: not a duplicate
    # A schema from defaults counts when looking for duplicates.
    data["tables"]["users_again"] = {**USERS, "source_table": "users"}
    with pytest.raises(
        ConfigError, match="tables 'users' and 'users_again' both configure app.users"
    ):
        parse_sync_config(data)


def test_enabled_tables_in_priority_then_name_order():
    tables = {
        "zeta": {**USERS, "priority": 1},
        "alpha": {**USERS, "priority": 2, "source_table": "a"},
        "beta": {**USERS, "priority": 1, "source_table": "b"},
        "off": {**USERS, "sync_enabled": False, "source_table": "c"},
    }
    config = parse_sync_config({"tables": tables})
    assert [t.name for t in config.enabled_tables()] == ["beta", "zeta", "alpha"]
    assert config.table("off").sync_enabled is False
    with pytest.raises(ConfigError, match="no table 'alphaa' \\(did you mean 'alpha'\\?\\)"):
        config.table("alphaa")


def test_file_errors_name_the_path_and_position(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"cannot read sync config {missing}: No such file"):
        load_sync_config(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "tables": {\n    "users": {"pk": "id",}\n  }\n}\n')
    with pytest.raises(ConfigError, match=f"{bad}:3:26: invalid JSON: Expecting property name"):
        load_sync_config(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"tables": {"users": {"pk": "id", "sync_type": "full"}, "users": {}}}')
    with pytest.raises(ConfigError, match=f"{dup}: key 'users' appears twice in one JSON object"):
        load_sync_config(dup)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_with("tables.users.priority", -3)))
    with pytest.raises(ConfigError, match=f"{wrong}: table 'users': field 'priority'"):
        load_sync_config(wrong)


def test_env_var_points_at_the_config_and_an_argument_wins(tmp_path, monkeypatch):
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"tables": {"orders": {"pk": "order_id", "sync_type": "full"}}}))
    monkeypatch.setenv("SQLGYM_SYNC_CONFIG", str(own))
    assert [t.name for t in load_sync_config().tables] == ["orders"]
    assert load_sync_config().source == str(own)
    assert load_sync_config(DEFAULT_PATH).source == str(DEFAULT_PATH)
    monkeypatch.delenv("SQLGYM_SYNC_CONFIG")
    assert load_sync_config().source == str(DEFAULT_PATH)


def test_repo_default_config_validates_against_the_sqlgym_database(pg_db, monkeypatch):
    monkeypatch.delenv("SQLGYM_SYNC_CONFIG", raising=False)
    seed_sqlgym(pg_db, scale=0.1)
    config = load_sync_config()
    assert {t.name for t in config.tables} == set(INCREMENTAL_TABLES + FULL_TABLES)
    with pg.connection(pg_db) as conn:
        resolved = validate_against_catalog(conn, config)
        catalog = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'public.users'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
        by_name = {r.name: r for r in resolved}
        users = by_name["users"]
        assert users.columns == tuple(c for (c,) in catalog)
        assert users.column_types[users.columns.index("email")] == "email_address"
        assert users.cursor_sql.as_string(conn) == '"updated_at"'
        assert users.relation.as_string(conn) == '"public"."users"'
    assert [r.name for r in resolved] == [t.name for t in config.enabled_tables()]
    assert resolved[0].config.priority == 1 and resolved[-1].config.priority == 4
    assert {n for n, r in by_name.items() if r.cursor_type == "timestamptz"} == set(
        INCREMENTAL_TABLES
    )
    assert all(by_name[n].cursor_sql is None for n in FULL_TABLES)


SALES_DDL = """
CREATE SCHEMA "Sales";
CREATE DOMAIN stamp AS timestamp;
CREATE TABLE "Sales"."OrderLines" (
    "OrderId" bigint, "Line" int, note text, "Secret" text,
    created_at timestamptz NOT NULL, "ModifiedAt" stamp, version bigint, day date,
    PRIMARY KEY ("OrderId", "Line")
);
ALTER TABLE "Sales"."OrderLines" DROP COLUMN note;
CREATE TABLE "Sales".customers (id int PRIMARY KEY);
"""
LINES = {"schema": "Sales", "source_table": "OrderLines", "pk": ["OrderId", "Line"]}


@pytest.fixture
def sales_db(pg_db):
    with pg.connection(pg_db) as conn:
        conn.execute(SALES_DDL)
    return pg_db


def _resolve(url: str, **table):
    config = parse_sync_config({"tables": {"order_lines": {**LINES, **table}}})
    with pg.connection(url) as conn:
        (resolved,) = validate_against_catalog(conn, config)
        return resolved


def test_mixed_case_schema_composite_pk_and_cursor_expression(sales_db):
    resolved = _resolve(sales_db, sync_type="incremental", cursor='COALESCE("ModifiedAt", created_at)', exclude_columns=["Secret"])  # fmt: skip
    assert resolved.columns == ("OrderId", "Line", "created_at", "ModifiedAt", "version", "day")
    assert resolved.column_types == ("bigint", "integer", "timestamp with time zone", "stamp", "bigint", "date")  # fmt: skip
    assert resolved.cursor_type == "timestamptz"
    with pg.connection(sales_db) as conn:
        assert resolved.relation.as_string(conn) == '"Sales"."OrderLines"'
        assert resolved.cursor_sql.as_string(conn) == 'COALESCE("ModifiedAt", created_at)'
    domain = _resolve(sales_db, sync_type="incremental", updated_col="ModifiedAt", columns=["Line", "OrderId"])  # fmt: skip
    assert (domain.columns, domain.cursor_type) == (("OrderId", "Line"), "timestamp")
    full = _resolve(sales_db, sync_type="full", updated_col="version")  # full: type not checked
    assert (full.cursor_sql, full.cursor_type) == (None, None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"source_table": "orderlines"}, "table 'order_lines': Sales.orderlines does not exist (did you mean 'OrderLines'?) (tables in Sales: OrderLines, customers)"),
        ({"schema": "sales"}, "table 'order_lines': sales.OrderLines does not exist (schema 'sales' has no tables)"),
        ({"pk": ["OrderId", "line"]}, "table 'order_lines' has no column 'line' (columns: OrderId, Line, Secret, created_at, ModifiedAt, version, day): fix pk, did you mean 'Line'?"),
        ({"updated_col": "modifiedat", "sync_type": "incremental"}, "table 'order_lines' has no column 'modifiedat' (columns: OrderId, Line, Secret, created_at, ModifiedAt, version, day): fix updated_col, did you mean 'ModifiedAt'?"),
        ({"updated_col": "note"}, "table 'order_lines' has no column 'note' (columns: OrderId, Line, Secret, created_at, ModifiedAt, version, day): fix updated_col"),
        ({"columns": ["OrderId", "Line", "Secrets"]}, "has no column 'Secrets' (columns: OrderId, Line, Secret, created_at, ModifiedAt, version, day): fix columns, did you mean 'Secret'?"),
        ({"exclude_columns": ["secret"]}, "has no column 'secret' (columns: OrderId, Line, Secret, created_at, ModifiedAt, version, day): fix exclude_columns"),
        ({"exclude_columns": ["Line"]}, "table 'order_lines': pk column 'Line' must be selected (check columns/exclude_columns)"),
        ({"columns": ["OrderId"]}, "table 'order_lines': pk column 'Line' must be selected"),
        ({"updated_col": "version", "sync_type": "incremental"}, "table 'order_lines': updated_col 'version' has type bigint; it must be timestamptz or timestamp (daily partitions are days of cursor time)"),
        ({"cursor": "day", "sync_type": "incremental"}, "table 'order_lines': cursor 'day' has type date; it must be timestamptz or timestamp"),
        ({"cursor": "COALESCE(modified_at, created_at)", "sync_type": "incremental"}, "table 'order_lines': cursor 'COALESCE(modified_at, created_at)' does not run on Sales.OrderLines: column \"modified_at\" does not exist"),
    ],
)  # fmt: skip
def test_catalog_errors_name_the_table_and_its_columns(sales_db, table, message):
    with pytest.raises(TableConfigError) as err:
        _resolve(sales_db, **{"sync_type": "full", **table})
    assert message in str(err.value)


def test_only_enabled_tables_are_checked(sales_db):
    config = parse_sync_config(
        {"tables": {"gone": {"pk": "id", "sync_type": "full", "sync_enabled": False}}}
    )
    with pg.connection(sales_db) as conn:
        assert validate_against_catalog(conn, config) == []


def test_a_failed_cursor_probe_leaves_the_transaction_usable(sales_db):
    bad = {**LINES, "sync_type": "incremental", "cursor": "no_such_column"}
    config = parse_sync_config({"tables": {"order_lines": bad}})
    with pg.connection(sales_db) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        with pytest.raises(TableConfigError, match="no_such_column"):
            validate_against_catalog(conn, config)
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
