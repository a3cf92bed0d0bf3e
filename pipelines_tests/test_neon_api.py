"""The Neon API client against a local fake of Neon's HTTP API v2 (the outermost edge)."""

import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from sqlgym_pipelines.lib.errors import BranchError, ConfigError, ConnectionFailed
from sqlgym_pipelines.lib.neon_api import NeonApiClient
from sqlgym_pipelines.resources.neon import NeonResource

API_KEY = "napi_TEST_SECRET_KEY_4f9d2"
PASSWORD = "npg_S3CRET_pw"
PROJECT = "floral-king-961888"


class FakeNeon:
    """Just enough of console.neon.tech/api/v2 for branches, keeping state between calls."""

    def __init__(self):
        self.branches = {
            "br-main-000001": _branch("br-main-000001", "main", None, default=True),
            "br-dev-000002": _branch("br-dev-000002", "dev", "br-main-000001"),
        }
        self.requests: list[tuple[str, str]] = []
        self.faults: list[dict] = []  # answered before anything else, in order
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2"

    def fail(self, status, times=1, *, method=None, headers=None, message="injected", apply=False):
        """Answer the next `times` requests with `status`; apply=True does the work first."""
        fault = {"status": status, "times": times, "method": method, "apply": apply}
        self.faults.append(fault | {"headers": headers or {}, "message": message})

    def count(self, method, path_end):
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_end))

    def answer(self, method, path, query, body):
        """(status, headers, json) for one request."""
        with self.lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault["times"] > 0 and fault["method"] in (None, method):
                    fault["times"] -= 1
                    if fault["apply"]:  # the server acted, but its answer is an error
                        self._route(method, path, query, body)
                    return (
                        fault["status"],
                        fault["headers"],
                        {"code": "", "message": fault["message"]},
                    )
        return self._route(method, path, query, body)

    def _route(self, method, path, query, body):
        parts = path.removeprefix("/api/v2/").split("/")
        if parts[:1] != ["projects"] or len(parts) < 3:
            return 404, {}, {"message": "not found"}
        if parts[1] != PROJECT:
            return 404, {}, {"code": "", "message": "project not found"}
        route = (method, *parts[2:3], len(parts))
        if route == ("GET", "branches", 3):
            return 200, {}, {"branches": list(self.branches.values()), "annotations": {}}
        if route == ("POST", "branches", 3):
            return self._create(body)
        if route == ("DELETE", "branches", 4):
            gone = self.branches.pop(parts[3], None)
            return (
                (200, {}, {"branch": gone, "operations": []})
                if gone
                else (404, {}, {"message": "branch not found"})
            )
        if route == ("GET", "connection_uri", 3):
            branch_id = query.get("branch_id", [""])[0]
            if branch_id not in self.branches:
                return 404, {}, {"message": "branch not found"}
            db, role = query["database_name"][0], query["role_name"][0]
            host = f"ep-{branch_id.removeprefix('br-')}.us-east-2.aws.neon.tech"
            return 200, {}, {"uri": f"postgresql://{role}:{PASSWORD}@{host}/{db}?sslmode=require"}
        return 404, {}, {"message": "not found"}

    def _create(self, body):
        wanted = body["branch"]
        if wanted.get("parent_id") not in self.branches:
            return 404, {}, {"message": "parent branch not found"}
        branch_id = f"br-{uuid.uuid4().hex[:12]}"
        self.branches[branch_id] = _branch(branch_id, wanted["name"], wanted["parent_id"])
        endpoints = [
            {"id": f"ep-{branch_id[3:]}", "type": e["type"], "branch_id": branch_id}
            for e in body["endpoints"]
        ]
        return (
            201,
            {},
            {"branch": self.branches[branch_id], "endpoints": endpoints, "operations": []},
        )


