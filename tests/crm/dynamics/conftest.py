"""Fixtures for the Dataverse adapter tests: a clean process, a mocked Entra ID tenant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from connector.crm.dynamics.auth import reset_applications
from connector.crm.dynamics.throttle import reset_gates
from tests.crm.dynamics.support import OPENID_URL, TOKEN_URL, FakeTime, odata


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """The msal application cache and throttle gates are per process; start each test clean."""
    reset_applications()
    reset_gates()
    yield
    reset_applications()
    reset_gates()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def entra(rsps: responses.RequestsMock) -> responses.RequestsMock:
    """The tenant's OpenID configuration and a token endpoint issuing FIRST then SECOND token."""
    rsps.add(responses.GET, OPENID_URL, **odata("openid_configuration.json"))
    rsps.add(responses.POST, TOKEN_URL, **odata("token__client_credentials.json"))
    rsps.add(responses.POST, TOKEN_URL, **odata("token__client_credentials_renewed.json"))
    return rsps


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
