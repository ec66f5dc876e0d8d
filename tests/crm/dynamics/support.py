"""Helpers for the Dataverse adapter tests: URLs of the mocked tenant, fake time, fixture files.

Every HTTP call is answered by ``responses``; payloads are files in ``fixtures/`` shaped like
what Dataverse and Entra ID really send.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import responses

from connector.crm.dynamics.auth import ClientSecretCredential, TokenSource
from connector.crm.dynamics.client import DataverseClient
from connector.secrets import Secret

FIXTURES = Path(__file__).parent / "fixtures"
ENV_URL = "https://contoso.crm.dynamics.com"
API = f"{ENV_URL}/api/data/v9.2"
TENANT = "7d3e1a52-0f4b-4c8e-9a61-2b5f0c9e4d11"
CLIENT_ID = "5b1f0d7a-3c2e-4f6a-8d9b-1e2f3a4b5c6d"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
OPENID_URL = f"{AUTHORITY}/v2.0/.well-known/openid-configuration"
TOKEN_URL = f"{AUTHORITY}/oauth2/v2.0/token"
FIRST_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.first-token.sig"
SECOND_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.second-token.sig"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def fixture_bytes(name: str) -> bytes:
    """A fixture with LF line ends turned into the CRLF that multipart bodies use."""
    return fixture_text(name).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


class FakeTime:
    """A monotonic clock and a sleeper that records each pause and moves the clock on."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_tokens(client_id: str = CLIENT_ID) -> TokenSource:
    return TokenSource(
        environment_url=ENV_URL,
        tenant_id=TENANT,
        client_id=client_id,
        credential=ClientSecretCredential(Secret("client-secret-value")),
        instance_discovery=False,
        http_client=requests.Session(),
    )


def make_client(fake_time: FakeTime, client_id: str = CLIENT_ID, **options: Any) -> DataverseClient:
    return DataverseClient(
        environment_url=ENV_URL,
        tokens=make_tokens(client_id),
        session=requests.Session(),
        clock=fake_time.clock,
        sleeper=fake_time.sleep,
        **options,
    )


def token_requests(rsps: responses.RequestsMock) -> list[Any]:
    return [call for call in rsps.calls if call.request.url == TOKEN_URL]


def api_requests(rsps: responses.RequestsMock) -> list[Any]:
    return [call for call in rsps.calls if str(call.request.url).startswith(API)]


REPO = Path(__file__).resolve().parents[3]
OPPORTUNITY_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
ACCOUNT_ID = "a1d4c5b6-7e8f-4a1b-9c2d-3e4f5a6b7c8d"
WEBHOOK_KEY = "whk-0123456789abcdef0123456789abcdef"


def shipped_mapping() -> Any:
    from connector.mappings import load_mapping

    return load_mapping(REPO / "mappings" / "dynamics.yaml", "dynamics")


def make_adapter(fake_time: FakeTime, mapping: Any = None, **options: Any) -> Any:
    from connector.crm.dynamics.adapter import DynamicsAdapter

    settings: dict[str, Any] = {
        "environment_url": ENV_URL,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "credential": ClientSecretCredential(Secret("client-secret-value")),
        "webhook_key": Secret(WEBHOOK_KEY),
        "session": requests.Session(),
        "instance_discovery": False,
        "clock": fake_time.clock,
        "sleeper": fake_time.sleep,
    }
    settings.update(options)
    return DynamicsAdapter(mapping or shipped_mapping(), **settings)


def query_of(call: Any) -> dict[str, list[str]]:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(str(call.request.url)).query)


def odata(name: str) -> dict[str, Any]:
    """``responses`` arguments serving a JSON fixture byte for byte (decimals keep digits)."""
    return {"body": fixture_text(name), "content_type": "application/json; odata.metadata=minimal"}
