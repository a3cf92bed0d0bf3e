"""Neon HTTP API v2 client for branches: list, create from a parent, delete, connection URI.

Branches are addressed by *name* here; Neon's endpoints take branch ids (br-...), so each call
resolves names through the branch list first. 429, 423 (another operation holds the project)
and 5xx are retried with exponential backoff and full jitter, honouring Retry-After.
The API key travels only in the session's Authorization header: it is never logged and is
scrubbed from every error message, as are connection URIs (they carry passwords).
"""

import email.utils
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from sqlgym_pipelines.lib.branch_mapping import NeonBranch, refuse_protected
from sqlgym_pipelines.lib.errors import BranchError, ConfigError, ConnectionFailed

DEFAULT_BASE_URL = "https://console.neon.tech/api/v2"
RETRY_STATUSES = frozenset({423, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is treated as down, not waited on

log = logging.getLogger(__name__)


class _MaybeApplied(ConnectionFailed):
    """A non-idempotent request got a 5xx or no answer: the server may or may not have done it."""


class NeonApiClient:
    """One Neon project's branches over HTTP. Use as a context manager so the session closes."""

    def __init__(
        self,
        api_key: str,
        project_id: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 30.0,
    ):
        if not api_key:
            raise ConfigError("Neon API key is empty: set NEON_API_KEY")
        if not project_id:
            raise ConfigError("Neon project id is empty: set NEON_PROJECT_ID")
        self._key = api_key
        self.project_id = project_id
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers.update(
            {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        )

    def __enter__(self) -> "NeonApiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:  # the default repr would be harmless, but be explicit: no key
        return f"NeonApiClient(project_id={self.project_id!r}, base_url={self.base_url!r})"

    # -- branches -------------------------------------------------------------------------

    def list_branches(self) -> list[NeonBranch]:
        """Every branch of the project, with parent ids translated to parent names."""
        raw = self._list_raw()
        names = {b["id"]: b["name"] for b in raw}
        return [
            NeonBranch(
                name=b["name"],
                parent=names.get(b.get("parent_id") or "", b.get("parent_id")),
                id=b["id"],
                default=bool(b.get("default") or b.get("primary")),
            )
            for b in raw
        ]

    def get_branch(self, name: str) -> NeonBranch:
        branches = self.list_branches()
        for branch in branches:
            if branch.name == name:
                return branch
        known = ", ".join(sorted(b.name for b in branches)) or "none"
        raise BranchError(
            f"Neon branch {name!r} does not exist in project {self.project_id!r} (branches: {known})"
        )

    def create_branch(self, name: str, parent: str) -> NeonBranch:
        """A new branch (with a read-write compute) copied from `parent`'s current state."""
        branches = {b.name: b for b in self.list_branches()}
        if name in branches:
            raise BranchError(f"Neon branch {name!r} already exists in project {self.project_id!r}")
        if parent not in branches:
            known = ", ".join(sorted(branches)) or "none"
            raise BranchError(
                f"cannot create Neon branch {name!r}: parent {parent!r} does not exist "
                f"(branches: {known})"
            )
        body = {
            "branch": {"name": name, "parent_id": branches[parent].id},
            "endpoints": [{"type": "read_write"}],
        }

        def landed() -> NeonBranch | None:
            return next((b for b in self.list_branches() if b.name == name), None)

        path, what = self._path("branches"), f"branch {parent!r}"
        data = self._send_checked("POST", path, what, landed, json=body)
        if isinstance(data, NeonBranch):
            return data
        return NeonBranch(name=name, parent=parent, id=data["branch"]["id"])

    def delete_branch(self, name: str) -> None:
        refuse_protected(name)
        branch = self.get_branch(name)
        if branch.default:
            raise BranchError(f"Neon branch {name!r} is the project's default branch: not deleted")

        def gone() -> bool | None:
            return True if all(b.id != branch.id for b in self.list_branches()) else None

        self._send_checked("DELETE", self._path(f"branches/{branch.id}"), f"branch {name!r}", gone)

    def connection_uri(
        self, branch: str, database_name: str, role_name: str, *, pooled: bool = False
    ) -> str:
        """The branch's Postgres URI (with password: hand it to a client, never to a log)."""
        branch_id = self.get_branch(branch).id
        params = {
            "branch_id": branch_id,
            "database_name": database_name,
            "role_name": role_name,
            "pooled": "true" if pooled else "false",
        }
        what = f"database {database_name!r} / role {role_name!r} on branch {branch!r}"
        data = self._request("GET", self._path("connection_uri"), params=params, what=what)
        return data["uri"]

    # -- HTTP -----------------------------------------------------------------------------

    def _path(self, rest: str) -> str:
        return f"/projects/{self.project_id}/{rest}"

    def _list_raw(self) -> list[dict[str, Any]]:
        # Neon paginates with a cursor; ask for its maximum page and follow `next` if present.
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 10000}
        what = f"project {self.project_id!r}"
        while True:
            data = self._request(
                "GET", self._path("branches"), params=params, what=what, not_found=ConfigError
            )
            page = data.get("branches", [])
            out.extend(page)
            cursor = (data.get("pagination") or {}).get("next")
            if not page or not cursor or cursor == params.get("cursor"):
                return out
            params = {**params, "cursor": cursor}

    def _send_checked(self, method: str, path: str, what: str, done: Callable, **kwargs):
        """Send a non-idempotent request; after a 5xx or lost answer, resend only if not `done()`.

        Resending blindly could create a second branch (or report a 404 for a delete that
        worked). Returns the JSON answer, or what `done()` found.
        """
        for attempt in range(self.max_retries + 1):
            try:
                return self._request(method, path, what=what, resend=False, **kwargs)
            except _MaybeApplied as exc:
                found = done()
                if found is not None:
                    return found
                if attempt == self.max_retries:
                    raise ConnectionFailed(self._gave_up(method, path, attempt, str(exc))) from None
                self._sleep(method, path, attempt, str(exc), None)
        raise AssertionError("unreachable")

    def _request(
        self, method: str, path: str, *, what: str, not_found=BranchError, resend=True, **kwargs
    ) -> dict[str, Any]:
        """JSON of a 2xx answer; retries transient failures, raises a typed error otherwise.

        resend=False (non-idempotent calls) still retries 423/429, which Neon answers without
        acting, but raises _MaybeApplied on a 5xx or a lost answer so the caller can check first.
        """
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                resp = self._session.request(
                    method, self.base_url + path, timeout=self.timeout_s, **kwargs
                )
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {self._scrub(str(exc))}"
                if not resend:
                    raise _MaybeApplied(reason) from None
                if last:
                    raise ConnectionFailed(self._gave_up(method, path, attempt, reason)) from None
                self._sleep(method, path, attempt, reason, None)
                continue
            if resp.ok:
                return self._json(resp, method, path)
            if resp.status_code >= 500 and not resend:
                raise _MaybeApplied(f"{resp.status_code} {self._server_message(resp)}")
            if resp.status_code in RETRY_STATUSES and not last:
                self._sleep(method, path, attempt, str(resp.status_code), resp)
                continue
            self._raise_for(resp, method, path, what, not_found, attempt)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _json(self, resp, method: str, path: str) -> dict[str, Any]:
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            raise ConnectionFailed(
                f"Neon API {method} {path} answered {resp.status_code} with non-JSON "
                f"(is {self.base_url!r} the Neon API v2 base URL?)"
            ) from None

    def _raise_for(self, resp, method, path, what, not_found, attempt) -> None:
        status, message = resp.status_code, self._server_message(resp)
        if status in (401, 403):
            raise ConnectionFailed(
                f"Neon API refused the API key ({status} on {method} {path}: {message}): "
                f"check NEON_API_KEY and that the key can access project {self.project_id!r}"
            )
        if status == 404:
            raise not_found(
                f"Neon API: {what} not found in project {self.project_id!r} "
                f"(404 on {method} {path}: {message}); check NEON_PROJECT_ID and branch names"
            )
        if status in RETRY_STATUSES:
            raise ConnectionFailed(self._gave_up(method, path, attempt, f"{status} {message}"))
        raise BranchError(f"Neon API rejected {method} {path} for {what}: {status} {message}")

    def _gave_up(self, method: str, path: str, attempt: int, reason: str) -> str:
        return (
            f"Neon API {method} {self.base_url}{path} failed after {attempt + 1} attempts "
            f"(last: {reason}); Neon may be down or rate limiting, retry later"
        )

    def _sleep(self, method: str, path: str, attempt: int, reason: str, resp) -> None:
        delay = _retry_after_s(resp) if resp is not None else None
        if delay is None:
            # Full jitter: concurrent runs hitting the same limit spread out instead of re-colliding.
            delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
        log.warning(
            "Neon API %s %s -> %s; retry %d/%d in %.2fs",
            method,
            path,
            reason,
            attempt + 1,
            self.max_retries,
            delay,
        )
        time.sleep(delay)

    def _server_message(self, resp) -> str:
        try:
            message = str(resp.json().get("message", ""))
        except ValueError:
            message = resp.text[:200]
        return self._scrub(message.strip() or resp.reason or "")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _retry_after_s(resp) -> float | None:
    """Retry-After as seconds (it may be a number or an HTTP date); None when absent/garbled."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
