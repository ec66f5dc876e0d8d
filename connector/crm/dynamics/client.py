"""The HTTP core for the Dataverse Web API: auth, retries, service protection, typed errors.

Every request the adapter makes goes through ``DataverseClient.request``:

* **Auth.** A bearer token from ``TokenSource`` (msal). A ``401`` renews the token once and
  repeats the request; a second ``401`` raises ``CrmAuthError``.
* **Service protection (429).** Dataverse's limits are per user; its ``429`` carries
  ``Retry-After`` (seconds). The pause is recorded in the process-wide ``ThrottleGate`` of
  this client id, so *every* call as this user waits it out, not only the one refused. After
  ``max_throttled_attempts`` refusals the call raises ``CrmUnavailable(retry_after=...)``.
* **Outages.** Timeouts, connection errors and 5xx are retried with exponential backoff
  (``backoff_base * 2**n``, capped), at most ``max_attempts`` tries, then ``CrmUnavailable``.
* **Refusals.** ``404`` → ``CrmNotFound``; other 4xx → ``CrmRejected`` carrying Dataverse's
  ``{"error": {"code", "message"}}`` message (``.code`` and ``.status`` are kept for callers
  that branch on them, e.g. change tracking not enabled: ``0x80072491``).

Time is injected: ``clock`` (monotonic seconds) and ``sleeper`` default to the ``time``
module; tests pass fakes and assert the sleeps requested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests

from connector.crm.base import CrmAuthError, CrmNotFound, CrmRejected, CrmUnavailable
from connector.crm.dynamics.batch import (
    BatchFormatError,
    BatchOperation,
    BatchResponse,
    build_batch_request,
    parse_batch_response,
)
from connector.crm.dynamics.odata import dumps, loads
from connector.crm.dynamics.throttle import Clock, Sleeper, ThrottleGate, gate_for

__all__ = [
    "DataverseClient",
    "DataverseNotFound",
    "DataverseRejected",
    "Tokens",
    "error_of",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
FORMATTED_VALUES = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'


class Tokens(Protocol):
    client_id: str

    def token(self) -> str: ...

    def renew(self) -> str: ...


class DataverseRejected(CrmRejected):
    """A 4xx refusal; ``code`` is Dataverse's error code (``0x80040217``), if it sent one."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DataverseNotFound(CrmNotFound):
    def __init__(self, message: str, *, status: int = 404, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_of(content: bytes, fallback: str) -> tuple[str | None, str]:
    """``(code, message)`` from a Dataverse error body, or ``(None, fallback)``."""
    try:
        data = loads(content) if content and content.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        message = error.get("message")
        if message:
            return (str(error["code"]) if error.get("code") else None, str(message))
    return None, fallback


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: ``"7"``, ``"0.5"``, ``"00:00:07"``
    or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    parts = text.split(":")
    if len(parts) == 3:
        try:
            hours, minutes, seconds = (float(p) for p in parts)
            return max(hours * 3600 + minutes * 60 + seconds, 0.0)
        except ValueError:
            return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class DataverseClient:
    """Authenticated, retrying requests to one environment's Web API."""

    def __init__(
        self,
        *,
        environment_url: str,
        tokens: Tokens,
        api_version: str = "9.2",
        session: requests.Session | None = None,
        clock: Clock = time.monotonic,
        sleeper: Sleeper = time.sleep,
        gate: ThrottleGate | None = None,
        max_attempts: int = 4,
        max_throttled_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        timeout: float = 60.0,
    ) -> None:
        self.environment_url = environment_url.rstrip("/")
        self.base_url = f"{self.environment_url}/api/data/v{api_version}"
        self.tokens = tokens
        self.session = session or requests.Session()
        self.clock = clock
        self.sleeper = sleeper
        self.gate = gate or gate_for(tokens.client_id)
        self.max_attempts = max(1, max_attempts)
        self.max_throttled_attempts = max(1, max_throttled_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing

    def url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _backoff(self, failures: int) -> float:
        return float(min(self.backoff_base * (2 ** (failures - 1)), self.backoff_cap))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Send one request, retrying as the module docstring says; 2xx or a typed error."""
        url = self.url(path)
        token = self.tokens.token()
        renewed = False
        failures = 0
        throttled = 0
        payload = data
        if json_body is not None:
            payload = dumps(json_body).encode("utf-8")
        while True:
            self.gate.wait(self.clock, self.sleeper)
            sent_headers = {
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "Authorization": f"Bearer {token}",
            }
            if json_body is not None:
                sent_headers["Content-Type"] = "application/json; charset=utf-8"
            sent_headers.update(headers or {})
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=payload,
                    headers=sent_headers,
                    timeout=timeout or self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                if failures >= self.max_attempts:
                    raise CrmUnavailable(
                        f"Dataverse did not answer {method} {_short(url)} after {failures} "
                        f"attempts ({type(exc).__name__})"
                    ) from exc
                self.sleeper(self._backoff(failures))
                continue

            status = response.status_code
            if status == 401:
                if renewed:
                    raise CrmAuthError(
                        "Dataverse refused the access token twice (HTTP 401) even after a new "
                        "token was fetched; check that the app registration "
                        f"{self.tokens.client_id} has an application user in "
                        f"{self.environment_url} and that crm.dynamics.environment_url is right"
                    )
                log.info("Dataverse answered 401; renewing the access token once")
                renewed = True
                token = self.tokens.renew()
                continue
            if status == 429:
                throttled += 1
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is None:
                    wait = self._backoff(throttled)
                self.gate.close_for(wait, self.clock())
                code, message = error_of(response.content, "Too Many Requests")
                log.warning(
                    "Dataverse service protection limit (%s); pausing all calls as %s for %.1fs",
                    code or "429",
                    self.tokens.client_id,
                    wait,
                )
                if throttled >= self.max_throttled_attempts:
                    raise CrmUnavailable(
                        f"Dataverse service protection limit: {message}", retry_after=wait
                    )
                continue
            if status in RETRYABLE_STATUS:
                failures += 1
                code, message = error_of(response.content, f"HTTP {status}")
                if failures >= self.max_attempts:
                    raise CrmUnavailable(
                        f"Dataverse failed {method} {_short(url)} {failures} times: {message}",
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                self.sleeper(self._backoff(failures))
                continue
            if status >= 400:
                raise _refusal(method, url, response)
            return response

    # ------------------------------------------------------------------ conveniences

    def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self.request("GET", path, params=params, headers=headers)
        if not response.content.strip():
            return {}
        data = loads(response.content)
        if not isinstance(data, dict):
            raise CrmUnavailable(f"Dataverse answered GET {_short(path)} with a non-object")
        return data

    def pages(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Each page of a collection, following ``@odata.nextLink`` (same headers)."""
        page = self.get_json(path, params=params, headers=headers)
        yield page
        while isinstance(page.get("@odata.nextLink"), str):
            page = self.get_json(page["@odata.nextLink"], headers=headers)
            yield page

    def batch(self, operations: Sequence[BatchOperation]) -> list[BatchResponse]:
        """Send operations as one ``$batch`` (no change set, continue on error)."""
        content_type, body = build_batch_request(operations)
        response = self.request(
            "POST",
            "$batch",
            data=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            timeout=max(self.timeout, 120.0),
        )
        try:
            return parse_batch_response(response.headers.get("Content-Type", ""), response.content)
        except BatchFormatError as exc:
            raise CrmUnavailable(f"Dataverse answered $batch unreadably: {exc}") from exc


def _short(url: str) -> str:
    """The path of a URL without its query, for messages (queries can be long)."""
    return url.split("?", 1)[0]


def _refusal(method: str, url: str, response: requests.Response) -> Exception:
    status = response.status_code
    code, message = error_of(response.content, f"HTTP {status} {response.reason or ''}".strip())
    where = f"{method} {_short(url)}"
    if status == 404:
        return DataverseNotFound(f"{where}: {message}", status=status, code=code)
    if status == 403:
        return DataverseRejected(
            f"{where}: permission denied: {message}; give the application user's security "
            "role the privilege named (see docs/dynamics-setup.md)",
            status=status,
            code=code,
        )
    return DataverseRejected(f"{where}: {message}", status=status, code=code)
