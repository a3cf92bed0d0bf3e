"""What every benchmark shares: a scratch stack, a run in a fresh process, which code it
measured, and how its result is written."""

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlgym_pipelines.local.stack import LocalStack  # noqa: E402


def code_version() -> dict:
    """The commit measured, and the files of the package that differ from it."""
    git = ["git", "-C", str(ROOT)]
    run = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        git + ["status", "--porcelain", "--", "sqlgym_pipelines"], capture_output=True, text=True
    )
    return {"commit": run.stdout.strip(), "uncommitted": dirty.stdout.split("\n")[:-1]}


def machine() -> str:
    return f"{os.cpu_count()} cores"


def write_result(path: Path, result: dict) -> None:
    """Print the result and write it as JSON (creating the folder)."""
    print(json.dumps(result, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


@contextlib.contextmanager
def scratch_stack(name: str) -> Iterator[tuple[Path, LocalStack]]:
    """A scratch folder in /tmp and a local stack rooted in it (not yet up): both are gone
    afterwards. The folder is 0755: as root, the postgres OS user must be able to enter it."""
    root = Path(tempfile.mkdtemp(prefix=f"sqlgym-bench-{name}-", dir="/tmp"))
    root.chmod(0o755)
    stack = LocalStack(root / "stack")
    try:
        yield root, stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ChildRun:
    result: dict  # the JSON its last line (or its last `mark` line) printed
    stderr: str
    peak_rss_mb: float  # the parent's view: a new maximum over all children, else the old one


def run_child(
    code: str, args: list[str], env: dict, *, mark: str = "", timeout: float | None = None
) -> ChildRun:
    """`python -c code *args` in a fresh process; a failure or a timeout ends the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"the pipeline run took more than {timeout:.0f}s; stopped") from exc
    lines = [line for line in out.stdout.splitlines() if line.startswith(mark) and line.strip()]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the pipeline run failed:\n{out.stderr[-6000:]}")
    # ru_maxrss of children is the max over all waited-for children: only a new maximum shows.
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return ChildRun(json.loads(lines[-1].removeprefix(mark)), out.stderr, peak)
