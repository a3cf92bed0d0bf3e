"""The git branch -> environment -> Neon branch table (seed 002 §5) and branch detection."""

import subprocess

import pytest

from sqlgym_pipelines.lib.branch_mapping import (
    BranchTarget,
    detect_git_branch,
    map_git_branch,
    refuse_protected,
)
from sqlgym_pipelines.lib.errors import BranchError, ConfigError


@pytest.mark.parametrize(
    ("git_branch", "expected"),
    [
        ("main", BranchTarget("main", "production", "production", "main", None, False)),
        ("dev", BranchTarget("dev", "dev", "dev", "dev", None, False)),
        ("feature/login", BranchTarget("feature/login", "dev", "dev", "dev", None, False)),
        ("feature/a/b-c", BranchTarget("feature/a/b-c", "dev", "dev", "dev", None, False)),
        (
            "preview/pr-42",
            BranchTarget("preview/pr-42", "dev", "dev", "preview/pr-42", "dev", True),
        ),
        (
            "preview/pr-007",
            BranchTarget("preview/pr-007", "dev", "dev", "preview/pr-007", "dev", True),
        ),
    ],
)
def test_section5_rows(git_branch, expected):
    assert map_git_branch(git_branch) == expected


def test_only_main_is_production():
    assert map_git_branch("main").is_production
    assert not map_git_branch("feature/x").is_production
    assert not map_git_branch("preview/pr-1").is_production


@pytest.mark.parametrize(
    ("given", "neon_branch"),
    [("refs/heads/main", "main"), ("  dev\n", "dev"), ("refs/heads/preview/pr-3", "preview/pr-3")],
)
def test_ref_prefix_and_whitespace_are_ignored(given, neon_branch):
    assert map_git_branch(given).neon_branch == neon_branch


@pytest.mark.parametrize(
    "git_branch",
    [
        "",
        "Main",  # git branch names are case-sensitive
        "production",
        "master",
        "hotfix/x",
        "features/x",
        "feature/",
        "feature",
        "preview/pr-",
        "preview/pr-12a",
        "preview/12",
        "main2",
        "HEAD",
    ],
)
def test_branches_outside_the_table_are_refused(git_branch):
    with pytest.raises(ConfigError) as err:
        map_git_branch(git_branch)
    message = str(err.value)
    for pattern in ("main", "dev", "feature/<name>", "preview/pr-<number>", "SQLGYM_GIT_BRANCH"):
        assert pattern in message


def test_main_is_protected_and_others_are_not():
    with pytest.raises(BranchError, match="production"):
        refuse_protected("main")
    refuse_protected("dev")
    refuse_protected("preview/pr-1")


def test_detection_precedence():
    env = {
        "SQLGYM_GIT_BRANCH": "feature/override",
        "GITHUB_HEAD_REF": "preview/pr-9",
        "GITHUB_REF_NAME": "9/merge",
    }
    assert detect_git_branch(env) == "feature/override"
    del env["SQLGYM_GIT_BRANCH"]
    # pull_request event: the PR's source branch, not GitHub's "<n>/merge" ref.
    assert detect_git_branch(env) == "preview/pr-9"
    # push event: GitHub sets GITHUB_HEAD_REF to "", which must not win.
    assert detect_git_branch({"GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": "dev"}) == "dev"
    assert detect_git_branch({"SQLGYM_GIT_BRANCH": "refs/heads/main"}) == "main"


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def git_repo(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "feature/from-git")
    _git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    return tmp_path


def test_detection_falls_back_to_git(git_repo):
    assert detect_git_branch({}, cwd=git_repo) == "feature/from-git"
    assert map_git_branch(detect_git_branch({}, cwd=git_repo)).neon_branch == "dev"


def test_detached_head_or_no_repo_is_an_error_not_production(git_repo, tmp_path_factory):
    _git(git_repo, "checkout", "-q", "--detach")
    with pytest.raises(ConfigError, match="SQLGYM_GIT_BRANCH"):
        detect_git_branch({}, cwd=git_repo)
    with pytest.raises(ConfigError, match="detached HEAD"):
        detect_git_branch({}, cwd=tmp_path_factory.mktemp("not-a-repo"))
