"""Scenarios moved down from ``tests/e2e/test_credit.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from decimal import Decimal

from connector.services import activation
from connector.services.plans import approve
from tests.e2e.conftest import World
from tests.e2e.test_credit import (
    OVERDUE_DAYS,
    _activate,
    _activate_with_short_terms,
    _activation_order,
    _hold_after_first_write,
    _let_it_go_overdue,
    _start,
    _states,
    _subscription,
    _with_subscriber,
)
from tests.support import FrozenClock
from tests.support.receiver import Receiver


def test_changing_a_waiting_plan_sends_it_back_to_review(world: World) -> None:
    world.sync()
    plan = _activate(world, "initech_renewal").get_json()
    assert plan["status"] == "awaiting_credit"
    changed = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"days_until_due": 45})
    assert changed.get_json()["status"] == "in_review"
    world.crm.set_credit("initech", hold=False)
    world.sync()
    assert world.plan_for("initech_renewal")["status"] == "in_review"  # not the old approval
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_activating_a_waiting_plan_again_is_refused_with_the_reason(world: World) -> None:
    world.sync()
    plan = _activate(world, "initech_renewal").get_json()
    again = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert again.status_code == 409
    assert "Waiting on credit" in again.get_json()["error"]["message"]


def test_an_overdue_invoice_puts_the_account_on_hold_naming_it(dunning_world: World) -> None:
    invoice_id = _activate_with_short_terms(dunning_world)
    assert dunning_world.crm.account("acme")["credit_hold"] is False
    _let_it_go_overdue(dunning_world)
    account = dunning_world.crm.account("acme")
    assert account["credit_hold"] is True
    assert account["credit_hold_source"] == "dealbridge"
    assert invoice_id in account["credit_note"]
    assert "overdue" in account["credit_note"]
    assert account["credit_state"] == "on_hold"


def test_waiting_plans_activate_by_themselves_in_the_order_they_were_approved(
    world: World,
) -> None:
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        payment_terms="Net 30", payment_method="Credit Card", billing_contact="acme_ap",
    )  # fmt: skip
    world.crm.set_credit("acme", hold=True)
    world.sync()
    assert _activate(world, "acme_expansion").status_code == 202  # approved first
    assert _activate(world, "acme_platform").status_code == 202
    world.crm.set_credit("acme", hold=False)
    world.sync()
    assert world.plan_for("acme_expansion")["status"] == "active"
    assert world.plan_for("acme_platform")["status"] == "active"
    assert _activation_order(world) == [
        world.crm.ref("acme_expansion"),
        world.crm.ref("acme_platform"),
    ]


def test_raising_the_limit_activates_the_plan_and_clears_the_state(world: World) -> None:
    world.crm.set_credit("umbrella", limit=Decimal("1000.00"))
    world.sync()
    _activate(world, "umbrella_support")
    world.sync()
    world.crm.set_credit("umbrella", limit=Decimal("5000.00"))
    world.sync()
    assert world.plan_for("umbrella_support")["status"] == "active"
    assert world.crm.account("umbrella")["credit_state"] == "ok"


def test_within_the_seeded_limit_the_plan_activates(world: World) -> None:
    world.sync()
    response = _activate(world, "umbrella_support")
    assert response.status_code == 200
    assert response.get_json()["status"] == "active"


def test_an_existing_customers_overdue_invoice_holds_the_account_once_linked(
    dunning_world: World,
) -> None:
    client = dunning_world.stripe_client()
    existing = client.v1.customers.create(params={"email": "pepper.nguyen@stark-logistics.example"})
    overdue = dunning_world.invoice_by_hand(str(existing.id), amount=40_000, days_until_due=1)
    dunning_world.clock.advance(days=1 + OVERDUE_DAYS + 1)
    dunning_world.stripe_sandbox.run_billing()
    dunning_world.sync()  # not linked yet: nothing to hold
    assert dunning_world.crm.account("stark")["credit_hold"] is False
    dunning_world.crm.update_deal("stark_pilot", closed=True, billing_contact="stark_contact")
    dunning_world.sync()
    account = dunning_world.crm.account("stark")
    assert account["credit_hold"] is True
    assert str(overdue.id) in account["credit_note"]


def test_automatic_activation_waits_for_an_existing_customers_overdue_invoice(
    database_url: str, clock: FrozenClock
) -> None:
    world = _start(
        database_url,
        clock,
        plans={"auto_activate": "always"},
        credit={"non_payment": {"hold_when_overdue_days": OVERDUE_DAYS}},
    )
    try:
        existing = world.stripe_client().v1.customers.create(
            params={"email": "pepper.nguyen@stark-logistics.example"}
        )
        world.invoice_by_hand(str(existing.id), amount=40_000, days_until_due=1)
        world.clock.advance(days=1 + OVERDUE_DAYS + 1)
        world.stripe_sandbox.run_billing()
        world.sync()
        world.crm.update_deal("stark_pilot", closed=True, billing_contact="stark_contact")
        world.sync()
        plan = world.plan_for("stark_pilot")
        assert plan["status"] == "awaiting_credit"
        assert plan["stripe_subscription_id"] is None
        assert world.crm.account("stark")["credit_hold"] is True
    finally:
        world.stop()


def test_an_invoice_not_yet_past_the_policy_does_not_hold(dunning_world: World) -> None:
    _activate_with_short_terms(dunning_world)
    dunning_world.clock.advance(days=1 + OVERDUE_DAYS)  # exactly N days overdue: still fine
    dunning_world.stripe_sandbox.run_billing()
    dunning_world.sync()
    assert dunning_world.crm.account("acme")["credit_hold"] is False


def test_a_persons_hold_is_not_released_by_payment(dunning_world: World) -> None:
    invoice_id = _activate_with_short_terms(dunning_world)
    dunning_world.crm.set_credit("acme", hold=True)
    _let_it_go_overdue(dunning_world)
    dunning_world.stripe_client().v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    dunning_world.sync()
    account = dunning_world.crm.account("acme")
    assert account["credit_hold"] is True
    assert account["credit_hold_source"] == "person"


def test_a_persons_hold_made_while_dealbridges_hold_is_queued_stays_theirs(
    dunning_world: World,
) -> None:
    world = dunning_world
    invoice_id = _activate_with_short_terms(world)
    world.clock.advance(days=1 + OVERDUE_DAYS + 1)
    world.stripe_sandbox.run_billing()
    world.stripe_sandbox.deliver_webhooks()
    assert world.runtime is not None
    for job in world.jobs.jobs(("clock",)):  # the credit check decides to hold...
        world.jobs.run_job(job, world.runtime)
    world.crm.set_credit("acme", hold=True)  # ...and finance holds the account first
    world.sync()
    assert world.crm.account("acme")["credit_hold_source"] != "dealbridge"
    world.stripe_client().v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    world.sync()
    assert world.crm.account("acme")["credit_hold"] is True  # payment never lifts it


def test_a_hold_a_person_turns_off_and_on_again_becomes_theirs(dunning_world: World) -> None:
    invoice_id = _activate_with_short_terms(dunning_world)
    _let_it_go_overdue(dunning_world)
    dunning_world.crm.set_credit("acme", hold=False)
    dunning_world.sync()
    assert dunning_world.crm.account("acme")["credit_hold"] is False  # not held again for it
    dunning_world.crm.set_credit("acme", hold=True)
    dunning_world.sync()
    dunning_world.stripe_client().v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    dunning_world.sync()
    assert dunning_world.crm.account("acme")["credit_hold"] is True


def test_keep_running_leaves_subscriptions_alone_during_a_hold(world: World) -> None:
    world.sync()
    _activate(world, "acme_platform")
    world.crm.set_credit("acme", hold=True)
    world.sync()
    assert _subscription(world, "acme_platform").pause_collection is None


def test_lifting_the_hold_undoes_the_pause(pausing_world: World) -> None:
    pausing_world.sync()
    _activate(pausing_world, "acme_platform")
    pausing_world.crm.set_credit("acme", hold=True)
    pausing_world.sync()
    pausing_world.crm.set_credit("acme", hold=False)
    pausing_world.sync()
    assert _subscription(pausing_world, "acme_platform").pause_collection is None


def test_a_pause_someone_else_made_survives_the_release(pausing_world: World) -> None:
    pausing_world.sync()
    _activate(pausing_world, "acme_platform")
    subscription_id = pausing_world.plan_for("acme_platform")["stripe_subscription_id"]
    pausing_world.stripe_client().v1.subscriptions.update(
        subscription_id, params={"pause_collection": {"behavior": "void"}}
    )
    pausing_world.crm.set_credit("acme", hold=True)
    pausing_world.sync()
    pausing_world.crm.set_credit("acme", hold=False)
    pausing_world.sync()
    pause = _subscription(pausing_world, "acme_platform").pause_collection
    assert pause is not None and pause.behavior == "void"


def test_holding_and_releasing_an_account_is_signalled_to_provisioning(
    database_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    world = _with_subscriber(database_url, clock, receiver)
    try:
        world.sync()
        world.crm.set_credit("acme", hold=True)
        world.sync()
        world.crm.set_credit("acme", hold=False)
        world.sync()
        assert _states(receiver, world.crm.ref("acme")) == ["on_hold", "ok"]
    finally:
        world.stop()


def test_going_over_the_limit_is_signalled_to_provisioning(
    database_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    world = _with_subscriber(database_url, clock, receiver)
    try:
        world.crm.set_credit("umbrella", limit=Decimal("1000.00"))
        world.sync()
        _activate(world, "umbrella_support")
        world.sync()
        assert _states(receiver, world.crm.ref("umbrella")) == ["over_limit"]
    finally:
        world.stop()


def test_a_hold_set_before_the_gate_stops_the_activation_before_any_stripe_write(
    world: World,
) -> None:
    world.sync()
    assert world.runtime is not None
    plan = world.plan_for("acme_platform")
    approve(world.runtime, plan["id"], actor="test")
    world.crm.set_credit("acme", hold=True)  # lands after approval, before the worker runs
    activation.activate(world.runtime, plan["id"])
    assert world.plan_for("acme_platform")["status"] == "awaiting_credit"
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_a_hold_after_the_first_write_lets_activation_finish_and_applies_after(
    pausing_world: World,
) -> None:
    world = pausing_world
    world.sync()
    _hold_after_first_write(world, settle_now=False)
    assert _activate(world, "acme_platform").get_json()["status"] == "active"
    world.sync()
    pause = _subscription(world, "acme_platform").pause_collection
    assert pause is not None and pause.behavior == "keep_as_draft"
    assert world.crm.account("acme")["credit_state"] == "on_hold"


def test_a_hold_handled_mid_activation_is_applied_to_the_new_subscription(
    pausing_world: World,
) -> None:
    world = pausing_world
    world.sync()
    _hold_after_first_write(world, settle_now=True)
    assert _activate(world, "acme_platform").get_json()["status"] == "active"
    pause = _subscription(world, "acme_platform").pause_collection  # no sync needed
    assert pause is not None and pause.behavior == "keep_as_draft"


def test_an_activation_over_the_credit_limit_waits_and_shows_the_figures(world: World) -> None:
    world.crm.set_credit("umbrella", limit=Decimal("1000.00"))
    world.sync()
    response = _activate(world, "umbrella_support")
    assert response.status_code == 202
    reason = response.get_json()["status_reason"]
    assert "first invoice USD 1,700.00" in reason
    assert "over the credit limit of USD 1,000.00" in reason
    world.sync()
    assert world.crm.account("umbrella")["credit_state"] == "over_limit"


def test_paying_the_invoice_releases_the_hold_dealbridge_set(dunning_world: World) -> None:
    invoice_id = _activate_with_short_terms(dunning_world)
    _let_it_go_overdue(dunning_world)
    dunning_world.stripe_client().v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    dunning_world.sync()
    account = dunning_world.crm.account("acme")
    assert account["credit_hold"] is False
    assert "released by dealbridge" in account["credit_note"]
    assert account["credit_state"] == "ok"


def test_a_hold_pauses_collection_as_the_policy_says(pausing_world: World) -> None:
    pausing_world.sync()
    _activate(pausing_world, "acme_platform")
    pausing_world.crm.set_credit("acme", hold=True)
    pausing_world.sync()
    pause = _subscription(pausing_world, "acme_platform").pause_collection
    assert pause is not None and pause.behavior == "keep_as_draft"
