"""Fixtures: a Dataverse sandbox on a random loopback port, reached with msal and requests.

Every request goes to ``https://login.microsoftonline.com/...`` or the environment's own
``https://…crm.dynamics.com`` URL, through dealbridge's ``HttpsRewriteSession``, exactly as
the adapter reaches the sandbox: msal and requests run unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msal
import pytest
import requests

from connector.crm.dynamics.auth import reset_applications
from connector.crm.dynamics.throttle import reset_gates
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.demo.dataverse import dataverse_sandbox
from sandboxes.dataverse import DataverseSandbox
from tests.support import FrozenClock

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
ANNOTATIONS = 'odata.include-annotations="*"'


def stop_in_background(stop: Callable[[], None]) -> None:
    """Shut a server down without waiting for its serving loop's next poll."""
    threading.Thread(target=stop, daemon=True).start()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def make_sandbox(clock: FrozenClock) -> Iterator[Callable[..., DataverseSandbox]]:
    """``make_sandbox(seed=…, **options)``: dealbridge's solution deployed, the sample org by
    default, started on a free loopback port."""
    started: list[DataverseSandbox] = []
    reset_applications()
    reset_gates()

    def make(**kwargs: Any) -> DataverseSandbox:
        kwargs.setdefault("now", clock)
        sandbox = dataverse_sandbox(**kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        stop_in_background(sandbox.stop)
    reset_applications()
    reset_gates()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., DataverseSandbox]) -> DataverseSandbox:
    return make_sandbox()


class WebApi:
    """requests against one sandbox's Web API with an msal token, at the environment URL."""

    def __init__(self, sandbox: DataverseSandbox) -> None:
        self.sandbox = sandbox
        self.session = HttpsRewriteSession(sandbox.url)
        self.app = msal.ConfidentialClientApplication(
            sandbox.client_id,
            client_credential=sandbox.client_secret,
            authority=sandbox.authority,
            http_client=self.session,
            instance_discovery=False,
        )
        self.base = f"{sandbox.environment_url}/api/data/v9.2"

    def token(self) -> str:
        result = self.app.acquire_token_for_client([f"{self.sandbox.environment_url}/.default"])
        return str(result["access_token"])

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        sent = {
            "Authorization": f"Bearer {self.token()}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            **(headers or {}),
        }
        url = path if path.startswith("http") else f"{self.base}/{path}"
        return self.session.request(method, url, headers=sent, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(sandbox: DataverseSandbox) -> WebApi:
    return WebApi(sandbox)


def body(response: requests.Response) -> Any:
    """The JSON body with numbers as Decimal, as money must be read."""
    return json.loads(response.content, parse_float=Decimal)
