"""Fixtures: a Salesforce sandbox on a random loopback port and simple-salesforce clients for it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.https_rewrite import HttpsRewriteSession
from connector.demo import salesforce_sandbox
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)
from tests.support import FrozenClock

START = datetime(2026, 11, 21, 5, 50, 16, tzinfo=UTC)


def stop_in_background(stop: Callable[[], None]) -> None:
    """Shut a server down without waiting out werkzeug's 0.5 s shutdown poll."""
    threading.Thread(target=stop, daemon=True).start()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def make_sandbox(clock: FrozenClock) -> Iterator[Callable[..., SalesforceSandbox]]:
    started: list[SalesforceSandbox] = []

    def make(**kwargs: object) -> SalesforceSandbox:
        kwargs.setdefault("now", clock)
        kwargs.setdefault("seed", None)
        sandbox = salesforce_sandbox(**kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        stop_in_background(sandbox.stop)


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SalesforceSandbox]) -> SalesforceSandbox:
    return make_sandbox()


def login(sandbox: SalesforceSandbox) -> Salesforce:
    """simple-salesforce's default username/password/token login (SOAP), unchanged."""
    return Salesforce(
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        session=HttpsRewriteSession(sandbox.url),
    )


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return login(sandbox)
