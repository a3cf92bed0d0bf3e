from sqlgym_pipelines.lib import pg
from sqlgym_pipelines.local.provision import aws_client


def test_fixtures(stack, pg_db, s3_bucket):
    with pg.connection(pg_db) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
    s3 = aws_client(stack, "s3")
    s3.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"
