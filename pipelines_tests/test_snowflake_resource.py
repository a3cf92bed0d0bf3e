"""SnowflakeResource on fakesnow end to end, its Arrow typing, and its connection errors."""

import datetime as dt
import glob
import os
import subprocess
import sys
import tempfile
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pytest

from sqlgym_pipelines.lib.errors import ConfigError, ConnectionFailed, QueryFailed
from sqlgym_pipelines.resources.snowflake import (
    SnowflakeResource,
    arrow_type,
    connection_error_message,
)

pytest.importorskip("fakesnow")
# fakesnow's own note on its internal Arrow copy; nothing we can act on
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")


def _put_visits(resource: SnowflakeResource) -> None:
    with resource.get_connection() as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE OR REPLACE TABLE visits (visit_id INTEGER, amount NUMBER(10, 2),"
            " visited_at TIMESTAMP_NTZ, booked_at TIMESTAMP_TZ, patient VARCHAR(40),"
            " visit_date DATE, is_new BOOLEAN)"
        )
        rows = [
            (1, Decimal("120.50"), dt.datetime(2026, 3, 1, 9, 30, 0, 123456),
             dt.datetime(2026, 2, 28, 18, 0, tzinfo=dt.UTC), "Zoë O'Brien", dt.date(2026, 3, 1), True),
            (2, Decimal("-0.01"), dt.datetime(2026, 3, 2, 0, 0), None, "Bob", dt.date(2026, 3, 2), False),
            (3, None, None, None, None, None, None),
        ]  # fmt: skip
        for row in rows:
            cur.execute("INSERT INTO visits SELECT %s, %s, %s, %s, %s, %s, %s", row)


def test_rows_written_on_one_connection_read_typed_on_another(fake_snowflake):
    _put_visits(fake_snowflake)
    # a fresh resource object (as another run would build it) sees the same data
    reader = SnowflakeResource(
        mode="fakesnow",
        database="SQLGYM",
        schema="CONFLICTS",
        fakesnow_db_path=fake_snowflake.fakesnow_db_path,
    )
    table = reader.fetch_arrow(
        "SELECT visit_id, amount, visited_at, booked_at, patient, visit_date, is_new"
        " FROM visits WHERE visit_id >= %s ORDER BY visit_id",
        (1,),
    )
    assert table.schema == pa.schema(
        [
            ("VISIT_ID", pa.int64()),
            ("AMOUNT", pa.decimal128(10, 2)),
            ("VISITED_AT", pa.timestamp("ns")),
            ("BOOKED_AT", pa.timestamp("ns", tz="UTC")),
            ("PATIENT", pa.string()),
            ("VISIT_DATE", pa.date32()),
            ("IS_NEW", pa.bool_()),
        ]
    )
    assert table.column("VISIT_ID").to_pylist() == [1, 2, 3]
    assert table.column("AMOUNT").to_pylist() == [Decimal("120.50"), Decimal("-0.01"), None]
    assert table.column("VISITED_AT")[0].as_py() == dt.datetime(2026, 3, 1, 9, 30, 0, 123456)
    assert table.column("BOOKED_AT").to_pylist()[:2] == [
        dt.datetime(2026, 2, 28, 18, 0, tzinfo=dt.UTC),
        None,
    ]
    assert table.column("PATIENT").to_pylist() == ["Zoë O'Brien", "Bob", None]
    assert table.column("VISIT_DATE").to_pylist() == [
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 2),
        None,
    ]
    assert table.column("IS_NEW").to_pylist() == [True, False, None]


