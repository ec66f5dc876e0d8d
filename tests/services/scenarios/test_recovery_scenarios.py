"""Scenarios moved down from ``tests/e2e/test_recovery.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from connector.services import activation
from connector.services.plans import approve
from connector.services.reconcile import CURSOR, EVENT_RETENTION
from connector.store.cursors import save_cursor
from connector.store.db import Database
from connector.web.app import create_app
from tests.e2e.conftest import World
from tests.e2e.test_recovery import (
    _activate,
    _crm_statuses,
    _unavailable,
    frequent,
    restart_dealbridge,
    stop_dealbridge,
)


def test_a_late_delivery_catches_up_the_events_still_waiting_in_stripe(world: World) -> None:
    plan = _activate(world)
    customer = plan["stripe_customer_id"]
    ids = [str(world.invoice_by_hand(customer, amount=20_000 + n).id) for n in range(3)]
    world.sync()
    assert world.runtime is not None
    runtime = world.runtime
    world._late_app.app = _unavailable  # the endpoint fails for a while (dealbridge runs)
    client = world.stripe_client()
    for invoice_id in ids:
        client.v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    world.stripe_sandbox.deliver_webhooks()
    world._late_app.app = create_app(runtime=runtime)
    # Ten minutes on, Stripe redelivers one event (the others wait longer in its schedule).
    world.clock.advance(minutes=10)
    stripe_state = world.stripe_sandbox.state
    due = sorted(
        (d for d in stripe_state.deliveries if not d.done), key=lambda d: d.next_attempt_at
    )
    for delivery in due[1:]:
        delivery.next_attempt_at += 24 * 3600
    due[0].next_attempt_at = int(world.clock().timestamp())
    assert world.stripe_sandbox.deliver_webhooks() == 1

    frequent(runtime).run_once(runtime)

    assert _crm_statuses(world, ids) == dict.fromkeys(ids, "paid")


def test_account_figures_follow_the_events_that_change_them(world: World) -> None:
    world.sync()
    assert world.runtime is not None
    runtime = world.runtime
    plan = world.plan_for("acme_platform")
    approve(runtime, plan["id"], actor="test")
    activation.activate(runtime, plan["id"])
    for _ in range(5):  # deliveries and the frequent jobs only, until quiet
        world.stripe_sandbox.deliver_webhooks()
        frequent(runtime).run_once(runtime)
    body = world.api("GET", "/api/overview", role="finance").get_json()
    acme = next(c for c in body["customers"] if c["crm_account_id"] == world.crm.ref("acme"))
    account = world.crm.account("acme")
    assert acme["mrr"]["usd"] > 0
    assert account["mrr"] is not None, "the account's MRR was not written"
    assert Decimal(str(account["mrr"])) * 100 == acme["mrr"]["usd"]
    assert Decimal(str(account["open_balance"])) * 100 == acme["open_balance"]["usd"]


def test_a_restart_past_stripes_thirty_days_of_events_reconciles_every_customer(
    world: World,
) -> None:
    plan = _activate(world)
    customer = plan["stripe_customer_id"]
    ids = [str(world.invoice_by_hand(customer, amount=30_000 + n).id) for n in range(2)]
    world.sync()
    stop_dealbridge(world)
    client = world.stripe_client()
    for invoice_id in ids:
        client.v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    world.stripe_sandbox.deliver_webhooks()
    store = Database(world.database_url)
    with store.session() as session:  # the last event seen is older than Stripe keeps events
        too_old = world.clock() - EVENT_RETENTION - timedelta(days=1)
        save_cursor(session, CURSOR, str(int(too_old.timestamp())), too_old)
    store.dispose()
    world.stripe_sandbox.reset_request_counts()

    runtime = restart_dealbridge(world)
    frequent(runtime).run_once(runtime)

    assert _crm_statuses(world, ids) == dict.fromkeys(ids, "paid")
    assert world.stripe_count("GET", "/v1/events") == 0  # the events could not tell it all
    assert world.stripe_count("GET", "/v1/invoices") >= 1  # every customer's invoices re-read
