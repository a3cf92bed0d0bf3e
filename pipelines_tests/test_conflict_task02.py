"""Task 02's SQL against the plain-Python rules (lib/conflict_rules.py) and the chunked run
against the monolithic one, on random visits in a real Postgres."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from sqlgym_pipelines.lib import conflict_plan, conflict_rules, pg
from sqlgym_pipelines.lib import conflict_task02 as task02
from sqlgym_pipelines.lib.conflict_rules import COLUMNS, KEY, Visit

DAY = dt.date(2026, 3, 2)
RUN_1 = dt.datetime(2026, 3, 3, 1, 0)
RUN_2 = dt.datetime(2026, 3, 4, 1, 0)
MPH = 30.0
DB_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def new_schema(url: str) -> str:
    schema = f"c_{uuid.uuid4().hex[:10]}"
    with pg.connection(url) as conn:
        task02.ensure_schema(conn, schema)
    return schema


def stage(url: str, schema: str, visits: list[Visit]) -> None:
    """Replace the staged visits (what Task 01 leaves behind)."""
    names = conflict_rules.VISIT_COLUMNS
    with pg.connection(url) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.visits").format(sql.Identifier(schema)))
        with conn.cursor().copy(
            sql.SQL("COPY {}.visits ({}) FROM STDIN").format(
                sql.Identifier(schema), sql.SQL(", ").join(map(sql.Identifier, names))
            )
        ) as copy:
            for visit in visits:
                copy.write_row([getattr(visit, name) for name in names])


def table(url: str, schema: str) -> dict[tuple, dict]:
    with pg.connection(url) as conn:
        cur = conn.execute(
            sql.SQL("SELECT {} FROM {}.conflictvisitmaps").format(
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(schema)
            )
        )
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in cur]
    return {tuple(row[k] for k in KEY): row for row in rows}


def run_monolithic(url: str, schema: str, run_ts: dt.datetime) -> task02.Task02Counts:
    with pg.connection(url) as conn:
        return task02.monolithic(
            conn, schema, DAY, DAY + dt.timedelta(days=2), run_ts=run_ts, mph=MPH
        )


def run_chunked(url: str, schema: str, run_ts: dt.datetime, chunk_settings, workers=2):
    with pg.connection(url) as conn:
        plan = conflict_plan.create_plan(
            conn, schema, DAY, DAY + dt.timedelta(days=2), chunk_settings, run_ts=run_ts, mph=MPH
        )
    return plan, conflict_plan.run_chunks(
        lambda: pg.connection(url), schema, plan.plan_id, plan.chunk_ids, workers
    )


# -- random visits --------------------------------------------------------------------------
_BASE = dt.datetime(2026, 3, 2, 6, 0)


@st.composite
def interval(draw, optional: bool):
    if optional and draw(st.booleans()):
        return (None, None)
    # a 15-minute grid makes touching and equal bounds common; seconds and microseconds
    # exercise exact minute rounding
    start = _BASE + dt.timedelta(minutes=15 * draw(st.integers(0, 40)))
    start += dt.timedelta(seconds=draw(st.sampled_from([0, 0, 0, 30, 59])))
    length = dt.timedelta(
        minutes=15 * draw(st.integers(-1, 12)), microseconds=draw(st.sampled_from([0, 0, 7]))
    )
    return (start, start + length)


@st.composite
def visit_sets(draw, min_size=0):
    count = draw(st.integers(min_size, 14))
    visits = []
    for visit_id in range(1, count + 1):
        sched = draw(interval(optional=False))
        actual = draw(interval(optional=True))
        located = draw(st.integers(0, 5)) > 0
        visits.append(
            Visit(
                VisitID=visit_id * 7,
                SSN=draw(st.sampled_from(["111-11-1111", "222-22-2222", "333-33-3333", None])),
                VisitDate=draw(st.sampled_from([DAY, DAY + dt.timedelta(days=1)])),
                SchStartTime=sched[0],
                SchEndTime=sched[1],
                VisitStartTime=actual[0],
                VisitEndTime=actual[1],
                PatientLatitude=draw(st.floats(40.0, 40.5)) if located else None,
                PatientLongitude=draw(st.floats(-74.0, -73.5)) if located else None,
                ProviderID=draw(st.integers(1, 3)),
                PatientID=draw(st.integers(1, 50)),
                ProviderName=draw(st.sampled_from(["Acme Care", "Zoë's Home Health", None])),
            )
        )
    return visits


@st.composite
def edits(draw, visits: list[Visit]) -> list[Visit]:
    """The visits a day later: some removed, some moved in time, some new."""
    result = []
    for visit in visits:
        action = draw(st.sampled_from(["keep", "keep", "drop", "move"]))
        if action == "keep":
            result.append(visit)
        elif action == "move":
            sched = draw(interval(optional=False))
            result.append(
                Visit(**{**visit.__dict__, "SchStartTime": sched[0], "SchEndTime": sched[1]})
            )
    return result + [
        Visit(**{**v.__dict__, "VisitID": v.VisitID + 1000}) for v in draw(visit_sets())
    ]


@pytest.fixture(scope="module")
def db(stack) -> str:
    name = f"t_conflicts_{uuid.uuid4().hex[:8]}"
    pg.create_database(stack.pg_url, name)
    return stack.url_for(name)


# -- the rules, case by case -----------------------------------------------------------------
def _t(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 2, hour, minute)


def test_half_open_intervals_that_touch_do_not_overlap():
    assert not conflict_rules.overlaps((_t(9), _t(10)), (_t(10), _t(11)))
    assert conflict_rules.overlaps((_t(9), _t(10, 1)), (_t(10), _t(11)))
    assert not conflict_rules.overlaps((_t(10), _t(10)), (_t(9), _t(11)))  # empty
    assert not conflict_rules.overlaps((_t(9), None), (_t(9), _t(11)))


def test_distance_flag_when_the_gap_is_shorter_than_the_drive():
    home = Visit(1, "1", DAY, _t(9), _t(10), PatientLatitude=40.0, PatientLongitude=-74.0)
    # 0.5 degrees of latitude is 34.55 miles: 69.1 minutes at 30 mph
    far = Visit(2, "1", DAY, _t(11), _t(12), PatientLatitude=40.5, PatientLongitude=-74.0)
    values = conflict_rules.pair_values(home, far, 30.0)
    assert values["DistanceMiles"] == pytest.approx(34.55, abs=0.01)
    assert values["ETATravelMinutes"] == pytest.approx(69.1, abs=0.02)
    assert values["DistanceFlag"] == "Y"  # 60 minutes between them < 69.1
    assert values["MinuteDiffBetweenSch"] == Decimal("60.00")
    assert conflict_rules.pair_values(home, far, 40.0)["DistanceFlag"] == "N"  # 51.8 min


def test_distance_flag_uses_the_evv_times_when_both_are_recorded():
    a = Visit(1, "1", DAY, _t(9), _t(10), _t(9), _t(10, 55), 40.0, -74.0)
    b = Visit(2, "1", DAY, _t(11), _t(12), None, None, 40.1, -74.0)  # 6.9 mi, 13.8 min
    assert conflict_rules.pair_values(a, b, 30.0)["DistanceFlag"] == "Y"  # 5 min gap
    a_sched = Visit(1, "1", DAY, _t(9), _t(10), _t(9), None, 40.0, -74.0)  # EVV incomplete
    assert conflict_rules.pair_values(a_sched, b, 30.0)["DistanceFlag"] == "N"  # 60 min gap


def test_sql_matches_the_rules_on_a_known_day(db):
    schema = new_schema(db)
    visits = [
        Visit(1, "A", DAY, _t(9), _t(10), None, None, 40.0, -74.0),
        Visit(2, "A", DAY, _t(9, 30), _t(11), _t(9, 45), _t(10, 30), 40.1, -74.1),
        Visit(3, "A", DAY, _t(11, 5), _t(12), None, None, 40.5, -73.5),
        Visit(4, "A", DAY, _t(15), _t(16), None, None, 40.0, -74.0),  # 3h after: time to drive
        Visit(5, "B", DAY, _t(8), _t(9)),
    ]
    stage(db, schema, visits)
    counts = run_monolithic(db, schema, RUN_1)
    rows = table(db, schema)
    assert set(rows) == {
        (DAY, "A", 1, 2), (DAY, "A", 2, 1), (DAY, "A", 1, 3), (DAY, "A", 3, 1),
        (DAY, "A", 2, 3), (DAY, "A", 3, 2),
    }  # fmt: skip
    assert counts == task02.Task02Counts(marked=0, updated=0, inserted=6, gone=0)
    one_two = rows[(DAY, "A", 1, 2)]
    assert one_two["SchOverAnotherSchTimeFlag"] == "Y"
    assert one_two["SchTimeOverVisitTimeFlag"] == "Y"  # 9:00-10:00 vs EVV 9:45-10:30
    assert one_two["VisitTimeOverAnotherVisitTimeFlag"] == "N"  # visit 1 has no EVV
    assert one_two["SchOverlapMinutes"] == Decimal("30.00")
    assert one_two["StatusFlag"] == "new" and one_two["UpdateFlag"] is None
    assert rows == conflict_rules.task02({}, visits, {(DAY, "A"), (DAY, "B")}, RUN_1, MPH)


@DB_SETTINGS
@given(data=st.data())
def test_sql_agrees_with_the_reference_over_two_runs(db, data):
    schema = new_schema(db)
    before = data.draw(visit_sets(), label="day 1")
    after = data.draw(edits(before), label="day 2")
    expected: dict = {}
    for visits, run_ts in ((before, RUN_1), (after, RUN_2)):
        stage(db, schema, visits)
        run_monolithic(db, schema, run_ts)
        keys = {(v.VisitDate, v.SSN) for v in visits if v.SSN} | {k[:2] for k in expected}
        expected = conflict_rules.task02(expected, visits, keys, run_ts, MPH)
        assert table(db, schema) == expected


@DB_SETTINGS
@given(
    data=st.data(),
    target=st.integers(1, 30),
    extra=st.integers(0, 30),
    max_keys=st.integers(1, 4),
    workers=st.integers(1, 3),
)
def test_chunked_equals_monolithic_for_any_chunk_settings(
    db, data, target, extra, max_keys, workers
):
    chunk_settings = conflict_plan.ChunkSettings(
        target_chunk_size=target, max_chunk_size=target + extra, max_keys_per_chunk=max_keys
    )
    mono, chunked = new_schema(db), new_schema(db)
    before = data.draw(visit_sets(), label="day 1")
    after = data.draw(edits(before), label="day 2")
    for visits, run_ts in ((before, RUN_1), (after, RUN_2)):
        for schema in (mono, chunked):
            stage(db, schema, visits)
        run_monolithic(db, mono, run_ts)
        plan, results = run_chunked(db, chunked, run_ts, chunk_settings, workers)
        assert [r.status for r in results] == ["done"] * len(plan.chunks)
        assert table(db, chunked) == table(db, mono)


def test_rerun_changes_nothing_but_updated_date(db):
    schema = new_schema(db)
    visits = [
        Visit(1, "A", DAY, _t(9), _t(10), None, None, 40.0, -74.0),
        Visit(2, "A", DAY, _t(9, 30), _t(11), _t(9, 45), _t(10, 30), 40.1, -74.1),
        Visit(3, "A", DAY, _t(14), _t(15)),
    ]
    stage(db, schema, visits)
    run_monolithic(db, schema, RUN_1)
    stage(db, schema, visits[:1] + visits[2:])  # visit 2 cancelled: its pairs resolve
    run_monolithic(db, schema, RUN_1)
    first = table(db, schema)
    assert {row["StatusFlag"] for row in first.values()} == {"resolved"}
    counts = run_monolithic(db, schema, RUN_2)
    second = table(db, schema)
    assert counts.marked == len(first) == 2 and counts.inserted == 0
    for key, row in first.items():
        assert second[key] == {**row, "UpdatedDate": RUN_2}


def test_status_new_then_conflicting_then_resolved(db):
    schema = new_schema(db)
    a = Visit(1, "A", DAY, _t(9), _t(10))
    b = Visit(2, "A", DAY, _t(9, 30), _t(10, 30))
    stage(db, schema, [a, b])
    run_monolithic(db, schema, RUN_1)
    assert table(db, schema)[(DAY, "A", 1, 2)]["StatusFlag"] == "new"
    stage(db, schema, [a, Visit(2, "A", DAY, _t(9, 45), _t(10, 30))])  # still overlapping
    run_monolithic(db, schema, RUN_2)
    row = table(db, schema)[(DAY, "A", 1, 2)]
    assert (row["StatusFlag"], row["SchOverlapMinutes"]) == ("conflicting", Decimal("15.00"))
    assert row["CreatedDate"] == RUN_1 and row["UpdatedDate"] == RUN_2
    stage(db, schema, [a, Visit(2, "A", DAY, _t(10), _t(11))])  # touching: no overlap
    run_monolithic(db, schema, RUN_2)
    row = table(db, schema)[(DAY, "A", 1, 2)]
    assert row["StatusFlag"] == "resolved" and row["SchOverAnotherSchTimeFlag"] == "N"