def test_data_outlives_the_process(fake_snowflake):
    """A demo loads visits in one process (a Dagster run) and reads them in another."""
    code = (
        "from sqlgym_pipelines.resources.snowflake import SnowflakeResource\n"
        f"r = SnowflakeResource(mode='fakesnow', database='SQLGYM', schema='CONFLICTS', fakesnow_db_path={fake_snowflake.fakesnow_db_path!r})\n"
        "with r.get_connection() as c:\n"
        "    c.cursor().execute('CREATE TABLE visits AS SELECT 7 AS visit_id, 3.25::NUMBER(5,2) AS amount')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    table = fake_snowflake.fetch_arrow("SELECT visit_id, amount FROM visits")
    assert table.to_pylist() == [{"VISIT_ID": 7, "AMOUNT": Decimal("3.25")}]


def test_a_second_process_on_the_same_files_gets_a_clear_error(fake_snowflake):
    code = (
        "from sqlgym_pipelines.resources.snowflake import SnowflakeResource\n"
        f"SnowflakeResource(mode='fakesnow', database='SQLGYM', fakesnow_db_path={fake_snowflake.fakesnow_db_path!r}).fetch_arrow('SELECT 1')\n"
    )
    with fake_snowflake.get_connection():  # holds DuckDB's file lock
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    assert proc.returncode == 1
    assert "ConnectionFailed: fakesnow cannot open its database in" in proc.stderr
    assert "one process at a time" in proc.stderr


def test_empty_result_keeps_its_types(fake_snowflake):
    _put_visits(fake_snowflake)
    table = fake_snowflake.fetch_arrow("SELECT visit_id, amount FROM visits WHERE visit_id > 100")
    assert table.num_rows == 0
    assert table.schema.types == [pa.int64(), pa.decimal128(10, 2)]


def test_nested_connections_share_one_fakesnow(fake_snowflake):
    _put_visits(fake_snowflake)
    with fake_snowflake.get_connection() as outer, fake_snowflake.get_connection() as inner:
        outer.cursor().execute("INSERT INTO visits (visit_id) VALUES (4)")
        assert inner.cursor().execute("SELECT count(*) FROM visits").fetchone() == (4,)
    other = SnowflakeResource(
        mode="fakesnow", fakesnow_db_path=fake_snowflake.fakesnow_db_path + "-other"
    )
    with (
        fake_snowflake.get_connection(),
        pytest.raises(ConfigError, match="one fakesnow_db_path at a time"),
        other.get_connection(),
    ):
        pass


def test_bad_sql_is_a_query_error(fake_snowflake):
    with pytest.raises(QueryFailed, match="(?si)rejected the query.*no_such_table"):
        fake_snowflake.fetch_arrow("SELECT * FROM no_such_table")


def test_leaves_no_fakesnow_dirs_in_the_temp_dir(tmp_path):
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "*fakesnow*")))
    in_memory = SnowflakeResource(mode="fakesnow", database="D", schema="S")
    assert in_memory.fetch_arrow("SELECT 1 AS one").to_pylist() == [{"ONE": 1}]
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "*fakesnow*")))
    assert after <= before  # nothing new (and fakesnow's own import-time dir is gone)


def test_schema_is_configured_as_schema_and_secrets_come_from_env(monkeypatch):
    assert SnowflakeResource(schema="PUBLIC").schema_ == "PUBLIC"
    with pytest.raises(ConfigError, match="pass schema="):
        SnowflakeResource(schema_="PUBLIC")
    monkeypatch.setenv("TEST_SF_PASSWORD", "s3cret")

    @dg.asset
    def probe(snowflake: SnowflakeResource) -> str:
        return f"{snowflake.schema_}:{snowflake.password}"

    resource = SnowflakeResource(schema="CONFLICTS", password=dg.EnvVar("TEST_SF_PASSWORD"))
    result = dg.materialize([probe], resources={"snowflake": resource})
    assert result.output_for_node("probe") == "CONFLICTS:s3cret"


def test_unreachable_account_fails_fast_with_a_clear_error():
    # host 127.0.0.1:443 refuses at once, so no network is needed
    bogus = SnowflakeResource(
        account="bogus-account",
        user="svc",
        password="never-shown",
        host="127.0.0.1",
        login_timeout=3,
    )
    with pytest.raises(ConnectionFailed) as info, bogus.get_connection():
        pass
    message = str(info.value)
    assert "cannot connect to Snowflake account 'bogus-account' as 'svc'" in message
    assert "check the account identifier" in message and "never-shown" not in message


def test_missing_account_is_a_config_error():
    with (
        pytest.raises(ConfigError, match="needs account and user"),
        SnowflakeResource(mode="snowflake").get_connection(),
    ):
        pass


def test_error_messages_name_the_fix():
    class FakeError(Exception):
        msg = "250001 (08001): Incorrect username or password was specified."

    text = connection_error_message(FakeError(), account="org-acct", user="svc", login_timeout=5)
    assert text.startswith("cannot connect to Snowflake account 'org-acct' as 'svc': 250001")
    assert "check the user and the password" in text


@pytest.mark.parametrize(
    ("name", "precision", "scale", "expected"),
    [
        ("FIXED", 38, 0, pa.int64()),
        ("FIXED", 12, 4, pa.decimal128(12, 4)),
        ("REAL", None, None, pa.float64()),
        ("TIMESTAMP_NTZ", 0, 9, pa.timestamp("ns")),
        ("TIMESTAMP_LTZ", 0, 3, pa.timestamp("ms", tz="UTC")),
        ("TIMESTAMP_TZ", 0, 6, pa.timestamp("us", tz="UTC")),
        ("VARIANT", None, None, pa.string()),
        ("BINARY", None, None, pa.binary()),
        ("DATE", None, None, pa.date32()),
    ],
)
def test_arrow_types_follow_snowflake_metadata(name, precision, scale, expected):
    assert arrow_type(name, precision, scale) == expected
