"""Task 01: visits from Snowflake (fakesnow) into the Postgres staging table, by VisitDate."""

import datetime as dt
import uuid

import pyarrow as pa
import pytest
from psycopg import sql

from sqlgym_pipelines.lib import conflict_task02, conflict_visits, pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.local.demo_conflicts import put_visits, visit_rows

pytest.importorskip("fakesnow")
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

DAY = dt.date(2026, 3, 2)
NEXT = DAY + dt.timedelta(days=1)


@pytest.fixture
def schema(pg_db) -> str:
    name = f"c_{uuid.uuid4().hex[:8]}"
    with pg.connection(pg_db) as conn:
        conflict_task02.ensure_schema(conn, name)
    return name


def _staged(url: str, schema: str) -> list[dict]:
    names = list(conflict_visits.ARROW_TYPES)
    with pg.connection(url) as conn:
        cur = conn.execute(
            sql.SQL('SELECT {} FROM {}.visits ORDER BY "VisitDate", "VisitID"').format(
                sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema)
            )
        )
        return [dict(zip(names, row, strict=True)) for row in cur]


def _stage(fake_snowflake, url, schema, days) -> dict:
    with pg.connection(url) as conn:
        return conflict_visits.stage_days(
            conn, schema, days, conflict_visits.fetcher(fake_snowflake, "VISITS")
        )


def test_days_are_copied_exactly_and_a_rerun_replaces_them(fake_snowflake, pg_db, schema):
    day1 = visit_rows(DAY, 6, seed=1)
    day2 = visit_rows(NEXT, 4, seed=2, first_id=1000)
    edge = pa.Table.from_pylist(
        [{**day1.slice(0, 1).to_pylist()[0], "VisitID": 999,
          "SchStartTime": dt.datetime(2026, 3, 2, 9, 0, 0, 123456), "VisitStartTime": None,
          "VisitEndTime": None, "PatientLatitude": None, "ProviderName": 'Zoë "Z" O\'Brien, RN'}],
        schema=day1.schema,
    )  # fmt: skip
    put_visits(fake_snowflake, "VISITS", pa.concat_tables([day1, day2, edge]), replace=True)
    assert _stage(fake_snowflake, pg_db, schema, [DAY, NEXT]) == {
        DAY: day1.num_rows + 1,
        NEXT: day2.num_rows,
    }
    expected = sorted(
        pa.concat_tables([day1, edge, day2]).to_pylist(),
        key=lambda r: (r["VisitDate"], r["VisitID"]),
    )
    assert _staged(pg_db, schema) == expected
    # the source drops a visit of day 1: re-staging day 1 drops it, day 2 is untouched
    put_visits(
        fake_snowflake, "VISITS", pa.concat_tables([day1.slice(1), day2, edge]), replace=True
    )
    assert _stage(fake_snowflake, pg_db, schema, [DAY]) == {DAY: day1.num_rows}
    assert _staged(pg_db, schema) == [r for r in expected if r != day1.to_pylist()[0]]


def test_a_repeated_visit_id_fails_and_keeps_the_staged_day(fake_snowflake, pg_db, schema):
    day1 = visit_rows(DAY, 3, seed=1)
    put_visits(fake_snowflake, "VISITS", day1, replace=True)
    _stage(fake_snowflake, pg_db, schema, [DAY])
    put_visits(fake_snowflake, "VISITS", day1.slice(0, 2), replace=False)  # two visits loaded twice
    with pytest.raises(ConfigError, match=f"the visits of {DAY} repeat a VisitID"):
        _stage(fake_snowflake, pg_db, schema, [DAY])
    assert len(_staged(pg_db, schema)) == day1.num_rows


def test_source_check_names_missing_columns_and_bad_table_names(fake_snowflake, monkeypatch):
    put_visits(
        fake_snowflake, "VISITS", visit_rows(DAY, 2, seed=1).drop_columns(["SSN"]), replace=True
    )
    with pytest.raises(ConfigError, match=r"VISITS lacks column\(s\) SSN \(it has: VISITID, "):
        conflict_visits.check_source(fake_snowflake.fetch_arrow, "VISITS")
    with pytest.raises(ConfigError, match="cannot read the visits table NOPE"):
        conflict_visits.check_source(fake_snowflake.fetch_arrow, "NOPE")
    monkeypatch.setenv("SQLGYM_CONFLICTS_SOURCE_TABLE", "visits; drop table x")
    with pytest.raises(ConfigError, match="is not a Snowflake table name"):
        conflict_visits.source_table()
    monkeypatch.setenv("SQLGYM_CONFLICTS_SOURCE_TABLE", 'EVV.PUBLIC."Visits"')
    assert conflict_visits.source_table() == 'EVV.PUBLIC."Visits"'


def test_a_value_that_does_not_fit_names_its_column():
    raw = pa.table(
        {name.upper(): pa.array([None], pa.string()) for name in conflict_visits.ARROW_TYPES}
    )
    raw = raw.set_column(0, "VISITID", pa.array(["V-1"]))
    with pytest.raises(ConfigError, match=f"visits of {DAY}: column VisitID \\(string\\)"):
        conflict_visits.conform(raw, DAY)


def test_the_day_query_uses_the_sources_own_column_names():
    # VISITID as Snowflake stores an unquoted name, the rest created quoted in mixed case
    columns = ["VISITID", *list(conflict_visits.ARROW_TYPES)[1:]]
    query = conflict_visits.day_query("EVV.PUBLIC.VISITS", columns)
    assert query.startswith('SELECT "VISITID", "ProviderID", ')
    assert query.endswith('FROM EVV.PUBLIC.VISITS WHERE "VisitDate" = %s')
