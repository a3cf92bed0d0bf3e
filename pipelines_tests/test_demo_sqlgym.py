"""The SQLGym demo source database: schema, sizes, determinism, integrity, time window."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.local.demo_sqlgym import (
    FULL_TABLES,
    INCREMENTAL_TABLES,
    TABLES,
    seed_sqlgym,
    sizes_for,
)

NOW = datetime(2026, 3, 15, 10, 30, 15, 123456, tzinfo=UTC)


def _columns(url: str, table: str) -> dict[str, tuple[str, str, str | None]]:
    """{column: (data_type, udt_name, domain_name)} in ordinal order."""
    with pg.connection(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, udt_name, domain_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return {name: (dtype, udt, domain) for name, dtype, udt, domain in rows}


def _digests(url: str) -> dict[str, str]:
    """md5 of every table's rows in id order: equal digests mean equal data."""
    with pg.connection(url) as conn:
        out = {}
        for table in TABLES:
            stmt = sql.SQL(
                "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} AS t"
            ).format(sql.Identifier(table))
            out[table] = conn.execute(stmt).fetchone()[0]
        return out


def _one(url: str, query: str, params=None):
    with pg.connection(url) as conn:
        return conn.execute(query, params).fetchone()


def test_tables_and_columns(pg_db):
    counts = seed_sqlgym(pg_db, now=NOW)
    assert set(counts) == set(TABLES)
    for table in INCREMENTAL_TABLES:
        cols = _columns(pg_db, table)
        assert cols["created_at"][1] == "timestamptz"
        assert cols["updated_at"][1] == "timestamptz", table
    for table in FULL_TABLES:
        assert "updated_at" not in _columns(pg_db, table), table

    subs = _columns(pg_db, "submissions")
    assert list(subs) == [
        "id", "user_id", "problem_id", "status", "language", "query_text", "score", "runtime",
        "memory_kb", "rows_returned", "test_results", "is_best", "submitted_at",
    ]  # fmt: skip
    assert subs["score"][1] == "numeric" and subs["query_text"][1] == "text"
    assert subs["test_results"][1] == "jsonb" and subs["submitted_at"][1] == "timestamptz"
    assert subs["runtime"][1] == "interval" and subs["status"] == (
        "USER-DEFINED",
        "submission_status",
        None,
    )

    users, problems, progress = (_columns(pg_db, t) for t in ("users", "problems", "user_progress"))
    assert users["public_id"][1] == "uuid" and users["avatar_thumb"][1] == "bytea"
    assert users["country_code"][1] == "bpchar" and users["username"][1] == "varchar"
    assert users["xp"][1] == "int8" and users["streak_days"][1] == "int2"
    assert users["birth_date"][1] == "date" and users["is_premium"][1] == "bool"
    assert users["email"][2] == "email_address"  # a domain over varchar
    assert problems["tags"][1] == "_text" and problems["difficulty"][1] == "problem_difficulty"
    assert problems["acceptance_rate"][2] == "percentage"
    with pg.connection(pg_db) as conn:
        precision = conn.execute(
            "SELECT numeric_precision, numeric_scale FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = %s",
            ("user_progress", "avg_score"),
        ).fetchone()
    assert progress["avg_score"][1] == "numeric" and precision == (None, None)  # unconstrained


def test_row_counts_follow_scale(pg_db):
    small = seed_sqlgym(pg_db, scale=0.5, now=NOW)
    assert small == {
        "users": 100, "topics": 12, "problems": 30, "user_progress": 300,
        "followers": 200, "submissions": 1000, "badges": 75,
    }  # fmt: skip
    default = seed_sqlgym(pg_db, now=NOW)
    assert default["users"] == 200 and default["submissions"] == 2000
    assert sum(default.values()) == 3422
    big = seed_sqlgym(pg_db, scale=0.1, rows_submissions=12_345, now=NOW)
    assert big["submissions"] == 12_345 and big["users"] == 20


def test_sizes_cap_pair_tables_and_reject_bad_input():
    tiny = sizes_for(0.01)
    assert tiny.users == 10 and tiny.followers == 4 and tiny.user_progress == 6
    huge_pairs = sizes_for(0.05, rows_submissions=0)  # 10 users: at most 10*9 follow pairs
    assert huge_pairs.followers == 20 and huge_pairs.submissions == 0
    assert sizes_for(3.0).followers == 1200
    with pytest.raises(ConfigError, match="scale must be > 0"):
        sizes_for(0)
    with pytest.raises(ConfigError, match="days must be >= 1"):
        seed_sqlgym("postgresql://unused/db", days=0)