def _branch(branch_id, name, parent_id, default=False):
    branch = {"id": branch_id, "project_id": PROJECT, "name": name, "default": default}
    branch |= {"protected": False, "current_state": "ready"}
    return branch | ({"parent_id": parent_id} if parent_id else {})


def _handler(fake: FakeNeon):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                fake.requests.append((self.command, url.path))
                status, headers, data = 401, {}, {"code": "", "message": "authentication required"}
            else:
                status, headers, data = fake.answer(
                    self.command, url.path, parse_qs(url.query), body
                )
            payload = json.dumps(data).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def fake():
    fake = FakeNeon()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def client(fake, key=API_KEY, project=PROJECT, **kw):
    kw.setdefault("backoff_base_s", 0.01)
    return NeonApiClient(key, project, fake.url, **kw)


def test_branch_lifecycle(fake):
    with client(fake) as neon:
        assert {(b.name, b.parent) for b in neon.list_branches()} == {
            ("main", None),
            ("dev", "main"),
        }
        created = neon.create_branch("preview/pr-12", "dev")
        assert created.id.startswith("br-") and created.parent == "dev"
        listed = {b.name: b for b in neon.list_branches()}
        assert listed["preview/pr-12"].parent == "dev"
        assert fake.branches[created.id]["parent_id"] == "br-dev-000002"  # ids on the wire
        uri = neon.connection_uri("preview/pr-12", "neondb", "neondb_owner")
        assert uri.startswith("postgresql://neondb_owner:") and created.id[3:] in uri
        assert uri.endswith("/neondb?sslmode=require")
        neon.delete_branch("preview/pr-12")
        assert "preview/pr-12" not in {b.name for b in neon.list_branches()}


def test_refusals_name_the_branch(fake):
    with client(fake) as neon:
        with pytest.raises(BranchError, match="'dev' already exists"):
            neon.create_branch("dev", "main")
        with pytest.raises(
            BranchError, match=r"parent 'nope' does not exist \(branches: dev, main\)"
        ):
            neon.create_branch("preview/pr-1", "nope")
        with pytest.raises(BranchError, match="'ghost' does not exist"):
            neon.delete_branch("ghost")
        with pytest.raises(BranchError, match="'ghost' does not exist"):
            neon.connection_uri("ghost", "neondb", "neondb_owner")
        with pytest.raises(BranchError, match="production"):
            neon.delete_branch("main")
    assert fake.count("DELETE", "br-main-000001") == 0 and "br-main-000001" in fake.branches


def test_429_waits_for_retry_after_then_succeeds(fake):
    fake.fail(429, times=1, headers={"Retry-After": "1"})
    started = time.monotonic()
    with client(fake) as neon:
        names = {b.name for b in neon.list_branches()}
    assert names == {"main", "dev"}
    assert fake.count("GET", "/branches") == 2  # the 429, then the retry that succeeded
    assert time.monotonic() - started >= 0.95  # Retry-After honoured, not the 10 ms backoff


def test_transient_5xx_and_423_are_retried(fake):
    fake.fail(502, times=2, method="GET")
    fake.fail(423, times=1, method="POST")  # Neon: another operation holds the project
    with client(fake, max_retries=3) as neon:
        created = neon.create_branch("preview/pr-2", "dev")
    assert created.id in fake.branches
    assert fake.count("GET", "/branches") == 3 and fake.count("POST", "/branches") == 2


def _named(fake, name):
    return [b for b in fake.branches.values() if b["name"] == name]


def test_create_lost_answer_does_not_make_a_second_branch(fake):
    fake.fail(500, method="POST", apply=True)  # created, but the answer says 500
    with client(fake) as neon:
        created = neon.create_branch("preview/pr-8", "dev")
    assert [b["id"] for b in _named(fake, "preview/pr-8")] == [created.id]
    assert fake.count("POST", "/branches") == 1  # found by listing, not sent again


