"""The embedded local stack: a throwaway Postgres cluster and moto's AWS server, with their env file.

State lives under one directory (SQLGYM_LOCAL_DIR, default `<project>/.local`):
  pg/data, pg/postgres.log   the cluster (unless SQLGYM_PG_URL names an existing server)
  moto.log, moto.port        moto's server
  stack.json                 what was started (PIDs, ports) so `down` stops exactly that
  stack.env                  the endpoints, as KEY=VALUE lines for Dagster, make and tests
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.lib.errors import StackError
from sqlgym_pipelines.local.ports import port_is_free
from sqlgym_pipelines.local.postgres_cluster import PostgresCluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AWS_REGION = "us-east-2"  # the seeds' default region
AWS_KEY = "testing"  # moto accepts any credentials


def default_root() -> Path:
    return Path(os.environ.get("SQLGYM_LOCAL_DIR") or PROJECT_ROOT / ".local").resolve()


@dataclass
class StackInfo:
    """What a running stack offers: endpoints and credentials, and the PIDs it owns."""

    root: str
    pg_url: str  # superuser URL, database `postgres`
    pg_managed: bool  # False when SQLGYM_PG_URL pointed at an existing server
    pg_pid: int | None
    moto_pid: int
    s3_endpoint_url: str
    region: str = AWS_REGION
    started_at: float = field(default_factory=time.time)

    def url_for(self, dbname: str) -> str:
        """The superuser URL of another database on the same server."""
        base, _, _ = self.pg_url.rpartition("/")
        return f"{base}/{dbname}"

    def env(self) -> dict[str, str]:
        """The environment every tool of this project reads to find the local stack."""
        return {
            "SQLGYM_LOCAL_DIR": self.root,
            "SQLGYM_LOCAL_PG_URL": self.pg_url,
            "SQLGYM_SOURCE_PG_URL": self.url_for("sqlgym"),
            "SQLGYM_TARGET_PG_URL": self.url_for("warehouse"),
            "DAGSTER_PG_URL": self.url_for("dagster"),
            "DAGSTER_HOME": str(Path(self.root) / "dagster_home"),
            "NEON_MODE": "local",
            "NEON_LOCAL_PG_URL": self.pg_url,
            "SQLGYM_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": AWS_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "SQLGYM_ATHENA_ENGINE": "duckdb",
            "SQLGYM_SECRETS_BACKEND": "aws",
            "SNOWFLAKE_MODE": "fakesnow",
            "SNOWFLAKE_FAKESNOW_DB_PATH": str(Path(self.root) / "fakesnow"),
            "SNOWFLAKE_DATABASE": "SQLGYM",
            "SNOWFLAKE_SCHEMA": "CONFLICTS",
            # the demo's few hundred caregivers fill several chunks, so the UI shows them
            "SQLGYM_CONFLICTS_TARGET_CHUNK_SIZE": "1000",
            "SQLGYM_LAKE_BUCKET": "sqlgym-lake-local",
            "SQLGYM_DATALAKE_BUCKET": "sqlgym-datalake-dev-35315550",
            "SQLGYM_CSV_BUCKET": "sqlgym-csv-landing-local",
            "SQLGYM_SENSORS_DEFAULT_STATUS": "running",  # `make dev` shows the sensors at work
            "ATHENA_DB_NAME": "sqlgym",
            "ATHENA_OUTPUT_LOCATION": "s3://sqlgym-athena-results-local/",
        }


class LocalStack:
    """Start, find and stop the stack rooted at one directory."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or default_root()).resolve()
        self.cluster = PostgresCluster(self.root / "pg" / "data")

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.root / "stack.env"

    # -- state ---------------------------------------------------------------------------
    def info(self) -> StackInfo | None:
        """The running stack, or None if it is not (fully) running."""
        if not self.state_file.exists():
            return None
        info = StackInfo(**json.loads(self.state_file.read_text()))
        moto_alive = _alive(info.moto_pid, "moto_process")
        pg_alive = not info.pg_managed or self.cluster.pid() == info.pg_pid
        return info if moto_alive and pg_alive else None

    def _write_state(self, info: StackInfo) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2))
        tmp.replace(self.state_file)
        lines = [f"{key}={value}" for key, value in sorted(info.env().items())]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)

    # -- lifecycle -----------------------------------------------------------------------
    def up(self, *, fast: bool = False) -> StackInfo:
        """Start what is not running; reuse what is. Returns the running stack."""
        running = self.info()
        if running:
            # the env file follows the code: a newer checkout may export more variables
            self._write_state(running)
            return running
        self.down()  # a half-dead stack: stop its survivors before starting afresh
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # as root, the postgres OS user must enter it
        pg_url, pg_managed, pg_pid = self._start_postgres(fast=fast)
        try:
            moto_pid, moto_port = self._start_moto()
        except Exception:
            if pg_managed:
                self.cluster.stop()
            raise
        info = StackInfo(
            root=str(self.root),
            pg_url=pg_url,
            pg_managed=pg_managed,
            pg_pid=pg_pid,
            moto_pid=moto_pid,
            s3_endpoint_url=f"http://127.0.0.1:{moto_port}",
        )
        self._write_state(info)
        return info

    def down(self) -> None:
        """Stop exactly the processes this stack started; keep the data dir for the next `up`."""
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            _terminate(state.get("moto_pid"), "moto_process")
            self.state_file.unlink()
        if self.cluster.initialized():
            self.cluster.stop()
        self.env_file.unlink(missing_ok=True)

    def destroy(self) -> None:
        """down, then delete the data dir (a clean slate)."""
        import shutil

        self.down()
        shutil.rmtree(self.root / "pg", ignore_errors=True)

    # -- parts ---------------------------------------------------------------------------
    def _start_postgres(self, *, fast: bool) -> tuple[str, bool, int | None]:
        external = os.environ.get("SQLGYM_PG_URL")
        if external:
            with pg.connection(external, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return external, False, None
        if not self.cluster.initialized():
            self.cluster.init(password=secrets.token_urlsafe(18))
        port = int(os.environ.get("SQLGYM_PG_PORT") or 0)
        self.cluster.start(port=port, fast=fast)
        return self.cluster.url(), True, self.cluster.pid()

    def _start_moto(self) -> tuple[int, int]:
        port = int(os.environ.get("SQLGYM_MOTO_PORT") or 0)
        if port and not port_is_free(port):
            raise StackError(
                f"port {port} on 127.0.0.1 (SQLGYM_MOTO_PORT) is already in use. Stop what uses it "
                f"(ss -ltnp 'sport = :{port}') or unset SQLGYM_MOTO_PORT to pick a free port."
            )
        port_file = self.root / "moto.port"
        port_file.unlink(missing_ok=True)
        log = (self.root / "moto.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sqlgym_pipelines.local.moto_process", "--port-file", str(port_file), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches our launcher, which stops it
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = (self.root / "moto.log").read_text(errors="replace")[-2000:]
                raise StackError(
                    f"moto's server did not start (see {self.root / 'moto.log'}):\n{tail}"
                )
            time.sleep(0.05)
        return proc.pid, int(port_file.read_text())


def _alive(pid: int | None, marker: str) -> bool:
    """True if pid runs and its command line contains marker (guards against PID reuse)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def _terminate(pid: int | None, marker: str, timeout_s: float = 10.0) -> None:
    if not _alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, marker):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
