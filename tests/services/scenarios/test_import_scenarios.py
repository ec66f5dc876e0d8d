"""Scenarios moved down from ``tests/e2e/test_import.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from connector.secrets import Secret
from connector.services import subscribers
from connector.store.models import (
    AuditEntry,
    Cursor,
    OutboxMessage,
)
from tests.e2e.conftest import World, make_world
from tests.e2e.test_import import (
    Interrupt,
    _assert_imported_once,
    _crm_requests,
    _fill_stripe,
    _links,
    _reset_crm_requests,
    _run,
)
from tests.support import FrozenClock


def test_running_the_import_twice_changes_nothing_the_second_time(world: World) -> None:
    filled = _fill_stripe(world)
    _run(world)

    again = _run(world)

    assert again.linked == {}
    assert again.already_linked == 2
    _assert_imported_once(world, filled)


@pytest.mark.parametrize("stop_after", [1, 3, 5])
def test_an_interrupted_import_resumes_and_imports_everything_exactly_once(
    world: World, stop_after: int
) -> None:
    filled = _fill_stripe(world)
    handled = 0

    def interrupt(_phase: str, count: int) -> None:
        nonlocal handled
        handled += count
        if handled >= stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(world, chunk_size=1, progress=interrupt)
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Cursor)) >= 1

    _run(world, chunk_size=1)

    _assert_imported_once(world, filled)


def test_a_dry_run_reports_what_it_would_do_and_changes_nothing(world: World) -> None:
    filled = _fill_stripe(world)
    _reset_crm_requests(world)
    world.stripe_sandbox.reset_request_counts()

    report = _run(world, dry_run=True)

    assert f"would link {filled['by_metadata']} → account {world.crm.ref('acme')} (metadata)" in (
        report.planned
    )
    assert sum(line.startswith("would upsert price") for line in report.planned) == 2
    assert [(m, p) for m, p in _crm_requests(world) if m != "GET"] == []
    assert all(method == "GET" for method, _ in world.stripe_sandbox.request_counts())
    assert _links(world) == {}
    assert world.crm.invoices() == []
    assert not any(p["stripe_product_id"] for p in world.crm.products())
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert session.scalar(select(func.count()).select_from(Cursor)) == 0


def test_the_invoices_are_listed_once_for_the_whole_account_not_per_customer(
    world: World,
) -> None:
    _fill_stripe(world)
    _run(world, phases=("customers",))
    world.stripe_sandbox.reset_request_counts()

    _run(world, phases=("invoices",))

    # Three invoices of two linked customers: one page of the account's invoices.
    assert world.stripe_count("GET", "/v1/invoices") == 1


def test_backfilled_invoices_are_not_announced_to_subscribers(world: World) -> None:
    _fill_stripe(world)
    assert world.runtime is not None

    _run(world)

    with world.runtime.db.session() as session:
        queued = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.kind == subscribers.DELIVER)
        )
    assert queued == 0


def test_backfilled_invoices_are_announced_when_asked(
    database_url: str, clock: FrozenClock
) -> None:
    base = type(make_world(database_url, clock))

    class WithSubscriber(base):  # type: ignore[valid-type, misc]
        def _crm_secrets(self) -> dict[str, Any]:
            return {**super()._crm_secrets(), "subscriber_secrets": {"erp": Secret("s" * 32)}}

    world = WithSubscriber(
        str(database_url),
        clock=clock,
        sections={
            "outbound": {
                "allowed_schemes": ["http"],
                "allow_private_addresses": True,
                "subscribers": [{"name": "erp", "url": "http://127.0.0.1:9/hook",
                                 "events": ["invoice.status_changed"]}],
            }
        },
    ).start()  # fmt: skip
    try:
        filled = _fill_stripe(world)
        assert world.runtime is not None
        _run(world, phases=("customers", "invoices"), announce_invoices=True)
        with world.runtime.db.session() as session:
            announced = {
                m.payload["event"]["data"]["invoice_id"]
                for m in session.scalars(
                    select(OutboxMessage).where(OutboxMessage.kind == subscribers.DELIVER)
                )
            }
        assert announced == filled["invoices"]
    finally:
        world.stop()


def test_unmatched_customers_become_accounts_when_asked_and_only_once(world: World) -> None:
    filled = _fill_stripe(world)

    _run(world, phases=("customers",), create_missing_accounts=True)
    _run(world, phases=("customers",), create_missing_accounts=True)

    created = [a for a in world.crm.accounts() if a["stripe_customer_id"] == filled["nobody"]]
    assert [a["name"] for a in created] == ["Wayne Corp"]
    assert _links(world)[filled["nobody"]] == created[0]["id"]


def test_customers_match_an_account_by_name_when_that_rule_is_configured(
    database_url: str, clock: FrozenClock
) -> None:
    world = make_world(database_url, clock, **{"import": {"match_rule": "name"}}).start()
    try:
        customer = world.stripe_client().v1.customers.create(params={"name": "initech llc"})
        report = _run(world, phases=("customers",))
        assert report.linked == {"name": 1}
        assert _links(world) == {customer.id: world.crm.ref("initech")}
    finally:
        world.stop()
