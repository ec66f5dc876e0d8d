"""End to end: Stripe's sandbox, a CRM and dealbridge, all in process, on loopback.

Every scenario runs against both CRMs, with the same test code:

* ``salesforce-sqlite``: the Salesforce sandbox (simple-salesforce, SOAP Outbound Messages);
  ``salesforce-postgresql`` as well for a scenario marked ``@pytest.mark.postgresql(reason=...)``
  (where locking or SQL dialect matters);
* ``dynamics-sqlite``: the Dataverse sandbox over loopback (msal and requests unchanged, the
  Web API, ``$batch``, webhooks with ``RemoteExecutionContext``), on SQLite only to keep the
  run short (the store's behaviour does not depend on the CRM).

Both CRMs are seeded with the same sample org, so a ref (``acme_platform``) is the same deal
on each, and scenarios reach the CRM only through ``world.crm``, a ``CrmDriver`` speaking
canonical names. A scenario that is genuinely about one CRM says so with
``@pytest.mark.crm("salesforce", reason=...)``: it is then generated for that CRM only,
never skipped at run time.

Every scenario synchronises with ``world.sync()`` — deliver what the sandboxes owe, run
every job once, repeat until quiet — never with sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.demo.dynamics_world import DynamicsLocalWorld
from connector.demo.world import LocalWorld
from tests.conftest import migrated_postgres_url, migrated_sqlite_url
from tests.e2e.crm_driver import CrmDriver, SalesforceDriver
from tests.support import FrozenClock

#: Test ids → (CRM, store).
BACKENDS = {
    "salesforce-sqlite": ("salesforce", "sqlite"),
    "salesforce-postgresql": ("salesforce", "postgresql"),
    "dynamics-sqlite": ("dynamics", "sqlite"),
}
CRMS = ("salesforce", "dynamics")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every scenario that builds a world (it needs ``database_url``) runs once per backend."""
    if "database_url" not in metafunc.fixturenames:
        return
    kinds: tuple[str, ...] = CRMS
    marker = metafunc.definition.get_closest_marker("crm")
    if marker is not None:
        kinds = tuple(marker.args)
        unknown = set(kinds) - set(CRMS)
        assert kinds and not unknown, f"@pytest.mark.crm: unknown CRM(s) {sorted(unknown)}"
        assert marker.kwargs.get("reason"), "@pytest.mark.crm needs reason=... (why one CRM)"
    stores = ("sqlite",)
    on_postgres = metafunc.definition.get_closest_marker("postgresql")
    if on_postgres is not None:
        assert on_postgres.kwargs.get("reason"), "@pytest.mark.postgresql needs reason=..."
        stores = ("sqlite", "postgresql")
    ids = [name for name, (crm, store) in BACKENDS.items() if crm in kinds and store in stores]
    metafunc.parametrize("database_url", ids, indirect=True, ids=ids)


class DatabaseUrl(str):
    """A database URL that also says which CRM the test's world talks to."""

    crm: str

    def __new__(cls, url: str, crm: str) -> DatabaseUrl:
        value = super().__new__(cls, url)
        value.crm = crm
        return value


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrl:
    crm, store = BACKENDS[request.param]
    if store == "sqlite":
        return DatabaseUrl(
            migrated_sqlite_url(request.getfixturevalue("sqlite_template"), tmp_path), crm
        )
    return DatabaseUrl(migrated_postgres_url(request.getfixturevalue("postgres_schema")), crm)


@pytest.fixture
def crm_kind(database_url: DatabaseUrl) -> str:
    return database_url.crm


class World(LocalWorld):
    """LocalWorld plus the CRM driver and look-ups the scenarios assert with."""

    @property
    def crm(self) -> CrmDriver:
        driver = self.__dict__.get("_driver")
        if driver is None:
            driver = self.__dict__["_driver"] = self._make_driver()
        return driver  # type: ignore[no-any-return]

    def _make_driver(self) -> CrmDriver:
        return SalesforceDriver(self.salesforce_sandbox, self.salesforce_client())

    def api(self, method: str, path: str, role: str = "sales_rep", **kwargs: Any) -> Any:
        assert self.runtime is not None and self._late_app.app is not None
        client = self._late_app.app.test_client()
        headers = {"Authorization": f"Bearer {self.api_tokens[role]}"}
        return client.open(path, method=method, headers=headers, **kwargs)

    def invoice_by_hand(
        self,
        customer: str,
        *,
        amount: int = 75_000,
        days_until_due: int = 15,
        finalize: bool = True,
    ) -> Any:
        """An invoice someone makes in the Stripe dashboard: one item, sent for payment."""
        client = self.stripe_client()
        client.v1.invoice_items.create(
            params={"customer": customer, "amount": amount, "currency": "usd",
                    "description": "Onsite training"}
        )  # fmt: skip
        draft = client.v1.invoices.create(
            params={"customer": customer, "collection_method": "send_invoice",
                    "days_until_due": days_until_due, "pending_invoice_items_behavior": "include"}
        )  # fmt: skip
        return client.v1.invoices.finalize_invoice(str(draft.id)) if finalize else draft

    def plan_for(self, deal_ref: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/deals/{self.crm.ref(deal_ref)}/plan")
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def stripe_count(self, method: str, path: str) -> int:
        return self.stripe_sandbox.request_counts().get((method, path), 0)


class FakeMonotonic:
    """The adapter's monotonic clock and sleeper: a pause is recorded and passes at once."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class DynamicsWorld(DynamicsLocalWorld, World):
    """The same world with Dynamics 365 as the CRM: the Dataverse sandbox of connector/demo
    (msal and the Web API over loopback) instead of the Salesforce sandbox; the adapter's
    pauses (429, outages) pass on a fake monotonic clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataverse_time = FakeMonotonic()
        self.adapter_options = {
            "clock": self.dataverse_time.clock,
            "sleeper": self.dataverse_time.sleep,
        }

    def _make_driver(self) -> CrmDriver:
        from tests.e2e.dynamics_driver import DynamicsDriver

        return DynamicsDriver(self.dataverse)


#: The world class per CRM kind (``tests/services/scenarios`` adds its fake CRM).
WORLD_CLASSES: dict[str, type[World]] = {"salesforce": World, "dynamics": DynamicsWorld}


@pytest.fixture
def clock() -> FrozenClock:
    """One clock for dealbridge and both sandboxes, starting now (the seed's dates are
    relative to today)."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def make_world(
    database_url: str, clock: FrozenClock, *, crm_kind: str | None = None, **sections: Any
) -> World:
    """A world (not started) for the test's CRM: ``crm_kind``, else the one its
    ``database_url`` fixture was generated for, else Salesforce."""
    kind = crm_kind or getattr(database_url, "crm", "salesforce")
    return WORLD_CLASSES[kind](str(database_url), clock=clock, sections=sections)


@pytest.fixture
def world(database_url: str, clock: FrozenClock) -> Iterator[World]:
    w = make_world(database_url, clock)
    w.start()
    yield w
    w.stop()
