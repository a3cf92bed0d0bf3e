"""What every benchmark shares: which code it measured, and how its result is written."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
