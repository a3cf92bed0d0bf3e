"""`make dev` and `make demo`: run Dagster against the local stack, and stop what was started."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlgym_pipelines.lib.errors import StackError
from sqlgym_pipelines.local.demo import seed_all
from sqlgym_pipelines.local.ports import port_is_free
from sqlgym_pipelines.local.provision import prepare_dagster_home
from sqlgym_pipelines.local.stack import PROJECT_ROOT, LocalStack, StackInfo


def dagster_env(info: StackInfo) -> dict[str, str]:
    """The process environment for Dagster: the stack's endpoints under what the user exported.

    A variable the user set to a non-empty value (say SQLGYM_SOURCE_PG_URL to their own database) wins over the
    stack's. DAGSTER_HOME gets the project's dagster.yaml (Postgres storage on the local cluster).
    """
    env = {**info.env(), **{k: v for k, v in os.environ.items() if v}}
    prepare_dagster_home(Path(env["DAGSTER_HOME"]))
    return env


def _reset_signals() -> None:
    # A shell job started in the background hands down SIG_IGN for SIGINT; dagster dev then
    # ignores Ctrl-C and our stop request (TOOLCHAIN.md). Give it the default dispositions.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_ui_port(port: int) -> None:
    """Before starting anything: the UI's port must be free."""
    if not port_is_free(port):
        raise StackError(
            f"port {port} on 127.0.0.1 is in use (another dagster dev?). Stop it, or run "
            f"`make dev PORT=<free port>`."
        )


def run_dev(stack: LocalStack, info: StackInfo, *, port: int, stop_stack_after: bool) -> int:
    """seed + `dagster dev`; Ctrl-C (or SIGTERM) stops Dagster, then the stack if we started it."""
    try:
        seed_all(info)
        env = dagster_env(info)
    except BaseException:
        if stop_stack_after:
            stack.down()
        raise
    cmd = [
        str(Path(sys.executable).parent / "dagster"), "dev",
        "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    print(f"dagster dev on http://127.0.0.1:{port} (Ctrl-C stops Dagster and the local stack)")
    proc = subprocess.Popen(
        cmd, env=env, cwd=PROJECT_ROOT, preexec_fn=_reset_signals, start_new_session=True
    )
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            print(f"\nstopping dagster dev (pid {proc.pid}) ...", flush=True)
            proc.send_signal(signal.SIGINT)  # dagster dev shuts its webserver/daemon down on SIGINT

    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _wait(proc)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _kill_group(proc)
        if stop_stack_after:
            stack.down()
            print("local stack stopped")
    return 0 if stopping else code


def _wait(proc: subprocess.Popen) -> int:
    while True:
        try:
            return proc.wait()
        except InterruptedError:
            continue


def _kill_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Whatever of dagster dev's process group still runs: SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + grace_s
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        deadline = time.monotonic() + 5


def yesterday() -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


def run_demo(
    stack: LocalStack, info: StackInfo, *, date: str | None, stop_stack_after: bool
) -> int:
    """up + seed + materialize every asset for one date headless, print a summary, stop."""
    date = date or yesterday()
    try:
        seed_all(info)
        env = dagster_env(info)
        cmd = [sys.executable, "-m", "sqlgym_pipelines.local.materialize_all", "--date", date]
        return subprocess.run(cmd, env=env, cwd=PROJECT_ROOT).returncode
    finally:
        if stop_stack_after:
            stack.down()
            print("local stack stopped")