def test_create_failed_on_the_server_is_sent_again(fake):
    fake.fail(503, method="POST")  # not created
    with client(fake) as neon:
        created = neon.create_branch("preview/pr-9", "dev")
    assert [b["id"] for b in _named(fake, "preview/pr-9")] == [created.id]
    assert fake.count("POST", "/branches") == 2


def test_delete_lost_answer_counts_as_deleted(fake):
    with client(fake) as neon:
        neon.create_branch("preview/pr-10", "dev")
        fake.fail(502, method="DELETE", apply=True)  # deleted, but the answer says 502
        neon.delete_branch("preview/pr-10")
    assert not _named(fake, "preview/pr-10") and fake.count("DELETE", "") == 1


def test_persistent_5xx_fails_clearly_after_the_retries(fake):
    fake.fail(500, times=100)
    with client(fake, max_retries=3) as neon, pytest.raises(ConnectionFailed) as err:
        neon.list_branches()
    assert fake.count("GET", "/branches") == 4
    assert "failed after 4 attempts" in str(err.value) and "500" in str(err.value)
    assert API_KEY not in str(err.value)


def test_bad_api_key_is_named_and_not_retried(fake):
    with client(fake, key="napi_WRONG_KEY_123") as neon, pytest.raises(ConnectionFailed) as err:
        neon.list_branches()
    message = str(err.value)
    assert "refused the API key (401" in message and "NEON_API_KEY" in message
    assert "napi_WRONG_KEY_123" not in message and "napi_WRONG_KEY_123" not in repr(err.value)
    assert len(fake.requests) == 1


def test_unknown_project_is_a_config_error(fake):
    with client(fake, project="no-such-project") as neon, pytest.raises(ConfigError) as err:
        neon.list_branches()
    assert "'no-such-project' not found" in str(err.value)


def test_secrets_never_reach_errors_or_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail(503, times=1)
    fake.fail(400, times=1, method="POST", message=f"malformed request for token {API_KEY}")
    with client(fake) as neon:
        uri = neon.connection_uri("dev", "neondb", "neondb_owner")
        assert PASSWORD in uri  # the caller gets the password...
        with pytest.raises(BranchError) as err:
            neon.create_branch("preview/pr-3", "dev")
        assert API_KEY not in repr(neon)
    assert API_KEY not in str(err.value) and "***" in str(err.value)
    assert "retry 1/5" in caplog.text  # the 503 was logged...
    assert API_KEY not in caplog.text and PASSWORD not in caplog.text  # ...without secrets


def test_unreachable_server_is_connection_failed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    neon = NeonApiClient(
        API_KEY, PROJECT, f"http://127.0.0.1:{port}/api/v2", max_retries=2, backoff_base_s=0.01
    )
    with neon, pytest.raises(ConnectionFailed) as err:
        neon.list_branches()
    assert f"127.0.0.1:{port}" in str(err.value) and "3 attempts" in str(err.value)
    assert API_KEY not in str(err.value)


def test_resource_in_api_mode(fake):
    neon = NeonResource(
        mode="api",
        api_key=API_KEY,
        project_id=PROJECT,
        api_base_url=fake.url,
        git_branch="preview/pr-5",
    )
    assert API_KEY not in repr(neon) and API_KEY not in str(neon)
    target = neon.target()
    assert (target.neon_branch, target.neon_parent) == ("preview/pr-5", "dev")
    first = neon.ensure_target()
    assert neon.ensure_target() == first  # idempotent: one POST only
    assert fake.count("POST", "/branches") == 1
    assert neon.connection_url("preview/pr-5").endswith("/neondb?sslmode=require")
    with pytest.raises(BranchError, match="production"):
        neon.delete_branch("main")
    neon.delete_branch("preview/pr-5")
    assert "preview/pr-5" not in {b.name for b in neon.list_branches()}


def test_resource_api_mode_needs_key_and_project():
    with pytest.raises(ConfigError, match="NEON_API_KEY and NEON_PROJECT_ID"):
        NeonResource(mode="api").list_branches()
