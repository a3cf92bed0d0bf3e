"""Neon branch lifecycle (the seed's neonctl section) as launchpad jobs: create a branch from a
parent, show its connection string (password masked), delete it (main / production refused)."""

import dagster as dg
from pydantic import Field

from sqlgym_pipelines.defs.run_helpers import failing_fast
from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import BranchError, ConfigError
from sqlgym_pipelines.resources.neon import NeonResource

_ERRORS = (BranchError, ConfigError)


class BranchConfig(dg.Config):
    name: str = Field(description="the Neon branch, e.g. etl-test-branch")
    parent: str = Field(default="main", description="create: the branch to copy")


@dg.op(description="Create the branch from its parent (no-op if it exists).")
def create_neon_branch(context: dg.OpExecutionContext, config: BranchConfig, neon: NeonResource):
    with failing_fast(_ERRORS):
        branch = neon.ensure_branch(config.name, config.parent)
    context.log.info(f"branch {branch.name} (parent {branch.parent or '-'}, id {branch.id})")
    return dg.Output(branch.name, metadata={"branch": branch.name, "parent": branch.parent or ""})


@dg.op(description="The branch's connection string, with its password masked.")
def neon_branch_connection(
    context: dg.OpExecutionContext, config: BranchConfig, neon: NeonResource
):
    with failing_fast(_ERRORS):
        masked = pg.redact(neon.connection_url(config.name))
    context.log.info(f"{config.name}: {masked}")
    return dg.Output(masked, metadata={"connection": masked})


@dg.op(description="Delete the branch; main and the production branch are refused.")
def delete_neon_branch(context: dg.OpExecutionContext, config: BranchConfig, neon: NeonResource):
    with failing_fast(_ERRORS):
        neon.delete_branch(config.name)
    context.log.info(f"deleted branch {config.name}")
    return dg.Output(config.name, metadata={"deleted": config.name})


@dg.definitions
def neon_branch_jobs() -> dg.Definitions:
    @dg.job(name="neon_branch_create_job", description="neonctl branches create")
    def neon_branch_create_job():
        create_neon_branch()

    @dg.job(name="neon_branch_connection_job", description="neonctl connection-string (masked)")
    def neon_branch_connection_job():
        neon_branch_connection()

    @dg.job(name="neon_branch_delete_job", description="neonctl branches delete (not main)")
    def neon_branch_delete_job():
        delete_neon_branch()

    return dg.Definitions(
        jobs=[neon_branch_create_job, neon_branch_connection_job, neon_branch_delete_job]
    )
