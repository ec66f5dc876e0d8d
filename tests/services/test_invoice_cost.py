"""The CRM cost target: updating N invoice records costs at most ceil(N/200) + 2 CRM calls."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.stripe_seed import seed_invoices
from connector.services.backfill import backfill_invoices
from connector.store.models import CustomerLink
from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock


@pytest.fixture
def world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    w = make_world(f"sqlite:///{tmp_path / 'cost.sqlite3'}", clock).start()
    yield w
    w.stop()


def _linked_customer(world: World, account_ref: str) -> str:
    customer = world.stripe_client().v1.customers.create(params={"email": f"{account_ref}@x.test"})
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        session.add(
            CustomerLink(
                crm_account_id=world.crm.ref(account_ref),
                stripe_customer_id=customer.id,
                source="created",
            )
        )
    return customer.id


def test_backfilling_450_invoices_costs_at_most_five_salesforce_calls(world: World) -> None:
    customer = _linked_customer(world, "acme")
    seed_invoices(world.stripe_sandbox, customer, 450)
    world.salesforce_sandbox.reset_request_counts()
    assert world.runtime is not None

    written = backfill_invoices(world.runtime, customer_ids=[customer])

    assert written == 450
    calls = sum(world.salesforce_sandbox.request_counts().values())
    assert calls <= math.ceil(450 / 200) + 2
    assert len(world.crm.invoices()) == 450
    assert world.crm.account("acme")["open_balance"] == 450 * 125
