"""Service scenarios: dealbridge's use cases, jobs and API with the Stripe sandbox in process
and a fake CRM adapter (``tests/support/fake_crm.py``) instead of a CRM sandbox.

``world`` here is the end-to-end ``World`` (the same ``sync()``, ``api()``, ``plan_for()``,
the same canonical ``world.crm`` driver) with the CRM swapped for the in-memory fake, so a
scenario moved down from ``tests/e2e`` keeps its body and runs once instead of once per CRM.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.config import Config
from connector.crm.base import CrmAdapter
from connector.demo.world import LocalWorld
from tests.conftest import migrated_sqlite_url
from tests.e2e.conftest import WORLD_CLASSES, DatabaseUrl, World, make_world

# Fixtures of the moved scenarios, defined beside the end-to-end ones they came from.
from tests.e2e.test_credit import dunning_world, pausing_world, receiver  # noqa: F401
from tests.e2e.test_overview import billed_world  # noqa: F401
from tests.support import FrozenClock
from tests.support.fake_crm import PUSH_TOKEN_HEADER, FakeCrm, FakeCrmDriver, SampleOrg

_ORGS: dict[date, SampleOrg] = {}


def sample_org(clock: Callable[[], datetime]) -> SampleOrg:
    """The sample org read through the real Salesforce adapter, once per process and day
    (the seed's dates are relative to the day it loads)."""
    day = clock().date()
    if day not in _ORGS:
        with tempfile.TemporaryDirectory() as folder:
            world = LocalWorld(f"sqlite:///{folder}/org.sqlite3", clock=clock).start()
            try:
                assert world.runtime is not None
                crm, sandbox = world.runtime.crm, world.salesforce_sandbox
                contacts = {
                    r["Id"]: {
                        "name": r.get("Name") or f"{r.get('FirstName')} {r.get('LastName')}",
                        "email": r.get("Email"),
                        "account_id": r.get("AccountId"),
                    }
                    for r in sandbox.records("Contact")
                }
                _ORGS[day] = SampleOrg(
                    refs=sandbox.ids_by_ref(),
                    deals={r["Id"]: crm.get_deal(r["Id"]) for r in sandbox.records("Opportunity")},
                    accounts={
                        r["Id"]: crm.get_account(r["Id"]) for r in sandbox.records("Account")
                    },
                    contacts=contacts,
                )
            finally:
                world.stop()
    return _ORGS[day]


class FakeCrmWorld(World):
    """The end-to-end world with the fake CRM adapter in place of a CRM sandbox."""

    crm_name = "fake"

    def _init_crm(self, seed: str | Path | dict[str, Any] | None) -> None:
        self.fake_crm = FakeCrm(sample_org(self.clock), self.clock, secrets.token_urlsafe(24))

    def _start_crm(self) -> None:
        """Nothing to start: the fake answers in process."""

    def _stop_crm(self) -> None:
        """Nothing to stop."""

    def _crm_section(self) -> dict[str, Any]:
        # A CRM section the config accepts; the adapter below is used instead.
        return {"kind": "salesforce", "salesforce": {"instance_url": "http://127.0.0.1:9"}}

    def _crm_adapter(self, config: Config) -> CrmAdapter | None:
        return self.fake_crm

    @property
    def crm_url(self) -> str:
        return "http://fake-crm.invalid"

    def _make_driver(self) -> Any:
        return FakeCrmDriver(self.fake_crm, self._push)

    def _push(self, body: bytes, token: str) -> int:
        assert self._late_app.app is not None
        response = self._late_app.app.test_client().post(
            "/webhooks/crm", data=body, headers={PUSH_TOKEN_HEADER: token}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return 1

    def deliver_crm_pushes(self) -> int:
        return int(self.crm.deliver_pushes())


WORLD_CLASSES["fake"] = FakeCrmWorld


@pytest.fixture
def clock() -> FrozenClock:
    """One clock for dealbridge and the Stripe sandbox, starting now (the sample org's dates
    are relative to today)."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> DatabaseUrl:
    """A migrated SQLite store for a world on the fake CRM."""
    return DatabaseUrl(migrated_sqlite_url(sqlite_template, tmp_path), "fake")


@pytest.fixture
def crm_kind() -> str:
    return "fake"


@pytest.fixture
def world(database_url: DatabaseUrl, clock: FrozenClock) -> Iterator[World]:
    w = make_world(database_url, clock)
    w.start()
    yield w
    w.stop()
