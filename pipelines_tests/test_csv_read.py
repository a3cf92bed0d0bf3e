"""The CSV reader: every dialect edge case, physical line numbers, malformed rows kept aside."""

import io

import polars as pl
import pytest

from sqlgym_pipelines.lib.csv_config import Dialect
from sqlgym_pipelines.lib.csv_read import CsvFileError, read_batches


def read(data: bytes, dialect: Dialect | None = None, block_size: int = 1 << 20, names=None):
    names, batches = read_batches(
        io.BytesIO(data), dialect or Dialect(), names=names, block_size=block_size
    )
    batches = list(batches)
    frame = pl.concat([b.frame for b in batches])
    bad = [b for batch in batches for b in batch.bad_rows]
    return names, frame, bad


def test_quotes_newlines_crlf_bom_and_empty_versus_null():
    data = (
        "\ufeffid,name,note\r\n"
        '1,"Smith, J","he said ""hi"""\r\n'
        '2,,""\r\n'
        '3,x,"two\r\nlines"\r\n'
        "4,é ü 中,end\r\n"
    ).encode()
    names, frame, bad = read(data)
    assert names == ["id", "name", "note"]  # the BOM is not part of the first name
    assert frame.to_dicts() == [
        {"id": "1", "name": "Smith, J", "note": 'he said "hi"', "_line": 2},
        {"id": "2", "name": None, "note": "", "_line": 3},  # empty field NULL, "" empty string
        {"id": "3", "name": "x", "note": "two\r\nlines", "_line": 4},
        {"id": "4", "name": "é ü 中", "note": "end", "_line": 6},
    ]
    assert bad == []


def test_malformed_rows_are_kept_aside_with_their_physical_line():
    data = b'id,a,b\n1,"x\ny",z\n2,only\n3,p,q\n4,p,q,extra\n5,"m\nn\no",r\n6,s\n'
    _, frame, bad = read(data)
    assert frame.select("id", "_line").rows() == [("1", 2), ("3", 5), ("5", 7)]
    assert [(b.line, b.text, b.reason) for b in bad] == [
        (4, "2,only", "expected 3 fields, found 2"),
        (6, "4,p,q,extra", "expected 3 fields, found 4"),
        (10, "6,s", "expected 3 fields, found 2"),
    ]


def test_line_numbers_stay_exact_across_small_blocks():
    rows = [f'{i},"v{i}\nmore",w' if i % 3 == 0 else f"{i},v{i},w" for i in range(200)]
    rows[50] = "50,short"
    data = ("id,a,b\n" + "\n".join(rows) + "\n").encode()
    _, frame, bad = read(data, block_size=256)
    expected, line = {}, 2
    for i, row in enumerate(rows):
        expected[str(i)] = line
        line += row.count("\n") + 1
    got = dict(frame.select("id", "_line").rows())
    assert got == {k: v for k, v in expected.items() if k != "50"}
    assert [(b.line, b.text) for b in bad] == [(expected["50"], "50,short")]


def test_dialect_delimiter_escape_null_markers_and_encoding():
    dialect = Dialect(
        delimiter=";",
        escape="\\",
        double_quote=False,
        null_values=("NULL", "n/a"),
        encoding="latin-1",
    )
    data = 'id;text\n1;"a \\"quoted\\" word"\n2;NULL\n3;n/a\n4;café\n'.encode("latin-1")
    _, frame, _ = read(data, dialect)
    assert frame["text"].to_list() == ['a "quoted" word', None, None, "café"]


def test_no_header_takes_the_declared_names():
    _, frame, _ = read(b"1,a\n2,b\n", Dialect(header=False), names=["id", "name"])
    assert frame.select("id", "name", "_line").rows() == [("1", "a", 1), ("2", "b", 2)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "cannot read the header row"),
        (b"id,id\n1,2\n", r"repeats column\(s\) id"),
        (b"id,,x\n1,2,3\n", "empty column name"),
    ],
)
def test_unreadable_headers_name_the_problem(data, message):
    with pytest.raises(CsvFileError, match=message):
        read(data)
