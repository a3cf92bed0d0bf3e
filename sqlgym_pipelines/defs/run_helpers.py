"""What every pipeline's assets share: bad input fails fast, previews render as Markdown."""

import contextlib
from collections.abc import Iterable, Sequence

import dagster as dg
from botocore.exceptions import ClientError

# S3 answers that no retry can change: the bucket, the key or the credentials are wrong.
PERMANENT_S3 = ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")


@contextlib.contextmanager
def failing_fast(data_errors: tuple[type[BaseException], ...]):
    """Bad data or config become a Failure that is not retried; anything else propagates,
    for the asset's RetryPolicy to retry (connection drops, throttling, 5xx)."""
    try:
        yield
    except data_errors as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except ClientError as exc:
        if exc.response["Error"]["Code"] in PERMANENT_S3:
            raise dg.Failure(description=f"S3 refused: {exc}", allow_retries=False) from exc
        raise


def markdown_table(names: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table for a preview (cells cut at 60 characters); '(none)' without rows."""
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        cells = (str(v).replace("|", "\\|").replace("\n", " ")[:60] for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else "(none)"
