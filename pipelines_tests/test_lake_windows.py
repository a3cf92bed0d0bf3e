"""Windows are half-open and gap-free; the safe upper bound waits for open transactions."""

import datetime as dt

import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.lake_windows import (
    check_full_snapshot_days,
    day_start,
    incremental_windows,
    safe_upper_bound,
)

D1, D2 = dt.date(2025, 10, 24), dt.date(2025, 10, 25)
NO_LAG = dt.timedelta(0)


def test_safe_upper_is_held_back_by_an_open_transaction(pg_db):
    with pg.connection(pg_db, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int, updated_at timestamptz DEFAULT now())")
    with pg.connection(pg_db) as writer, pg.connection(pg_db, autocommit=True) as sync:
        writer.execute("INSERT INTO t (id) VALUES (1)")  # open: its updated_at is its start
        (stamp,) = writer.execute("SELECT updated_at FROM t").fetchone()
        bound = safe_upper_bound(sync, NO_LAG)
        assert bound.at <= stamp and "oldest open transaction" in bound.method
        writer.commit()
        after = safe_upper_bound(sync, NO_LAG)
        assert after.at > stamp  # nothing open any more: the row is below the bound
        rows = sync.execute("SELECT count(*) FROM t WHERE updated_at < %s", (after.at,)).fetchone()
        assert rows == (1,)


def test_lag_applies_when_nothing_is_open(pg_db):
    with pg.connection(pg_db, autocommit=True) as conn:
        lag = dt.timedelta(minutes=5)
        (before,) = conn.execute("SELECT clock_timestamp()").fetchone()
        bound = safe_upper_bound(conn, lag)
        (after,) = conn.execute("SELECT clock_timestamp()").fetchone()
        assert before - lag <= bound.at <= after - lag
        assert "lag 300s" in bound.method


def test_sessions_hidden_from_an_unprivileged_role_are_reported(pg_db, stack):
    role = "lake_reader_" + pg_db.rsplit("/", 1)[-1]
    with pg.connection(pg_db, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
        other = pg.connect(pg_db)  # the superuser holds a transaction open
        other.execute("SELECT 1")
        try:
            reader_url = pg_db.replace(pg_db.split("//")[1].split("@")[0], f"{role}:pw")
            with pg.connection(reader_url, autocommit=True) as reader:
                bound = safe_upper_bound(reader, dt.timedelta(minutes=2))
            assert "not visible" in bound.method and "lag 120s" in bound.method
        finally:
            other.close()
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_windows_are_half_open_and_resume_from_the_committed_upper():
    safe = day_start(D2) + dt.timedelta(hours=5)
    first = incremental_windows([D1, D2], {}, safe, replace=False)
    assert [(w.lower, w.upper) for w in first] == [
        (day_start(D1), day_start(D2)),  # a complete day ends where the next begins
        (day_start(D2), safe),
    ]
    later = incremental_windows([D2], {D2: safe}, safe + dt.timedelta(hours=1), replace=False)
    assert later[0].lower == safe  # no gap and no overlap with the previous window
    again = incremental_windows([D1], {D1: day_start(D2)}, safe, replace=False)
    assert again[0].empty
    redo = incremental_windows([D1], {D1: day_start(D2)}, safe, replace=True)
    assert (redo[0].lower, redo[0].upper) == (day_start(D1), day_start(D2))


def test_a_past_full_snapshot_cannot_be_taken():
    check_full_snapshot_days("badges", [D2], today=D2, snapshotted=set())
    check_full_snapshot_days("badges", [D1, D2], today=D2, snapshotted={D1})
    with pytest.raises(
        ConfigError, match=r"'badges' is synced in full: partition 2025-10-24 has no snapshot"
    ):
        check_full_snapshot_days("badges", [D1, D2], today=D2, snapshotted=set())
