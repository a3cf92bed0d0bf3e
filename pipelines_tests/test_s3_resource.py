"""S3Resource: boto3 and pyarrow against moto's real HTTP server, from the same settings."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sqlgym_pipelines.resources.s3 import S3Resource


@pytest.fixture
def s3_res(stack) -> S3Resource:
    return S3Resource(
        endpoint_url=stack.s3_endpoint_url,
        region_name=stack.region,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def test_boto3_put_get_and_paginate(s3_res, s3_bucket):
    client = s3_res.get_client()
    for i in range(1005):  # more than one ListObjectsV2 page
        client.put_object(Bucket=s3_bucket, Key=f"p/{i:05d}.txt", Body=str(i).encode())
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="p/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    assert len(keys) == 1005 and keys[-1] == "p/01004.txt"
    assert client.get_object(Bucket=s3_bucket, Key="p/00042.txt")["Body"].read() == b"42"


def test_pyarrow_writes_parquet_boto3_sees_it(s3_res, s3_bucket):
    fs = s3_res.pyarrow_filesystem()
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", None, "c"]})
    pq.write_table(table, f"{s3_bucket}/lake/t.parquet", filesystem=fs, compression="snappy")
    head = s3_res.get_client().head_object(Bucket=s3_bucket, Key="lake/t.parquet")
    assert head["ContentLength"] > 0
    back = pq.read_table(f"{s3_bucket}/lake/t.parquet", filesystem=fs)
    assert back.equals(table)
    assert (
        pq.ParquetFile(fs.open_input_file(f"{s3_bucket}/lake/t.parquet"))
        .metadata.row_group(0)
        .column(0)
        .compression
        == "SNAPPY"
    )


def test_missing_object_is_a_clear_error(s3_res, s3_bucket):
    fs = s3_res.pyarrow_filesystem()
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        pq.read_table(f"{s3_bucket}/nope.parquet", filesystem=fs)
    client = s3_res.get_client()
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=s3_bucket, Key="nope.parquet")
