"""S3: dagster-aws's S3Resource (boto3) plus a pyarrow S3 filesystem built from the same settings."""

from urllib.parse import urlparse

import dagster_aws.s3
import pyarrow.fs


class S3Resource(dagster_aws.s3.S3Resource):
    """boto3 client via get_client(); pyarrow_filesystem() for Parquet I/O; endpoint_url for moto."""

    def get_object_to_set_on_execution_context(self) -> "S3Resource":
        # dagster-aws builds a boto3 client here, for every step that requires the resource,
        # before the step runs (~0.2 s of loading botocore's models), and the step then builds
        # its own with get_client(). context.resources.s3 is this resource instead.
        return self

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
