"""`make dev`: the stack, demo data and the Dagster UI come up; Ctrl-C stops every process it started."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sqlgym_pipelines.local.ports import free_port
from sqlgym_pipelines.local.stack import LocalStack, StackInfo, _alive

WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def _wait_for_location(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the launcher exited early"
        try:
            entries = _graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                return entries[0]
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not load the code location within {timeout_s}s")


def _local(root, *args: str) -> list[str]:
    """The stack manager's command line, on its own state directory."""
    return [sys.executable, "-m", "sqlgym_pipelines.local", "--root", str(root), *args]


def _env_without_a_stack() -> dict[str, str]:
    """This session's environment minus the test stack's variables, as on a fresh shell."""
    stack_keys = StackInfo("", "", True, None, 0, "").env().keys()
    return {k: v for k, v in os.environ.items() if k not in stack_keys}


@pytest.fixture
def root():
    path = Path(tempfile.mkdtemp(prefix="sqlgym-dev-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    LocalStack(path).down()  # whatever a failed test left running
    shutil.rmtree(path, ignore_errors=True)


def test_dev_serves_the_code_location_and_ctrl_c_stops_everything(root):
    port = free_port()
    proc = subprocess.Popen(
        _local(root, "dev", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env_without_a_stack(),
    )
    try:
        entry = _wait_for_location(port, proc)
        assert entry["name"] == "sqlgym_pipelines"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        state = json.loads((root / "stack.json").read_text())
        dagster_pids = subprocess.run(
            ["pgrep", "-f", f"dagster.*(-p|--port) {port}"], capture_output=True, text=True
        ).stdout.split()
        assert dagster_pids, "no dagster process found"

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # a failed assertion: stop it the way a user would, then harder
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            subprocess.run(["pkill", "-f", f"dagster.*(-p|--port) {port}"], check=False)
    assert proc.returncode == 0, output
    assert "seeded" in output.lower() or "sqlgym" in output.lower()
    assert "local stack stopped" in output
    assert not _alive(state["moto_pid"], "moto_process")
    assert not _alive(state["pg_pid"], "postgres")
    assert not any(_alive(int(pid), "dagster") for pid in dagster_pids)
    assert not (root / "stack.json").exists()


def test_dev_refuses_a_busy_port(root):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            _local(root, "dev", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=120,
            env=_env_without_a_stack(),
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert not (root / "stack.json").exists()  # the stack it started for nothing is stopped


def test_demo_materializes_the_graph_and_stops(root):
    result = subprocess.run(
        _local(root, "demo"),
        capture_output=True,
        text=True,
        timeout=600,
        env=_env_without_a_stack(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "lake/postgres_sync/users" in out and "lake/postgres_sync/badges" in out
    assert "warehouse/sales/store_sales" in out and "neon/public/forecast_data" in out
    assert "FAILED" not in out and "local stack stopped" in out
    assert not (root / "stack.json").exists()
