"""AthenaResource: Athena SQL in, pyarrow.Table out, run by AWS Athena or locally by DuckDB.

`engine="athena"` talks to Athena through boto3 (endpoint_url points it at moto in tests);
`engine="duckdb"` runs the same SQL over the lake's Parquet on S3, with the table layout
taken from `catalog` / `catalog_path` (see lib/athena_catalog.py for the format).
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import boto3
import dagster as dg
import pyarrow as pa
from pydantic import Field, PrivateAttr

from sqlgym_pipelines.lib.athena_boto import BotoAthena, PollSettings
from sqlgym_pipelines.lib.athena_catalog import Catalog, CatalogTable
from sqlgym_pipelines.lib.errors import ConfigError


class AthenaEngine(Protocol):
    """What both engines offer inside `AthenaResource.session()`."""

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table: ...


class AthenaResource(dg.ConfigurableResource):
    """Runs Athena (Trino) SQL and returns typed Arrow tables, on AWS Athena or a local DuckDB."""

    engine: Literal["athena", "duckdb"] = Field(
        default="athena",
        description="'athena' runs on AWS Athena; 'duckdb' runs locally over S3 Parquet.",
    )
    region: str = Field(
        default="us-east-1", description="AWS region of Athena and the lake bucket."
    )
    database: str = Field(
        default="default", description="Athena (Glue) database the SQL's bare table names live in."
    )
    workgroup: str = Field(default="primary", description="Athena workgroup.")
    output_location: str | None = Field(
        default=None,
        description="s3:// prefix for Athena's result files; None uses the workgroup's.",
    )
    endpoint_url: str | None = Field(
        default=None, description="Athena endpoint override (moto in tests)."
    )
    aws_access_key_id: str | None = Field(
        default=None, description="None uses the default AWS credential chain."
    )
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for the duckdb engine's reads, e.g. http://127.0.0.1:5000.",
    )
    catalog: dict[str, Any] | None = Field(
        default=None,
        description="duckdb engine: {'tables': {name: {location, format, partitioning, columns}}}.",
    )
    catalog_path: str | None = Field(
        default=None,
        description="duckdb engine: a JSON file with the same shape as `catalog` (merged under it).",
    )
    query_timeout_s: float = Field(
        default=600.0, description="athena engine: stop a query running longer."
    )
    poll_initial_s: float = Field(
        default=0.2, description="athena engine: first wait between status checks."
    )
    poll_max_s: float = Field(
        default=5.0, description="athena engine: the waits double up to this."
    )

    # Tables added at run time by register_table; they shadow the configured catalog.
    _registered: dict[str, CatalogTable] = PrivateAttr(default_factory=dict)
    # Views created by `CREATE VIEW` through the duckdb engine; kept like Athena keeps them in Glue.
    _views: dict[str, str] = PrivateAttr(default_factory=dict)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one statement (`?` placeholders bound from params) and return its rows, typed."""
        with self.session() as engine:
            return engine.query(sql, params)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Same as `query` (for callers that say execute)."""
        return self.query(sql, params)

    @contextmanager
    def session(self) -> Iterator[AthenaEngine]:
        """One open engine for several queries (a DuckDB connection or an Athena client)."""
        if self.engine == "duckdb":
            with self.duckdb_engine() as engine:
                yield engine
        else:
            with self.athena_client() as client:
                yield BotoAthena(
                    client,
                    database=self.database,
                    workgroup=self.workgroup,
                    output_location=self.output_location,
                    poll=PollSettings(
                        initial_s=self.poll_initial_s,
                        max_s=self.poll_max_s,
                        timeout_s=self.query_timeout_s,
                    ),
                )

    def register_table(
        self,
        name: str,
        location: str,
        *,
        partitioning: Mapping[str, Any] | None = None,
        columns: Mapping[str, str] | None = None,
        format: str = "parquet",
    ) -> CatalogTable:
        """Make a table queryable by the duckdb engine for the rest of this resource's life."""
        if self.engine != "duckdb":
            raise ConfigError(
                f"register_table({name!r}) is for engine 'duckdb': with engine 'athena' the tables are "
                f"Glue's; create them with CREATE EXTERNAL TABLE through query()"
            )
        spec = {
            "location": location,
            "format": format,
            "partitioning": partitioning,
            "columns": columns,
        }
        table = CatalogTable.from_dict(name, spec)
        self._registered[table.name] = table
        return table

    def load_catalog(self) -> Catalog:
        """catalog_path, then `catalog` over it, then tables from register_table / views from CREATE VIEW."""
        merged = Catalog.from_json(self.catalog_path) if self.catalog_path else Catalog()
        configured = Catalog.from_dict(self.catalog)
        for table in configured.tables.values():
            merged.add(table)
        merged.views.update(configured.views)
        for table in self._registered.values():
            merged.add(table)
        merged.views.update(self._views)
        return merged

    @contextmanager
    def athena_client(self) -> Iterator[Any]:
        client = self._boto_session().client("athena", endpoint_url=self.endpoint_url)
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def duckdb_engine(self) -> Iterator[Any]:
        # imported here: duckdb and sqlglot cost ~20 MB in every run process that never uses them
        from sqlgym_pipelines.lib.athena_duckdb import DuckDBAthena, s3_filesystem

        filesystem = s3_filesystem(
            self.s3_endpoint_url,
            region=self.region,
            access_key=self.aws_access_key_id,
            secret_key=self.aws_secret_access_key,
            session_token=self.aws_session_token,
        )
        engine = DuckDBAthena(self.load_catalog(), filesystem, database=self.database)
        try:
            yield engine
        finally:
            self._views.update(engine.catalog.views)  # each session is a new engine
            engine.close()

    def _boto_session(self) -> boto3.Session:
        return boto3.Session(
            region_name=self.region,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )
