"""The real Salesforce adapter and simple-salesforce against a fresh Salesforce sandbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.https_rewrite import HttpsRewriteSession
from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.demo import salesforce_sandbox
from connector.mappings import load_mapping
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)

REPO = Path(__file__).resolve().parents[3]


class SettableClock:
    """The sandbox's clock, set by hand (to the millisecond, as SystemModstamp keeps it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sf_clock() -> SettableClock:
    return SettableClock(datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC))


@pytest.fixture
def empty_org(sf_clock: SettableClock) -> Iterator[SalesforceSandbox]:
    """An org with dealbridge's metadata and no records."""
    sandbox = salesforce_sandbox(seed={"records": {}}, now=sf_clock).start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


def login(sandbox: SalesforceSandbox) -> Salesforce:
    return Salesforce(
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        session=HttpsRewriteSession(sandbox.url),
    )


def make_adapter(sandbox: SalesforceSandbox, **options: Any) -> SalesforceAdapter:
    mapping = load_mapping(REPO / "mappings" / "salesforce.yaml", "salesforce")
    return SalesforceAdapter(mapping, lambda: login(sandbox), sleeper=lambda _s: None, **options)
