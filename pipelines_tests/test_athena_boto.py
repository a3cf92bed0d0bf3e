"""The boto3 Athena engine against moto's Athena (which runs nothing: results are injected).

moto never ends an execution FAILED (its states go QUEUED -> RUNNING -> SUCCEEDED) and never
splits GetQueryResults into pages, so those two paths use botocore's Stubber, a fake of the
Athena service itself, with responses checked against Athena's API model.
"""

import datetime as dt
import json
import urllib.request
from decimal import Decimal

import pyarrow as pa
import pytest
from botocore.stub import Stubber

from sqlgym_pipelines.lib.athena_boto import BotoAthena, PollSettings, athena_literal
from sqlgym_pipelines.lib.errors import QueryFailed
from sqlgym_pipelines.local.provision import aws_client

COLUMNS = [
    ("name", "varchar", 2147483647, 0),
    ("qty", "integer", 10, 0),
    ("views", "bigint", 19, 0),
    ("score", "double", 17, 0),
    ("active", "boolean", 0, 0),
    ("day", "date", 0, 0),
    ("at", "timestamp", 3, 0),
    ("price", "decimal", 12, 2),
]


def column_info(columns=COLUMNS):
    return [
        {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": n, "Label": n, "Type": t,
         "Precision": p, "Scale": s, "Nullable": "UNKNOWN", "CaseSensitive": t == "varchar"}
        for n, t, p, s in columns
    ]  # fmt: skip


def row(*values):
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


def moto_api(stack, path, body):
    request = urllib.request.Request(
        f"{stack.s3_endpoint_url}/moto-api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def inject(stack, rows, columns=COLUMNS):
    """Queue the result the next StartQueryExecution in this region will get (moto's FIFO)."""
    result = {"rows": rows, "column_info": column_info(columns)}
    moto_api(stack, "static/athena/query-results", {"region": stack.region, "results": [result]})


@pytest.fixture
def client(stack):
    client = aws_client(stack, "athena")
    yield client
    client.close()


@pytest.fixture
def athena(client):
    return BotoAthena(
        client, database="sqlgym", output_location="s3://sqlgym-athena-results-local/"
    )


@pytest.fixture
def stuck_queries(stack):
    """moto keeps every new execution QUEUED (until it has been polled 10,000 times)."""
    transition = {"progression": "manual", "times": 10_000}
    moto_api(
        stack,
        "state-manager/set-transition",
        {"model_name": "athena::execution", "transition": transition},
    )
    yield
    moto_api(stack, "state-manager/unset-transition", {"model_name": "athena::execution"})


def test_results_are_typed_from_column_info(stack, athena):
    header = row(*[c[0] for c in COLUMNS])
    inject(stack, [
        header,
        row("ada", "3", "9000000000", "1.5", "true", "2024-02-29", "2024-02-29 23:59:59.123", "12345678.90"),
        row("", None, None, "NaN", "false", None, None, None),
    ])  # fmt: skip
    table = athena.query("SELECT * FROM orders")
    assert table.schema == pa.schema(
        [("name", pa.string()), ("qty", pa.int32()), ("views", pa.int64()), ("score", pa.float64()),
         ("active", pa.bool_()), ("day", pa.date32()), ("at", pa.timestamp("us")), ("price", pa.decimal128(12, 2))]
    )  # fmt: skip
    first, second = table.to_pylist()
    assert first == {
        "name": "ada", "qty": 3, "views": 9_000_000_000, "score": 1.5, "active": True,
        "day": dt.date(2024, 2, 29), "at": dt.datetime(2024, 2, 29, 23, 59, 59, 123000),
        "price": Decimal("12345678.90"),
    }  # fmt: skip
    # NULL and '' stay apart; NaN is a double, not an error.
    assert second["name"] == "" and second["qty"] is None and second["price"] is None
    assert second["score"] != second["score"]


def test_more_than_a_page_of_rows(stack, athena):
    # moto returns all rows in one response (no NextToken); the paginator must still drop the header once.
    columns = [("n", "bigint", 19, 0), ("amount", "decimal", 10, 2)]
    rows = [row("n", "amount")] + [row(str(i), f"{i}.05") for i in range(2500)]
    inject(stack, rows, columns)
    table = athena.query("SELECT n, amount FROM big")
    assert table.num_rows == 2500
    assert table.column("n").to_pylist() == list(range(2500))
    assert table.column("amount")[2499].as_py() == Decimal("2499.05")


def test_pages_header_is_skipped_on_the_first_page_only(client):
    athena = BotoAthena(client, database="sqlgym", sleep=lambda _: None)
    meta = {"ColumnInfo": column_info([("n", "integer", 10, 0)])}
    with Stubber(client) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
        stub.add_response("get_query_execution", _execution("q1", "SUCCEEDED"))
        page1 = {
            "ResultSet": {"Rows": [row("n"), row("1"), row("2")], "ResultSetMetadata": meta},
            "NextToken": "t2",
        }
        page2 = {"ResultSet": {"Rows": [row("3"), row("4")], "ResultSetMetadata": meta}}
        stub.add_response(
            "get_query_results", page1, {"QueryExecutionId": "q1", "MaxResults": 1000}
        )
        stub.add_response(
            "get_query_results",
            page2,
            {"QueryExecutionId": "q1", "MaxResults": 1000, "NextToken": "t2"},
        )
        table = athena.query("SELECT n FROM t")
        stub.assert_no_pending_responses()
    assert table.column("n").to_pylist() == [1, 2, 3, 4]


def test_failed_query_carries_athenas_reason_after_backoff(client):
    sleeps = []
    athena = BotoAthena(
        client, database="sqlgym", poll=PollSettings(initial_s=0.5, max_s=1.5), sleep=sleeps.append
    )
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"
    with Stubber(client) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q2"})
        for state in ("QUEUED", "RUNNING", "RUNNING", "RUNNING"):
            stub.add_response("get_query_execution", _execution("q2", state))
        stub.add_response("get_query_execution", _execution("q2", "FAILED", reason))
        with pytest.raises(
            QueryFailed,
            match=r"q2 FAILED: COLUMN_NOT_FOUND: .*'nope' cannot be resolved.*SELECT nope",
        ):
            athena.query("SELECT nope FROM t")
    assert sleeps == [0.5, 1.0, 1.5, 1.5]  # doubling, capped at max_s


def test_cancelled_query_is_a_clear_failure(stack, client, athena, stuck_queries):
    query_id = athena.start("SELECT 1")
    client.stop_query_execution(QueryExecutionId=query_id)  # someone cancels it in the console
    with pytest.raises(QueryFailed, match=rf"{query_id} CANCELLED: Athena gave no reason"):
        athena.wait(query_id, "SELECT 1")


def test_timeout_stops_the_query(client, stuck_queries):
    athena = BotoAthena(
        client, database="sqlgym", poll=PollSettings(initial_s=0.05, max_s=0.1, timeout_s=0.5)
    )
    with pytest.raises(
        QueryFailed, match=r"still QUEUED after 0.5s and was stopped.*SELECT slow"
    ) as info:
        athena.query("SELECT slow FROM huge")
    query_id = str(info.value).split()[2]
    state = client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"][
        "State"
    ]
    assert state == "CANCELLED"


