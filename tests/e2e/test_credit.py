"""Credit hold and credit limit end to end: finance controls activation from the CRM account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from connector.billing.gateway import StripeGateway
from connector.jobs.schedule import process_crm_inbox
from connector.secrets import Secret
from connector.services import credit
from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock
from tests.support.receiver import Receiver, run_receiver

OVERDUE_DAYS = 3


def _start(database_url: str, clock: FrozenClock, **sections: Any) -> World:
    return make_world(database_url, clock, **sections).start()


@pytest.fixture
def pausing_world(database_url: str, clock: FrozenClock) -> Iterator[World]:
    w = _start(database_url, clock, credit={"hold_policy": "pause_keep_as_draft"})
    yield w
    w.stop()


@pytest.fixture
def dunning_world(database_url: str, clock: FrozenClock) -> Iterator[World]:
    """Non-payment policy on: more than 3 days overdue puts the account on hold."""
    w = _start(
        database_url,
        clock,
        credit={"non_payment": {"hold_when_overdue_days": OVERDUE_DAYS}},
    )
    yield w
    w.stop()


def _activate(world: World, deal_ref: str) -> Any:
    plan = world.plan_for(deal_ref)
    return world.api("POST", f"/api/plans/{plan['id']}/activate")


def _subscription(world: World, deal_ref: str) -> Any:
    plan = world.plan_for(deal_ref)
    return world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])


def _first_invoice(world: World, deal_ref: str) -> str:
    return str(_subscription(world, deal_ref).latest_invoice)


def _activate_with_short_terms(world: World, deal_ref: str = "acme_platform") -> str:
    """Activate with invoices due the next day; returns the first invoice's id."""
    world.sync()
    plan = world.plan_for(deal_ref)
    world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"days_until_due": 1})
    assert _activate(world, deal_ref).status_code == 200
    world.sync()
    return _first_invoice(world, deal_ref)


def _let_it_go_overdue(world: World) -> None:
    world.clock.advance(days=1 + OVERDUE_DAYS + 1)
    world.stripe_sandbox.run_billing()
    world.sync()


# --------------------------------------------------------------------------- the hold


def test_a_closed_deal_on_a_held_account_waits_with_the_reason(world: World) -> None:
    world.sync()
    response = _activate(world, "initech_renewal")
    assert response.status_code == 202
    plan = response.get_json()
    assert plan["status"] == "awaiting_credit"
    assert "on credit hold (set by a person)" in plan["status_reason"]
    world.sync()
    deal = world.crm.deal("initech_renewal")
    assert deal["plan_status"] == "Awaiting credit"
    assert "credit hold" in deal["plan_summary"]
    assert world.crm.account("initech")["credit_state"] == "on_hold"
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_lifting_the_hold_activates_the_waiting_plan_by_poll(world: World) -> None:
    world.sync()
    _activate(world, "initech_renewal")
    world.sync()
    world.clock.advance(minutes=5)  # finance lifts the hold a little later
    world.crm.set_credit("initech", hold=False)
    assert world.runtime is not None
    world.jobs.run_once(world.runtime)  # the poll alone: no push is delivered
    plan = world.plan_for("initech_renewal")
    assert plan["status"] == "active"
    assert world.crm.deal("initech_renewal")["plan_status"] == "Active"
    assert world.crm.account("initech")["credit_state"] == "ok"


def test_lifting_the_hold_activates_the_waiting_plan_by_push(world: World) -> None:
    world.sync()
    _activate(world, "initech_renewal")
    world.sync()
    world.crm.set_credit("initech", hold=False)
    assert world.crm.deliver_pushes() >= 1
    assert world.runtime is not None
    # No poll: the push alone, handled as the worker does, pass after pass until idle (the
    # push's follow-up, "waiting plans due", is stored while the first pass runs).
    passes = 0
    while process_crm_inbox(world.runtime):
        passes += 1
    assert passes == 2
    assert world.plan_for("initech_renewal")["status"] == "active"


def _activation_order(world: World) -> list[str]:
    from sqlalchemy import select

    from connector.store.models import AuditEntry

    assert world.runtime is not None
    with world.runtime.db.session() as session:
        return list(
            session.scalars(
                select(AuditEntry.subject_id)
                .where(AuditEntry.action == "plan.activated")
                .order_by(AuditEntry.id)
            )
        )


# --------------------------------------------------------------------------- the limit


# --------------------------------------------------------------------------- non-payment


# --------------------------------------------------------------------------- hold policy


# --------------------------------------------------------------------------- provisioning


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as r:
        yield r


def _with_subscriber(database_url: str, clock: FrozenClock, receiver: Receiver) -> World:
    world = _start(
        database_url,
        clock,
        outbound={
            "allowed_schemes": ["http"],
            "allow_private_addresses": True,
            "subscribers": [
                {
                    "name": "provisioning",
                    "url": receiver.url,
                    "events": ["account.credit_state_changed"],
                }
            ],
        },
    )
    assert world.runtime is not None
    config = world.runtime.config
    secrets = replace(config.secrets, subscriber_secrets={"provisioning": Secret("whsec_prov")})
    world.runtime.config = replace(config, secrets=secrets)
    return world


def _states(receiver: Receiver, account_id: str) -> list[str]:
    events = [json.loads(r.body) for r in receiver.requests]
    return [
        e["data"]["state"]
        for e in events
        if e["type"] == "account.credit_state_changed" and e["account_id"] == account_id
    ]


# --------------------------------------------------------------------------- the race


def _hold_after_first_write(world: World, *, settle_now: bool) -> None:
    """Swap in a gateway that puts acme on hold in the CRM right after (or, with
    ``settle_now``, right before) the first Stripe write of the activation."""
    assert world.runtime is not None
    runtime = world.runtime
    real: StripeGateway = runtime.stripe
    acme = world.crm.ref("acme")

    class HoldMidway(StripeGateway):
        def create_subscription(self, params: Any, idempotency_key: str) -> Any:
            if settle_now:  # another worker handles the hold before the subscription exists
                world.crm.set_credit("acme", hold=True)
                credit.handle_account_changed(runtime, acme)
                return real.create_subscription(params, idempotency_key)
            created = real.create_subscription(params, idempotency_key)
            world.crm.set_credit("acme", hold=True)
            return created

    runtime.__dict__["stripe"] = HoldMidway(real.client, dashboard_url=real.dashboard_url)
