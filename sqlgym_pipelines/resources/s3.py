"""S3: dagster-aws's S3Resource (boto3) plus a pyarrow S3 filesystem built from the same settings."""

from typing import Any
from urllib.parse import urlparse

import dagster_aws.s3
import pyarrow.fs
from pydantic import PrivateAttr


class S3Resource(dagster_aws.s3.S3Resource):
    """boto3 client via get_client(); pyarrow_filesystem() for Parquet I/O; endpoint_url for moto."""

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        """One boto3 client per resource (clients are thread-safe): dagster-aws builds one for
        context.resources.s3 when a step starts (~0.1-0.2 s of loading botocore's models) and
        the step's own get_client() used to build a second. Two threads asking at once may
        both build one: harmless."""
        if self._client is None:
            self._client = super().get_client()
        return self._client

    def pyarrow_filesystem(self) -> pyarrow.fs.S3FileSystem:
        kwargs: dict = {"region": self.region_name or "us-east-1"}
        if self.aws_access_key_id and self.aws_secret_access_key:
            kwargs.update(
                access_key=self.aws_access_key_id,
                secret_key=self.aws_secret_access_key,
                session_token=self.aws_session_token,
            )
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
        if self.use_unsigned_session:
            kwargs["anonymous"] = True
        return pyarrow.fs.S3FileSystem(**kwargs)
