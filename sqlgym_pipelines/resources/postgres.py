"""PostgresResource: psycopg 3 connections to any Postgres (Neon, RDS, the local cluster)."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import psycopg
from pydantic import Field, field_validator

from sqlgym_pipelines.lib import pg

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class PostgresResource(dg.ConfigurableResource):
    """A Postgres database by URL; every connection carries our app name and timeouts."""

    url: str = Field(
        description="postgresql://user:password@host:port/dbname (give it as an EnvVar)"
    )
    application_name: str = "sqlgym-pipelines"
    statement_timeout_ms: int = Field(
        default=0, description="per-statement limit in ms; 0 = the server's default"
    )
    connect_timeout_s: int = 10
    sslmode: str | None = Field(
        default=None,
        description=f"TLS mode, one of {', '.join(SSLMODES)}; None keeps what the URL says",
    )
    sslrootcert: str | None = Field(default=None, description="CA bundle for verify-ca/verify-full")

    @field_validator("sslmode")
    @classmethod
    def _known_sslmode(cls, value: str | None) -> str | None:
        if value is not None and value not in SSLMODES:
            raise ValueError(f"sslmode {value!r} is not one of {', '.join(SSLMODES)}")
        return value

    def _settings(self) -> dict:
        return {
            "application_name": self.application_name,
            "statement_timeout_ms": self.statement_timeout_ms or None,
            "connect_timeout_s": self.connect_timeout_s,
            "sslmode": self.sslmode,
            "sslrootcert": self.sslrootcert,
        }

    @contextlib.contextmanager
    def get_connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection that commits on success, rolls back on error, and is always closed."""
        with pg.connection(self.url, autocommit=autocommit, **self._settings()) as conn:
            yield conn

    def server_version(self) -> str:
        """The server's version string; raises ConnectionFailed with the reason if unreachable."""
        with self.get_connection(autocommit=True) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    @property
    def redacted_url(self) -> str:
        return pg.redact(self.url)
