"""The CRM cost targets: updating N invoice records costs at most ceil(N/200) + 2 Salesforce
calls (ceil(N/1000) + 2 on Dataverse), by backfill and by a burst of webhooks alike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.stripe_seed import pay_invoices, seed_invoices
from connector.services.backfill import backfill_invoices
from connector.store.models import AccountMetrics, CustomerLink
from tests.e2e.conftest import DynamicsWorld, World, make_world
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
    assert world.runtime is not None
    with world.runtime.db.session() as session:  # account metrics read Acme's currency
        session.add(
            AccountMetrics(
                crm_account_id=world.crm.ref("acme"), currency="usd", mrr=0, net_billing=0,
                open_balance=0, account_currency="usd",
            )
        )  # fmt: skip
    seed_invoices(world.stripe_sandbox, customer, 450)
    world.salesforce_sandbox.reset_request_counts()
    assert world.runtime is not None

    written = backfill_invoices(world.runtime, customer_ids=[customer])

    assert written == 450
    calls = sum(world.salesforce_sandbox.request_counts().values())
    assert calls <= math.ceil(450 / 200) + 2
    assert len(world.crm.invoices()) == 450
    assert world.crm.account("acme")["open_balance"] == 450 * 125


# --------------------------------------------------------------------------- the real-time path


@pytest.fixture(params=["salesforce", "dynamics"])
def any_crm_world(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> Iterator[World]:
    w = make_world(f"sqlite:///{tmp_path / 'burst.sqlite3'}", clock, crm_kind=request.param)
    w.start()
    yield w
    w.stop()


def _crm_calls(world: World) -> int:
    """CRM requests since the last reset, logins (SOAP login, Entra token) left out."""
    if isinstance(world, DynamicsWorld):
        counts = world.dataverse.request_counts()
    else:
        counts = world.salesforce_sandbox.request_counts()
    return sum(c for (_, path), c in counts.items() if "oauth2" not in path and "Soap" not in path)


def _reset_crm_calls(world: World) -> None:
    if isinstance(world, DynamicsWorld):
        world.dataverse.reset_request_log()
    else:
        world.salesforce_sandbox.reset_request_counts()


def _run_worker(world: World) -> None:
    """The worker's jobs until idle, as ``sync --once`` runs them (no CRM poll: the sample
    org's own changes are not part of the burst)."""
    assert world.runtime is not None
    workers = world.jobs.jobs(("worker",))
    while sum(world.jobs.run_job(job, world.runtime, once=True) for job in workers):
        pass


def _pay_in_one_run(world: World, invoices: list[str]) -> None:
    """The invoices are paid at once, as a payment run would; their webhooks wait to be
    delivered, and the CRM calls are counted from here."""
    with world.stripe_sandbox.state.lock:  # the seeding's own webhooks are not the burst
        for delivery in world.stripe_sandbox.state.deliveries:
            delivery.done = True
    pay_invoices(world.stripe_sandbox, invoices)
    _reset_crm_calls(world)


def test_a_burst_of_450_paid_invoices_costs_full_crm_batches_plus_two_calls(
    any_crm_world: World,
) -> None:
    world = any_crm_world
    assert world.runtime is not None
    customer = _linked_customer(world, "acme")
    invoices = seed_invoices(world.stripe_sandbox, customer, 450)
    backfill_invoices(world.runtime, customer_ids=[customer])
    _pay_in_one_run(world, invoices)

    assert world.stripe_sandbox.deliver_webhooks() == 450
    _run_worker(world)

    batch = world.runtime.crm.batch_size  # 200 a Collection, 1,000 a $batch
    assert _crm_calls(world) <= math.ceil(450 / batch) + 2
    records = world.crm.invoices()
    assert len(records) == 450
    assert {r["status"] for r in records} == {"paid"}
    assert world.crm.account("acme")["open_balance"] == 0


@pytest.fixture(params=["salesforce", "dynamics"])
def policy_world(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> Iterator[World]:
    """A world whose non-payment policy is on, so a paid invoice's account is settled."""
    w = make_world(
        f"sqlite:///{tmp_path / 'month-end.sqlite3'}", clock, crm_kind=request.param,
        credit={"non_payment": {"hold_when_overdue_days": 30}},
    )  # fmt: skip
    w.start()
    yield w
    w.stop()


def test_a_burst_spread_over_many_accounts_costs_one_account_read_more(
    policy_world: World,
) -> None:
    """Month-end: invoices of many customers paid at once. Each account's figures change and
    each account is settled under the non-payment policy; the accounts are read together
    (``get_accounts``) for each, not one CRM call per account."""
    world = policy_world
    runtime = world.runtime
    assert runtime is not None
    client = world.stripe_client()
    invoices: list[str] = []
    for n in range(12):
        customer = client.v1.customers.create(params={"email": f"ap{n}@month-end.example"}).id
        account_id = runtime.crm.create_account(
            f"Month-end {n}", None, None, stripe_customer_id=customer
        )
        with runtime.db.session() as session:
            session.add(
                CustomerLink(
                    crm_account_id=account_id, stripe_customer_id=customer, source="created"
                )
            )
        invoices += seed_invoices(world.stripe_sandbox, customer, 5)
    backfill_invoices(runtime)
    _run_worker(world)  # the backfill's own account figures
    _pay_in_one_run(world, invoices)

    assert world.stripe_sandbox.deliver_webhooks() == 60
    _run_worker(world)

    assert _crm_calls(world) <= math.ceil(60 / runtime.crm.batch_size) + 3
    paid = [r for r in world.crm.invoices() if r["status"] == "paid"]
    assert len(paid) == 60
