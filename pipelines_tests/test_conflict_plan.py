"""The chunk planner's packing, the durable plan, and chunks that are done exactly once:
re-run, run twice at the same time, or resumed after a failure."""

import datetime as dt
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from pipelines_tests.test_conflict_task02 import (
    DAY,
    RUN_1,
    new_schema,
    run_monolithic,
    stage,
    table,
)
from sqlgym_pipelines.lib import conflict_plan, conflict_status, pg
from sqlgym_pipelines.lib.conflict_plan import ChunkSettings, pack
from sqlgym_pipelines.lib.conflict_rules import Visit
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.local.demo_conflicts import visit_rows


# -- packing --------------------------------------------------------------------------------
@st.composite
def weighted_keys(draw):
    weights = draw(st.lists(st.integers(1, 120), max_size=60))
    return [((DAY + dt.timedelta(days=i // 7), f"ssn-{i:03d}"), w) for i, w in enumerate(weights)]


@given(
    keys=weighted_keys(),
    target=st.integers(1, 100),
    extra=st.integers(0, 100),
    max_keys=st.integers(1, 10),
)
def test_pack_keeps_every_key_once_in_order_within_the_limits(keys, target, extra, max_keys):
    settings = ChunkSettings(
        target_chunk_size=target, max_chunk_size=target + extra, max_keys_per_chunk=max_keys
    )
    chunks = pack(keys, settings)
    assert [k for c in chunks for k in c.keys] == [k for k, _ in keys]
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    weight = dict(keys)
    for i, chunk in enumerate(chunks):
        assert chunk.est_rows == sum(weight[k] for k in chunk.keys)
        assert 1 <= len(chunk.keys) <= max_keys
        # over the max only when one key alone is heavier than it (its pairs stay together)
        assert chunk.est_rows <= settings.max_chunk_size or len(chunk.keys) == 1
        if i + 1 < len(chunks):  # a chunk closes only for a reason
            next_weight = weight[chunks[i + 1].keys[0]]
            assert (
                chunk.est_rows >= target
                or chunk.est_rows + next_weight > settings.max_chunk_size
                or len(chunk.keys) == max_keys
            )


def test_pack_with_the_seeds_defaults_balances_chunks_near_the_target():
    keys = [((DAY, f"{i:06d}"), 30) for i in range(10_000)]  # 300,000 estimated rows
    chunks = pack(keys, ChunkSettings())
    # a chunk closes once it reaches 10,000: 334 keys of 30 rows
    assert [c.est_rows for c in chunks] == [10_020] * 29 + [300_000 - 29 * 10_020]
    assert {len(c.keys) for c in chunks[:-1]} == {334}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target_chunk_size": 0}, "target_chunk_size=0 must be a positive integer"),
        ({"target_chunk_size": 60_000}, "target_chunk_size (60000) is larger than max_chunk_size"),
        ({"max_concurrency": -1}, "max_concurrency=-1 must be a positive integer"),
    ],
)
def test_chunk_settings_errors_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ChunkSettings(**overrides)


def test_chunk_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SQLGYM_CONFLICTS_MAX_KEYS_PER_CHUNK", "25")
    assert ChunkSettings.from_env().max_keys_per_chunk == 25
    assert ChunkSettings.from_env(max_keys_per_chunk=3).max_keys_per_chunk == 3
    monkeypatch.setenv("SQLGYM_CONFLICTS_MAX_CHUNK_SIZE", "1e6")
    with pytest.raises(ConfigError, match="SQLGYM_CONFLICTS_MAX_CHUNK_SIZE='1e6'"):
        ChunkSettings.from_env()


# -- the durable plan and its chunks ----------------------------------------------------------
SMALL = ChunkSettings(target_chunk_size=50, max_chunk_size=100, max_keys_per_chunk=4)


@pytest.fixture
def staged(pg_db):
    """A schema with 30 caregivers' visits staged, and a monolithic copy to compare with."""
    visits = [Visit(**row) for row in visit_rows(DAY, 30, seed=11).to_pylist()]
    chunked, mono = new_schema(pg_db), new_schema(pg_db)
    for schema in (chunked, mono):
        stage(pg_db, schema, visits)
    run_monolithic(pg_db, mono, RUN_1)
    return pg_db, chunked, mono


def _plan(url: str, schema: str) -> conflict_plan.Plan:
    with pg.connection(url) as conn:
        return conflict_plan.create_plan(
            conn, schema, DAY, DAY + dt.timedelta(days=2), SMALL, run_ts=RUN_1, mph=30.0
        )


def _connect(url: str):
    return lambda: pg.connection(url)


def test_the_plan_is_stored_and_a_done_chunk_is_skipped(staged):
    url, schema, mono = staged
    plan = _plan(url, schema)
    with pg.connection(url) as conn:
        stored = conn.execute(
            sql.SQL(
                "SELECT count(*), sum(keys), sum(est_rows) FROM {}.conflict_chunks WHERE plan_id = %s"
            ).format(sql.Identifier(schema)),
            (plan.plan_id,),
        ).fetchone()
    assert stored == (len(plan.chunks), 30, sum(c.est_rows for c in plan.chunks))
    first = conflict_plan.run_chunks(_connect(url), schema, plan.plan_id, plan.chunk_ids, 3)
    assert {r.status for r in first} == {"done"}
    assert sum(r.counts.inserted for r in first) == len(table(url, mono))
    again = conflict_plan.process_chunk(_connect(url), schema, plan.plan_id, 0)
    assert again.status == "skipped" and again.log_lines() == [
        f"Chunk 0: already done in plan {plan.plan_id}, skipped"
    ]
    assert table(url, schema) == table(url, mono)


def test_the_same_chunk_run_twice_at_once_is_done_once(staged):
    url, schema, mono = staged
    plan = _plan(url, schema)
    statuses = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(
                conflict_plan.process_chunk(_connect(url), schema, plan.plan_id, 0).status
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == ["done", "skipped"]


def test_a_failed_chunk_leaves_no_lock_and_resumes_to_the_uninterrupted_result(staged):
    url, schema, mono = staged
    plan = _plan(url, schema)
    victim = plan.chunks[len(plan.chunks) // 2]
    with pg.connection(url) as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.\"SSN\" = {ssn} THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$; CREATE TRIGGER fail BEFORE INSERT ON {s}.conflictvisitmaps "
                "FOR EACH ROW EXECUTE FUNCTION {s}.fail()"
            ).format(s=sql.Identifier(schema), ssn=sql.Literal(victim.keys[0][1]))
        )
    with pytest.raises(Exception, match="injected failure"):
        conflict_plan.run_chunks(_connect(url), schema, plan.plan_id, plan.chunk_ids, 2)
    with pg.connection(url) as conn:
        assert conflict_plan.pending_chunks(conn, schema, plan.plan_id) == [victim.chunk_id]
        stuck = conflict_status.unfinished_chunks(conn, schema, DAY, DAY + dt.timedelta(days=1))
        assert [c["chunk_id"] for c in stuck] == [victim.chunk_id]
        assert (
            conflict_status.status_counts(conn, schema, DAY, DAY + dt.timedelta(days=1))["locked"]
            == 0
        )
        conn.execute(sql.SQL("DROP TRIGGER fail ON {}.conflictvisitmaps").format(
            sql.Identifier(schema)))  # fmt: skip
        pending = conflict_plan.pending_chunks(conn, schema, plan.plan_id)
    resumed = conflict_plan.run_chunks(_connect(url), schema, plan.plan_id, pending, 2)
    assert [r.chunk_id for r in resumed] == [victim.chunk_id]
    assert table(url, schema) == table(url, mono)
    with pg.connection(url) as conn:
        assert (
            conflict_status.unfinished_chunks(conn, schema, DAY, DAY + dt.timedelta(days=1)) == []
        )
