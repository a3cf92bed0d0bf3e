"""A file-like S3 multipart upload that is completed later: written data stays invisible until then.

The lake commits by writing its sync record first and completing the uploads after; an upload
that is never completed (a crash) is aborted by recovery. Nothing is copied.
"""

import io
from concurrent.futures import Future, ThreadPoolExecutor

MIN_PART = 5 * 1024 * 1024  # S3's minimum for every part but the last


class PendingUpload(io.RawIOBase):
    """write() bytes; close() uploads the rest but does not complete: see complete()."""

    def __init__(self, client, bucket: str, key: str, part_size: int = 8 * 1024 * 1024):
        self.s3, self.bucket, self.key = client, bucket, key
        self.part_size = max(part_size, MIN_PART)
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.buffer = bytearray()
        self.size = 0
        self.parts: list[Future] = []
        # one upload in flight while the next part fills: overlaps network and encoding
        self.pool = ThreadPoolExecutor(max_workers=1)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.buffer += view
        self.size += len(view)
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(view)

    def _send(self, body: bytes) -> None:
        number = len(self.parts) + 1
        if len(self.parts) >= 2:  # bound memory: at most one part queued behind the one in flight
            self.parts[-2].result()
        self.parts.append(self.pool.submit(self._upload, number, body))

    def _upload(self, number: int, body: bytes) -> dict:
        response = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.buffer or not self.parts:
                self._send(bytes(self.buffer))
                self.buffer.clear()
            self.done_parts = [f.result() for f in self.parts]
        except BaseException:
            self.abort()
            raise
        finally:
            self.pool.shutdown(wait=True)
            super().close()

    def abort(self) -> None:
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    @property
    def handle(self) -> dict:
        """What the commit record keeps to complete the upload later."""
        return {"upload_id": self.upload_id, "parts": self.done_parts}


def complete(client, bucket: str, key: str, handle: dict) -> None:
    """Make the object visible; done already (a repeated publish) is fine."""
    try:
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=handle["upload_id"],
            MultipartUpload={"Parts": handle["parts"]},
        )
    except client.exceptions.NoSuchUpload:
        client.head_object(Bucket=bucket, Key=key)  # raises if it was aborted, not completed


def abort_uploads(client, bucket: str, prefix: str, suffix: str) -> list[str]:
    """Abort the pending uploads under prefix whose key ends with suffix; returns their keys."""
    aborted = []
    for page in client.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        for upload in page.get("Uploads", []):
            if upload["Key"].endswith(suffix):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted.append(upload["Key"])
    return aborted