def test_params_are_sent_as_athena_literals(stack, client, athena):
    inject(stack, [row("n"), row("1")], [("n", "integer", 10, 0)])
    params = ["O'Brien", 3, Decimal("1.50"), dt.date(2024, 1, 2), None, True]
    assert athena.query("SELECT 1 FROM t WHERE a = ? AND b = ?", params).to_pylist() == [{"n": 1}]
    last = client.list_query_executions()["QueryExecutionIds"][-1]
    sent = client.get_query_execution(QueryExecutionId=last)["QueryExecution"][
        "ExecutionParameters"
    ]
    assert sent == ["'O''Brien'", "3", "1.50", "DATE '2024-01-02'", "NULL", "true"]


def test_empty_result_keeps_its_columns(stack, athena):
    inject(stack, [row("n", "price")], [("n", "bigint", 19, 0), ("price", "decimal", 12, 2)])
    table = athena.query("SELECT n, price FROM t WHERE false")
    assert table.num_rows == 0
    assert table.schema == pa.schema([("n", pa.int64()), ("price", pa.decimal128(12, 2))])


def test_rejected_request_names_the_problem(client):
    athena = BotoAthena(client, database="sqlgym", workgroup="no-such-workgroup")
    with pytest.raises(
        QueryFailed, match=r"StartQueryExecution: InvalidRequestException: WorkGroup does not exist"
    ):
        athena.query("SELECT 1")


def test_athena_literals():
    assert athena_literal(dt.datetime(2024, 1, 2, 3, 4, 5)) == "TIMESTAMP '2024-01-02 03:04:05'"
    assert athena_literal(b"\x01\xff") == "X'01ff'"
    assert athena_literal(False) == "false"
    with pytest.raises(QueryFailed, match="cannot bind a dict"):
        athena_literal({})


def _execution(query_id, state, reason=None):
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    return {
        "QueryExecution": {"QueryExecutionId": query_id, "StatementType": "DML", "Status": status}
    }
