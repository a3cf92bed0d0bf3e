"""A throwaway PostgreSQL cluster run from the installed server binaries (initdb + pg_ctl)."""

import glob
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlgym_pipelines.lib.errors import StackError
from sqlgym_pipelines.local.ports import free_port, port_is_free

SUPERUSER = "postgres"
# As root, initdb/pg_ctl/postgres refuse to run: they run as this OS user instead.
RUN_AS_WHEN_ROOT = "postgres"


def find_bin_dir() -> Path:
    """The directory holding initdb/pg_ctl: $SQLGYM_PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    configured = os.environ.get("SQLGYM_PG_BIN")
    candidates = [Path(configured)] if configured else []
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
        reverse=True,
    )
    candidates += [Path(v) for v in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    where = f"SQLGYM_PG_BIN={configured}" if configured else "/usr/lib/postgresql/*/bin and PATH"
    raise StackError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {where}. "
        "Install them (Debian/Ubuntu: apt-get install postgresql) or set SQLGYM_PG_BIN to their "
        "directory, or set SQLGYM_PG_URL to use a server that is already running."
    )


def _run_as_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError as exc:
        raise StackError(
            f"running as root, but there is no {RUN_AS_WHEN_ROOT!r} OS user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root). Create it (useradd -r postgres) or run as a normal user."
        ) from exc
    return ["runuser", "-u", RUN_AS_WHEN_ROOT, "--"]


def _check_traversable(path: Path) -> None:
    """As root, every parent of the data dir must be enterable by the postgres user."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        if parent.exists() and not (parent.stat().st_mode & 0o001):
            raise StackError(
                f"the data directory {path} is under {parent}, which the {RUN_AS_WHEN_ROOT!r} OS user "
                f"cannot enter (mode {oct(parent.stat().st_mode & 0o777)}). Use a data directory "
                f"outside it (SQLGYM_LOCAL_DIR) or run: chmod o+x {parent}"
            )


@dataclass
class PostgresCluster:
    """One cluster: its data dir, log file and port. Stopping it stops exactly the postmaster it started."""

    data_dir: Path
    port: int = 0

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    @property
    def pwfile(self) -> Path:
        return self.data_dir.parent / "superuser.password"

    @property
    def password(self) -> str:
        return self.pwfile.read_text().strip()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*_run_as_prefix(), str(find_bin_dir() / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise StackError(
                f"{args[0]} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
                + self._log_tail()
            )
        return proc

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log_file.exists():
            return ""
        tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last lines of {self.log_file} ---\n" + "\n".join(tail)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(RUN_AS_WHEN_ROOT)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self, password: str) -> None:
        """initdb with scram passwords on TCP; the data dir must be empty or absent."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()) and not self.initialized():
            raise StackError(
                f"{self.data_dir} exists, is not empty and is not a PostgreSQL data directory. "
                "Remove it or choose another SQLGYM_LOCAL_DIR."
            )
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.data_dir.parent)
        self.pwfile.write_text(password + "\n")
        self.pwfile.chmod(0o600)
        self._chown(self.pwfile)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.data_dir)
        self.log_file.touch()
        self._chown(self.log_file)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            f"--pwfile={self.pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        )  # fmt: skip

    def pid(self) -> int | None:
        """The postmaster's PID if it is running from this data dir."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the postgres user
        return pid

    def start(self, *, port: int = 0, fast: bool = False) -> None:
        """Start on 127.0.0.1; port 0 picks a free one. fast=True turns fsync off (tests only)."""
        if port and not port_is_free(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is already in use. Stop what uses it "
                f"(ss -ltnp 'sport = :{port}') or leave SQLGYM_PG_PORT unset to pick a free port."
            )
        self.port = port or free_port()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.data_dir}",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c max_wal_size=4GB",
            # 1/32 of shared_buffers (8 MB) by default: a bulk upsert (150 MB+ of WAL) filled it
            # and wrote WAL from the loading backend itself; 64 MB leaves that to the WAL writer
            # on the other core (-0.2 s of 2.9 s on benchmarks/csv_load.py's upsert).
            "-c wal_buffers=64MB",
        ]
        if fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if self.pid() is None:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