def test_same_seed_same_data_other_seed_other_data(stack, pg_db):
    seed_sqlgym(pg_db, seed=7, now=NOW)
    first = _digests(pg_db)
    seed_sqlgym(pg_db, seed=7, now=NOW, workers=2)  # ranges on two connections: same rows
    assert _digests(pg_db) == first
    seed_sqlgym(pg_db, seed=8, now=NOW)
    other = _digests(pg_db)
    assert all(other[t] != first[t] for t in TABLES if t != "topics")


def test_reseeding_gives_the_same_counts(pg_db):
    first = seed_sqlgym(pg_db, scale=0.3, now=NOW)
    assert seed_sqlgym(pg_db, scale=0.3, now=NOW) == first  # reset=True: drop and refill
    before = _digests(pg_db)
    assert seed_sqlgym(pg_db, scale=0.3, now=NOW, reset=False) == first  # nothing to add
    assert _digests(pg_db) == before


def test_foreign_keys_hold_and_are_enforced(pg_db):
    seed_sqlgym(pg_db, now=NOW)
    orphans = _one(
        pg_db,
        """SELECT
             (SELECT count(*) FROM submissions s LEFT JOIN users u ON u.id = s.user_id WHERE u.id IS NULL),
             (SELECT count(*) FROM submissions s LEFT JOIN problems p ON p.id = s.problem_id WHERE p.id IS NULL),
             (SELECT count(*) FROM followers WHERE follower_id = followed_id),
             (SELECT count(*) FROM problems p LEFT JOIN topics t ON t.id = p.topic_id WHERE t.id IS NULL)""",
    )
    assert orphans == (0, 0, 0, 0)
    fkeys = _one(
        pg_db,
        "SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid = 'submissions'::regclass",
    )[0]
    assert fkeys == ["submissions_problem_id_fkey", "submissions_user_id_fkey"]
    with pg.connection(pg_db) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO submissions (user_id, problem_id, status, query_text)"
            " VALUES (999999, 1, 'accepted', 'SELECT 1')"
        )


def test_new_rows_get_fresh_ids(pg_db):
    seed_sqlgym(pg_db, now=NOW)
    new_id = _one(
        pg_db,
        "INSERT INTO users (public_id, username, email) VALUES (gen_random_uuid(), 'new', 'n@x.io')"
        " RETURNING id",
    )[0]
    assert new_id == 201


def test_timestamps_fall_in_the_window_with_boundary_ties(pg_db):
    days = 5
    seed_sqlgym(pg_db, days=days, now=NOW)
    start = NOW - timedelta(days=days)
    for table in INCREMENTAL_TABLES:
        lo, hi, bad = _one(
            pg_db,
            sql.SQL(
                "SELECT min(created_at), max(updated_at), count(*) FILTER (WHERE updated_at < created_at)"
                " FROM {}"
            ).format(sql.Identifier(table)),
        )
        assert start <= lo and hi <= NOW and bad == 0, table
    for table, col in (("submissions", "submitted_at"), ("followers", "created_at")):
        lo, hi = _one(
            pg_db,
            sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
                c=sql.Identifier(col), t=sql.Identifier(table)
            ),
        )
        assert start <= lo and hi <= NOW, table
    # every daily partition of the window (5 days and a part of a sixth) has rows
    for table, col in (("submissions", "submitted_at"), ("users", "updated_at")):
        dates = _one(
            pg_db,
            sql.SQL("SELECT count(DISTINCT ({c} AT TIME ZONE 'UTC')::date) FROM {t}").format(
                c=sql.Identifier(col), t=sql.Identifier(table)
            ),
        )[0]
        assert dates == days + 1, table
    # several users share the exact same updated_at, some of them at midnight (a day boundary)
    tied, at_midnight = _one(
        pg_db,
        """SELECT count(*), count(*) FILTER (WHERE updated_at = date_trunc('day', updated_at))
           FROM (SELECT updated_at FROM users GROUP BY 1 HAVING count(*) > 1) AS t""",
    )
    assert tied >= 2 and at_midnight >= 1


def test_values_are_realistic(pg_db):
    seed_sqlgym(pg_db, now=NOW)
    row = _one(
        pg_db,
        """SELECT count(*) FILTER (WHERE status = 'accepted'),
                  min(score), max(score),
                  count(*) FILTER (WHERE runtime IS NULL) = count(*) FILTER (WHERE status = 'syntax_error'),
                  count(DISTINCT test_results)
           FROM submissions""",
    )
    accepted, min_score, max_score, runtime_null_iff_syntax, docs = row
    assert 700 < accepted < 1100  # ~45 of every 100
    assert min_score == 0 and 90 < max_score <= 100
    assert runtime_null_iff_syntax and docs > 5
    tags = _one(
        pg_db,
        "SELECT count(*) FILTER (WHERE tags = '{}'), max(cardinality(tags)) FROM problems",
    )
    assert tags[0] >= 1 and tags[1] == 3
