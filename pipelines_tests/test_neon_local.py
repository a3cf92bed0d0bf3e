"""Local Neon (one database per branch) and NeonResource in local mode, on the real stack."""

import uuid

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import BranchError
from sqlgym_pipelines.lib.neon_local import MAIN_DATABASE, LocalNeon, database_name_for
from sqlgym_pipelines.resources.neon import NeonResource


@pytest.fixture
def neon(stack) -> LocalNeon:
    return LocalNeon(stack.pg_url)


@pytest.fixture
def new_name(neon):
    """Unique branch names; whatever was created under them is deleted afterwards."""
    made: list[str] = []

    def make(prefix: str = "preview/pr-") -> str:
        made.append(f"{prefix}{uuid.uuid4().int % 10**9}")
        return made[-1]

    yield make
    existing = {b.name for b in neon.list_branches()}
    for name in reversed(made):  # children were named after their parents
        if name in existing:
            neon.delete_branch(name)


@pytest.fixture
def main_table(stack) -> str:
    """A table with 3 rows in the main branch (neon_main), dropped afterwards."""
    table = f"t_{uuid.uuid4().hex[:10]}"
    with pg.connection(stack.url_for(MAIN_DATABASE)) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(sql.Identifier(table))
        )
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (1, 'a'), (2, 'b'), (3, 'c')").format(
                sql.Identifier(table)
            )
        )
    yield table
    with pg.connection(stack.url_for(MAIN_DATABASE)) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def rows(url: str, table: str) -> list[tuple]:
    with pg.connection(url) as conn:
        return conn.execute(
            sql.SQL("SELECT id, v FROM {} ORDER BY id").format(sql.Identifier(table))
        ).fetchall()


def test_database_names_are_safe_and_distinct():
    assert database_name_for("main") == "neon_main"
    assert database_name_for("preview/pr-1") != database_name_for("preview_pr_1")
    assert database_name_for("preview/pr-1").startswith("neon_preview_pr_1_")
    for name in ("x" * 256, "feature/ünïcødé-branch", "///"):
        db = database_name_for(name)
        assert len(db.encode()) <= 63 and db.isascii() and db == database_name_for(name)
    assert database_name_for("a" * 255 + "b") != database_name_for("a" * 255 + "c")
    for bad in ("", "   ", "x" * 257):
        with pytest.raises(BranchError, match="invalid Neon branch name"):
            database_name_for(bad)


def test_branch_copies_main_then_diverges(neon, new_name, main_table, stack):
    name = new_name()
    created = neon.create_branch(name, "main")
    assert (created.name, created.parent) == (name, "main")
    url = neon.connection_uri(name)
    assert url == stack.url_for(created.id)
    assert rows(url, main_table) == [(1, "a"), (2, "b"), (3, "c")]

    with pg.connection(url) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (4, 'branch only')").format(sql.Identifier(main_table))
        )
    assert len(rows(url, main_table)) == 4
    assert len(rows(neon.connection_uri("main"), main_table)) == 3  # main untouched

    listed = {b.name: b for b in neon.list_branches()}
    assert listed[name].parent == "main" and listed["main"].default
    neon.delete_branch(name)
    assert name not in {b.name for b in neon.list_branches()}
    with pg.connection(stack.pg_url) as conn:
        assert not pg.database_exists(conn, created.id)


def test_branch_of_a_branch_and_delete_order(neon, new_name, main_table):
    parent, child = new_name(), new_name()
    neon.create_branch(parent, "main")
    neon.create_branch(child, parent)
    assert {b.name: b.parent for b in neon.list_branches()}[child] == parent
    assert rows(neon.connection_uri(child), main_table)[0] == (1, "a")
    with pytest.raises(BranchError, match=f"has child branches \\({child}\\)"):
        neon.delete_branch(parent)
    neon.delete_branch(child)
    neon.delete_branch(parent)


def test_refusals(neon, new_name):
    name = new_name()
    neon.create_branch(name, "main")
    with pytest.raises(BranchError, match="production"):
        neon.delete_branch("main")
    with pytest.raises(BranchError, match="already exists"):
        neon.create_branch(name, "main")
    with pytest.raises(BranchError, match="already exists"):
        neon.create_branch("main", name)
    with pytest.raises(BranchError, match=r"'no-such-parent' does not exist \(branches: .*main"):
        neon.create_branch(new_name(), "no-such-parent")
    for op in (neon.delete_branch, neon.connection_uri):
        with pytest.raises(BranchError, match="'ghost/branch' does not exist"):
            op("ghost/branch")
    with psycopg.connect(neon.connection_uri("main")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # main still there


def test_busy_parent_fails_clearly_or_is_freed_when_allowed(neon, new_name, stack):
    parent = new_name()
    neon.create_branch(parent, "main")
    holder = psycopg.connect(neon.connection_uri(parent), application_name="holds-the-parent")
    try:
        with pytest.raises(BranchError, match="holds-the-parent") as err:
            neon.create_branch(new_name(), parent)
        assert "terminate_template_connections=True" in str(err.value)
        freeing = LocalNeon(stack.pg_url, terminate_template_connections=True)
        child = freeing.create_branch(new_name(), parent)
        assert child.parent == parent
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")  # its session was ended to allow the copy
    finally:
        holder.close()


def test_unrelated_database_comments_are_ignored(neon, pg_db, stack):
    dbname = pg_db.rpartition("/")[2]
    with pg.connection(stack.pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'not json'").format(sql.Identifier(dbname)))
    assert dbname not in {b.id for b in neon.list_branches()}


def test_resource_materializes_a_preview_branch_from_env(stack, main_table):
    preview = f"preview/pr-{uuid.uuid4().int % 10**9}"
    local = LocalNeon(stack.pg_url)
    had_dev = "dev" in {b.name for b in local.list_branches()}

    @dg.asset
    def preview_branch(neon: NeonResource) -> str:
        """The database the run's branch lives in, as seen through its own connection URL."""
        with pg.connection(neon.connection_url(neon.ensure_target().name)) as conn:
            return conn.execute("SELECT current_database()").fetchone()[0]

    resource = NeonResource(
        mode="local", local_admin_url=dg.EnvVar("NEON_LOCAL_PG_URL"), git_branch=preview
    )
    try:
        result = dg.materialize([preview_branch], resources={"neon": resource})
        branches = {b.name: b.parent for b in local.list_branches()}
        assert branches[preview] == "dev" and branches["dev"] == "main"
        assert result.output_for_node("preview_branch") == database_name_for(preview)
        if not had_dev:  # dev was copied from main just now, so main's rows reached the preview
            rows_seen = rows(local.connection_uri(preview), main_table)
            assert rows_seen == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        local.delete_branch(preview)
        if not had_dev:
            local.delete_branch("dev")
    with pytest.raises(BranchError, match="production"):
        NeonResource(mode="local", local_admin_url=stack.pg_url).delete_branch("main")
