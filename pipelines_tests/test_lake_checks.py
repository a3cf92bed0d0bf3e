"""Null analysis reads Parquet footers, and falls back to one column chunk where they do not tell."""

import pyarrow as pa
import pyarrow.parquet as pq

from sqlgym_pipelines.lib.lake_checks import _null_counts


def test_null_counts_per_top_level_column_across_row_groups(tmp_path):
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "tags": pa.array([["a", None], None, [], None, ["b"]], pa.list_(pa.string())),
            "iv": pa.array(
                [{"m": 1}, None, {"m": None}, {"m": 2}, None], pa.struct([("m", pa.int32())])
            ),
            "name": pa.array(["x", None, None, "y", None]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)  # three row groups
    counts, rows = _null_counts(str(path))
    assert rows == 5
    # NULL lists, not NULL elements; a struct whose field is NULL is not itself NULL
    assert counts == {"id": 0, "tags": 2, "iv": 2, "name": 3}
    no_stats = tmp_path / "nostats.parquet"
    pq.write_table(table, no_stats, row_group_size=2, write_statistics=False)
    assert _null_counts(str(no_stats))[0] == counts
