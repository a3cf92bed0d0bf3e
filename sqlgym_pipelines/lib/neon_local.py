"""Local Neon: each branch is a database on one local Postgres server.

Branch "main" is the database `neon_main` (the local stack provisions it). Any other branch
is `neon_<slug>_<hash>`: the slug keeps it readable in psql, the hash of the exact branch name
keeps `preview/pr-1` and `preview_pr_1` apart and the name within Postgres' 63 bytes.
The true branch name and its parent live in the database's COMMENT (JSON), which is how
list_branches() recovers them. Creating a branch is `CREATE DATABASE ... TEMPLATE <parent>`:
a full copy, so the branch starts with the parent's rows and then diverges, as in Neon.
"""

import hashlib
import json
import re
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.branch_mapping import MAIN_BRANCH, NeonBranch, refuse_protected
from sqlgym_pipelines.lib.errors import BranchError, ConfigError

MAIN_DATABASE = "neon_main"
MAX_BRANCH_NAME = 256  # Neon's own limit on branch names
_MARKER = "sqlgym_neon_branch"  # JSON key that tells our branch databases from any other
_HASH_LEN = 10
_MAX_IDENTIFIER = 63  # NAMEDATALEN - 1


def database_name_for(branch: str) -> str:
    """The database that holds `branch` (ASCII, <= 63 bytes, distinct per branch name)."""
    _check_name(branch)
    if branch == MAIN_BRANCH:
        return MAIN_DATABASE
    digest = hashlib.sha256(branch.encode()).hexdigest()[:_HASH_LEN]
    room = _MAX_IDENTIFIER - len("neon_") - 1 - _HASH_LEN
    slug = re.sub(r"[^a-z0-9]+", "_", branch.lower()).strip("_")[:room].rstrip("_")
    return f"neon_{slug}_{digest}" if slug else f"neon_{digest}"


def _check_name(branch: str) -> None:
    if not branch or not branch.strip() or len(branch) > MAX_BRANCH_NAME:
        raise BranchError(f"invalid Neon branch name {branch!r}: 1 to {MAX_BRANCH_NAME} characters")


class LocalNeon:
    """Neon's branch operations, played by databases on the server behind `admin_url`."""

    def __init__(self, admin_url: str, *, terminate_template_connections: bool = False):
        if not admin_url:
            raise ConfigError(
                "local Neon needs a superuser Postgres URL: set NEON_LOCAL_PG_URL "
                "(`python -m sqlgym_pipelines.local env` prints it)"
            )
        self.admin_url = admin_url
        # Copying a database needs it idle; killing other sessions is opt-in because they may
        # be someone's running pipeline.
        self.terminate_template_connections = terminate_template_connections

    def _admin(self):
        # Always via `postgres`: a session on the parent database would itself block the copy.
        return pg.connection(self.admin_url, autocommit=True, dbname="postgres")

    def list_branches(self) -> list[NeonBranch]:
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE NOT datistemplate ORDER BY datname"
            ).fetchall()
        branches = []
        for datname, comment in rows:
            if datname == MAIN_DATABASE:
                branches.append(NeonBranch(MAIN_BRANCH, None, datname, default=True))
            elif meta := _branch_meta(comment):
                branches.append(NeonBranch(meta[_MARKER], meta.get("parent"), datname))
        return branches

    def get_branch(self, name: str, branches: list[NeonBranch] | None = None) -> NeonBranch:
        branches = self.list_branches() if branches is None else branches
        for branch in branches:
            if branch.name == name:
                return branch
        hint = (
            f" (database {MAIN_DATABASE!r} is missing: run `python -m sqlgym_pipelines.local up`)"
            if name == MAIN_BRANCH
            else ""
        )
        known = ", ".join(sorted(b.name for b in branches)) or "none"
        raise BranchError(f"local Neon branch {name!r} does not exist (branches: {known}){hint}")

    def create_branch(self, name: str, parent: str) -> NeonBranch:
        """A new branch holding a copy of `parent`'s data (BranchError if it already exists)."""
        _check_name(name)
        existing = {b.name: b for b in self.list_branches()}
        if name in existing:
            raise BranchError(f"local Neon branch {name!r} already exists")
        template = self.get_branch(parent, list(existing.values())).id
        dbname = database_name_for(name)
        self._copy_database(dbname, template, parent)
        comment = json.dumps({_MARKER: name, "parent": parent})
        try:
            with self._admin() as conn:
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        sql.Identifier(dbname), sql.Literal(comment)
                    )
                )
        except BaseException:
            # Without its comment the database would be an orphan that list() cannot see.
            self._drop(dbname)
            raise
        return NeonBranch(name, parent, dbname)

    def delete_branch(self, name: str) -> None:
        refuse_protected(name)
        branches = self.list_branches()
        branch = self.get_branch(name, branches)
        children = sorted(b.name for b in branches if b.parent == name)
        if children:
            # Neon refuses this too; keeping it here makes local mode fail where production would.
            raise BranchError(
                f"local Neon branch {name!r} has child branches ({', '.join(children)}): "
                "delete them first"
            )
        self._drop(branch.id)

    def connection_uri(self, branch: str) -> str:
        """The admin URL pointed at `branch`'s database (BranchError if there is no such branch)."""
        return _with_database(self.admin_url, self.get_branch(branch).id)

    def _copy_database(self, dbname: str, template: str, parent: str) -> None:
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(dbname), sql.Identifier(template)
        )
        with self._admin() as conn:
            if self.terminate_template_connections:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (template,),
                )
            try:
                conn.execute(stmt)
            except psycopg.errors.ObjectInUse:
                fix = (
                    "stop the clients that keep reconnecting and retry"
                    if self.terminate_template_connections
                    else "close them, or allow ending them (terminate_template_connections=True)"
                )
                raise BranchError(
                    f"cannot branch from {parent!r}: its database {template!r} has other sessions "
                    f"({_sessions_on(conn, template)}) and Postgres copies only idle databases; "
                    f"{fix}"
                ) from None

    def _drop(self, dbname: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def _branch_meta(comment: str | None) -> dict | None:
    if not comment:
        return None
    try:
        meta = json.loads(comment)
    except ValueError:
        return None  # someone else's comment on some other database
    return meta if isinstance(meta, dict) and isinstance(meta.get(_MARKER), str) else None


def _sessions_on(conn: psycopg.Connection, dbname: str) -> str:
    rows = conn.execute(
        "SELECT pid, usename, application_name, state FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
        (dbname,),
    ).fetchall()
    return "; ".join(f"pid {p} user {u} app {a or '-'} {s or ''}".strip() for p, u, a, s in rows)


def _with_database(url: str, dbname: str) -> str:
    """`url` with its database replaced; URLs stay URLs (query kept), conninfo stays conninfo."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + quote(dbname)))
    return pg.with_dbname(url, dbname)
