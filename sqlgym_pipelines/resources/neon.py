"""NeonResource: the Postgres branch a run writes to, through Neon's API or a local Postgres.

mode="api" talks to Neon (api_key, project_id); mode="local" plays Neon with one database per
branch on the local stack's Postgres (local_admin_url). Which branch a run targets comes from
the git branch (lib/branch_mapping.py, seed 002 §5).
Dagster rejects dg.EnvVar for Literal fields: pass `mode` as a plain string (e.g. from
os.environ["NEON_MODE"]); the secrets (api_key, local_admin_url) take dg.EnvVar.
"""

import contextlib
from collections.abc import Iterator
from typing import Literal

import dagster as dg
from pydantic import Field

from sqlgym_pipelines.lib.branch_mapping import (
    DEV_BRANCH,
    MAIN_BRANCH,
    BranchTarget,
    NeonBranch,
    detect_git_branch,
    map_git_branch,
    refuse_protected,
)
from sqlgym_pipelines.lib.errors import ConfigError
from sqlgym_pipelines.lib.neon_api import DEFAULT_BASE_URL, NeonApiClient
from sqlgym_pipelines.lib.neon_local import LocalNeon

Backend = NeonApiClient | LocalNeon


class NeonResource(dg.ConfigurableResource):
    """Neon branches (list, create from a parent, delete) and their connection URLs."""

    mode: Literal["api", "local"] = Field(description="'api' for Neon, 'local' for local Postgres")
    api_key: str | None = Field(default=None, repr=False, description="Neon API key (dg.EnvVar)")
    project_id: str | None = Field(default=None, description="Neon project id")
    api_base_url: str = DEFAULT_BASE_URL
    database_name: str = "neondb"
    role_name: str = "neondb_owner"
    local_admin_url: str | None = Field(
        default=None,
        repr=False,  # carries the superuser password
        description="superuser URL of the local Postgres (mode='local', dg.EnvVar)",
    )
    local_terminate_template_connections: bool = Field(
        default=False,
        description="local mode: end other sessions on a parent database so it can be copied",
    )
    git_branch: str | None = Field(
        default=None, description="git branch to target; default: detected (see branch_mapping)"
    )

    def target(self, git_branch: str | None = None) -> BranchTarget:
        """The §5 target of `git_branch`, else of the configured override, else of the checkout."""
        return map_git_branch(git_branch or self.git_branch or detect_git_branch())

    def list_branches(self) -> list[NeonBranch]:
        with self._backend() as backend:
            return backend.list_branches()

    def get_branch(self, name: str) -> NeonBranch:
        with self._backend() as backend:
            return backend.get_branch(name)

    def create_branch(self, name: str, parent: str) -> NeonBranch:
        refuse_protected(name)
        with self._backend() as backend:
            return backend.create_branch(name, parent)

    def ensure_branch(self, name: str, parent: str | None = None) -> NeonBranch:
        """The branch, created from `parent` if missing (no parent: it must already exist)."""
        with self._backend() as backend:
            existing = {b.name: b for b in backend.list_branches()}
            if name in existing:
                return existing[name]
            if parent is None:
                return backend.get_branch(name)  # raises: missing, and nothing to create it from
            refuse_protected(name)
            return backend.create_branch(name, parent)

    def ensure_target(self, target: BranchTarget | None = None) -> NeonBranch:
        """The Neon branch a run of `target` writes to, creating a preview branch on first use."""
        target = target or self.target()
        if self.mode == "local" and DEV_BRANCH in (target.neon_branch, target.neon_parent):
            # The local stack provisions only main; in Neon, dev is a long-lived child of main.
            self.ensure_branch(DEV_BRANCH, MAIN_BRANCH)
        return self.ensure_branch(target.neon_branch, target.neon_parent)

    def delete_branch(self, name: str) -> None:
        """Delete a branch; main (production) is always refused."""
        refuse_protected(name)
        with self._backend() as backend:
            backend.delete_branch(name)

    def connection_url(self, branch: str) -> str:
        """The Postgres URL of `branch` (contains a password: never log it, use pg.redact)."""
        with self._backend() as backend:
            if isinstance(backend, NeonApiClient):
                return backend.connection_uri(branch, self.database_name, self.role_name)
            return backend.connection_uri(branch)

    @contextlib.contextmanager
    def _backend(self) -> Iterator[Backend]:
        if self.mode == "local":
            yield LocalNeon(
                self.local_admin_url or "",
                terminate_template_connections=self.local_terminate_template_connections,
            )
            return
        if not self.api_key or not self.project_id:
            missing = [
                n
                for n, v in (("NEON_API_KEY", self.api_key), ("NEON_PROJECT_ID", self.project_id))
                if not v
            ]
            raise ConfigError(f"NeonResource mode='api' needs {' and '.join(missing)}")
        with NeonApiClient(self.api_key, self.project_id, self.api_base_url) as client:
            yield client
