"""prefetch keeps order, hands the producer's error to the consumer, and stops it early."""

import pytest

from sqlgym_pipelines.lib.prefetch import prefetch


def test_order_errors_and_early_stop():
    assert list(prefetch(iter(range(1000)), depth=2)) == list(range(1000))

    def failing():
        yield 1
        raise ValueError("source broke")

    with pytest.raises(ValueError, match="source broke"):
        list(prefetch(failing()))

    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    stream = prefetch(endless(), depth=1)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the consumer stops: the producer is told, and closes its source
    assert closed == [True]
