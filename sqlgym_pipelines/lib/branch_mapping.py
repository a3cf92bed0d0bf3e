"""Git branch -> environment -> Neon branch (seed 002 §5), and which git branch we are on.

| Git branch    | Environment | AWS workspace       | Neon branch                     |
|---------------|-------------|---------------------|---------------------------------|
| main          | production  | production          | main                            |
| dev           | dev         | dev                 | dev                             |
| feature/*     | dev         | dev (shared)        | dev                             |
| preview/pr-N  | dev         | dev                 | preview/pr-N (created from dev) |

Any other branch name is refused with a ConfigError (not silently sent to dev): a typo such
as `preview/pr-12a` or `features/x` would otherwise write to the shared dev branch unnoticed.
Run such a branch by naming its target explicitly, e.g. SQLGYM_GIT_BRANCH=feature/<name>.
"""

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlgym_pipelines.lib.errors import BranchError, ConfigError

MAIN_BRANCH = "main"  # Neon's production branch: never deleted, never recreated
DEV_BRANCH = "dev"
PROTECTED_BRANCHES = frozenset({MAIN_BRANCH})

ACCEPTED_PATTERNS = ("main", "dev", "feature/<name>", "preview/pr-<number>")

# Checked in this order; the first variable that is set and non-empty wins.
# GITHUB_HEAD_REF comes before GITHUB_REF_NAME because on pull_request events GitHub sets
# GITHUB_REF_NAME to "<pr>/merge" and only GITHUB_HEAD_REF holds the PR's source branch
# (on push events GITHUB_HEAD_REF is set but empty).
GIT_BRANCH_ENV_VARS = ("SQLGYM_GIT_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME")

_PREVIEW = re.compile(r"preview/pr-(\d+)")
_FEATURE = re.compile(r"feature/(\S+)")


@dataclass(frozen=True)
class BranchTarget:
    """Where a git branch's pipelines read and write."""

    git_branch: str
    environment: str  # "production" | "dev"
    aws_workspace: str  # "production" | "dev"
    neon_branch: str
    neon_parent: str | None  # set only when the Neon branch is created on demand
    creates_branch: bool

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


@dataclass(frozen=True)
class NeonBranch:
    """A Neon branch as either backend (HTTP API or local Postgres) reports it."""

    name: str
    parent: str | None  # parent branch *name*; None for a root branch
    id: str  # Neon's br-... id, or the local database name
    default: bool = False  # the project's default (production) branch


def normalize_git_branch(git_branch: str) -> str:
    """The short branch name: CI tools sometimes hand over `refs/heads/<name>`."""
    name = (git_branch or "").strip()
    return name.removeprefix("refs/heads/")


def map_git_branch(git_branch: str) -> BranchTarget:
    """The §5 row for this git branch; ConfigError for any branch outside the table."""
    name = normalize_git_branch(git_branch)
    if name == MAIN_BRANCH:
        return BranchTarget(name, "production", "production", MAIN_BRANCH, None, False)
    if name == DEV_BRANCH or _FEATURE.fullmatch(name):
        # feature/* branches share dev's workspace and Neon branch: nothing is created.
        return BranchTarget(name, "dev", "dev", DEV_BRANCH, None, False)
    if match := _PREVIEW.fullmatch(name):
        neon = f"preview/pr-{match.group(1)}"
        return BranchTarget(name, "dev", "dev", neon, DEV_BRANCH, True)
    raise ConfigError(
        f"git branch {name!r} has no environment: accepted patterns are "
        f"{', '.join(ACCEPTED_PATTERNS)}. Rename the branch or set SQLGYM_GIT_BRANCH "
        "(e.g. SQLGYM_GIT_BRANCH=feature/<name> to use the shared dev branch)"
    )


def refuse_protected(name: str) -> None:
    """BranchError when `name` is the production Neon branch (delete/recreate would lose data)."""
    if name in PROTECTED_BRANCHES:
        raise BranchError(
            f"Neon branch {name!r} is production (git branch 'main') and is never deleted or "
            "recreated by this project"
        )


def detect_git_branch(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """The current git branch: SQLGYM_GIT_BRANCH, GITHUB_HEAD_REF, GITHUB_REF_NAME, then `git`.

    There is deliberately no fallback to "main": a machine that cannot tell its branch must not
    end up writing to production. It gets a ConfigError saying to set SQLGYM_GIT_BRANCH.
    """
    env = os.environ if env is None else env
    for var in GIT_BRANCH_ENV_VARS:
        value = normalize_git_branch(env.get(var, ""))
        if value:
            return value
    branch = _git_head_branch(cwd)
    if branch:
        return branch
    raise ConfigError(
        "cannot tell the git branch: none of "
        f"{', '.join(GIT_BRANCH_ENV_VARS)} is set and `git rev-parse --abbrev-ref HEAD` "
        "gave no branch (no repository, git missing, or detached HEAD). Set SQLGYM_GIT_BRANCH"
    )


def _git_head_branch(cwd: Path | None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = done.stdout.strip()
    # "HEAD" is what git prints for a detached checkout (CI checking out a commit): no branch.
    if done.returncode != 0 or not branch or branch == "HEAD":
        return None
    return branch
