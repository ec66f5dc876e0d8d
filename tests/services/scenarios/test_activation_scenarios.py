"""Scenarios moved down from ``tests/e2e/test_activation.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.billing.gateway import StripeGateway, StripeUnavailable
from connector.domain.plan import add_months
from connector.services import activation
from connector.services.plans import approve
from tests.e2e.conftest import World, make_world
from tests.e2e.test_activation import _activate, _as_new_business, _subscriptions
from tests.support import FrozenClock


def test_several_customers_with_the_email_wait_for_a_person_to_choose(world: World) -> None:
    client = world.stripe_client()
    first = client.v1.customers.create(params={"email": "ap.team@acmerobotics.example"})
    second = client.v1.customers.create(params={"email": "AP.Team@AcmeRobotics.example"})
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "needs_customer"
    assert {c["id"] for c in plan["customer_candidates"]} == {first.id, second.id}
    assert "2 Stripe customers have the email" in plan["status_reason"]
    refused = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert refused.status_code == 409
    assert "Choose which Stripe customer" in refused.get_json()["error"]["message"]

    chosen = world.api("POST", f"/api/plans/{plan['id']}/customer", json={"customer_id": second.id})
    assert chosen.status_code == 200
    assert chosen.get_json()["status"] == "in_review"
    world.sync()
    assert world.crm.account("acme")["stripe_customer_id"] == second.id


def test_the_chosen_customers_existing_invoices_reach_the_crm(world: World) -> None:
    client = world.stripe_client()
    client.v1.customers.create(params={"email": "ap.team@acmerobotics.example"})
    second = client.v1.customers.create(params={"email": "ap.team@acmerobotics.example"})
    draft = world.invoice_by_hand(str(second.id), amount=12_500, finalize=False)
    world.sync()
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/customer", json={"customer_id": second.id})
    world.sync()
    records = {r["stripe_invoice_id"]: r for r in world.crm.invoices()}
    assert records[str(draft.id)]["status"] == "draft"


def test_one_time_items_go_on_the_first_invoice(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    subscription = world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    invoice = world.stripe_client().v1.invoices.retrieve(str(subscription.latest_invoice))
    assert invoice.status == "open"
    assert invoice.hosted_invoice_url
    # setup 2,500.00 + platform 1,200.00 + seats 1,125.00 + support 500.00
    assert invoice.amount_due == 250000 + 120000 + 112500 + 50000
    assert invoice.due_date is not None


def test_an_annual_price_on_a_twelve_month_contract_is_one_invoice_sent_now(
    database_url: str, clock: FrozenClock
) -> None:
    world = make_world(database_url, clock)
    world.start()
    try:
        world.crm.update_line("acme_expansion", 0, pricing_schedule="annual")
        world.crm.update_deal(
            "acme_expansion", closed=True, contract_start=world.clock().date(),
            payment_terms="Net 15", payment_method="Credit Card",
            billing_contact="acme_ap",
        )  # fmt: skip
        world.sync()
        plan = _activate(world, "acme_expansion")
        assert plan["plan"]["invoice_type"] == "one_time"
        invoice = world.stripe_client().v1.invoices.retrieve(plan["stripe_invoice_id"])
        assert invoice.status == "open"
        assert invoice.amount_due == 40 * 4200
        assert invoice.hosted_invoice_url
        assert invoice.collection_method == "send_invoice"
    finally:
        world.stop()


def test_overrides_change_what_is_created(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    changed = world.api(
        "POST",
        f"/api/plans/{plan['id']}/adjust",
        json={"interval": "month", "interval_count": 3, "days_until_due": 45,
              "payment_method_types": ["card"]},
    )  # fmt: skip
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["plan"]["interval_count"] == 3
    plan = _activate(world, "acme_platform")
    subscription = world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    assert subscription.days_until_due == 45
    assert subscription.payment_settings.payment_method_types == ["card"]  # type: ignore[union-attr]
    recurring = {item.price.recurring.interval_count for item in subscription["items"].data}  # type: ignore[union-attr]
    assert recurring == {3}


def test_an_invalid_override_is_refused_with_each_field_named(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    response = world.api(
        "POST",
        f"/api/plans/{plan['id']}/adjust",
        json={"interval": "week", "days_until_due": 999, "payment_method_types": []},
    )
    assert response.status_code == 422
    fields = {p["field"] for p in response.get_json()["error"]["problems"]}
    assert {"interval", "days_until_due", "payment_method_types"} <= fields


def test_rolling_the_contract_into_one_bill(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"invoice_type": "one_time"})
    plan = _activate(world, "acme_platform")
    invoice = world.stripe_client().v1.invoices.retrieve(plan["stripe_invoice_id"])
    # 12 months of (1,200 + 1,125 + 500) plus the 2,500 setup fee
    assert invoice.amount_due == 12 * (120000 + 112500 + 50000) + 250000
    assert _subscriptions(world, plan["stripe_customer_id"]) == []


def test_manual_invoicing_creates_nothing_but_the_link(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    before = world.stripe_sandbox.request_counts()
    response = world.api("POST", f"/api/plans/{plan['id']}/manual")
    assert response.status_code == 200
    assert response.get_json()["status"] == "manual"
    world.sync()
    after = world.stripe_sandbox.request_counts()
    created = {k: v - before.get(k, 0) for k, v in after.items() if k[0] == "POST"}
    assert not any(created.values())
    assert world.crm.deal("acme_platform")["plan_status"] == "Manual invoicing"


def test_choosing_manual_collection_on_review_creates_nothing_in_stripe(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    adjusted = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"collection": "manual"})
    assert adjusted.status_code == 200, adjusted.get_json()
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    world.sync()
    assert activated["status"] == "manual"
    assert world.stripe_count("POST", "/v1/subscriptions") == 0
    assert world.stripe_count("POST", "/v1/invoices") == 0


def test_a_failed_plan_that_already_billed_is_not_billed_again(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"invoice_type": "one_time"})
    world.stripe_sandbox.inject_faults("/v1/invoices/:id/send", [400])  # finalized, not sent
    failed = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert failed["status"] == "failed", failed["status_reason"]
    again = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert again.status_code == 409
    assert "already created" in again.get_json()["error"]["message"]
    assert world.stripe_count("POST", "/v1/invoices") == 1


def test_a_lost_response_is_retried_as_the_same_write_even_after_midnight(
    world: World,
) -> None:
    """Stripe made the schedule at 23:50 UTC but its answer was lost; the retry comes after
    midnight, when the plan's start is today: it must not add a subscription beside it."""
    world.sync()
    assert world.runtime is not None
    world.clock.now = world.clock().replace(hour=23, minute=50)
    tomorrow = (world.clock() + timedelta(days=1)).date().isoformat()
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"start_date": tomorrow})
    real = world.runtime.stripe
    lost: list[str] = []

    class LosesTheFirstAnswer(StripeGateway):
        def create_subscription_schedule(self, params: Any, idempotency_key: str) -> Any:
            created = real.create_subscription_schedule(params, idempotency_key)
            if not lost:
                lost.append(created.id)
                raise StripeUnavailable("Stripe unavailable: read timed out")
            return created

    world.runtime.__dict__["stripe"] = LosesTheFirstAnswer(real.client, dashboard_url="x")
    first = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert first["status"] == "approved" and "Retrying" in first["status_reason"]
    world.clock.advance(minutes=15)  # past midnight, past the backoff
    world.sync()
    done = world.plan_for("acme_platform")
    assert (done["status"], done["stripe_schedule_id"]) == ("active", lost[0])
    assert done["stripe_subscription_id"] is None
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"billing_contact": None}, "billing_contact"),
        ({"contract_start": None}, "contract_start"),
        ({"currency": "IRR"}, "currency"),
    ],
    ids=[
        "no billing email",
        "no contract start",
        "unsupported currency",
    ],
)
def test_a_deal_that_cannot_be_billed_says_why_and_creates_nothing(
    world: World, fields: dict[str, Any], field: str
) -> None:
    ref = "umbrella_support"
    # Written as the org holds it, past the CRM's own validation (an org currency that
    # Stripe cannot bill in, a contact deleted after closing).
    world.crm.force_deal_values(ref, **fields)
    world.sync()
    plan = world.plan_for(ref)
    assert plan["status"] == "invalid"
    assert any(p["field"].startswith(field) for p in plan["problems"])
    deal = world.crm.deal(ref)
    assert deal["plan_status"] == "Cannot be billed"
    assert field in deal["plan_summary"]
    assert world.stripe_count("POST", "/v1/subscriptions") == 0
    refused = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert refused.status_code == 409


@pytest.mark.parametrize(
    ("line_fields", "field"),
    [({"quantity": 0}, "quantity"), ({"pricing_schedule": "weekly"}, "pricing_schedule")],
    ids=["zero quantity", "unknown pricing schedule"],
)
def test_a_bad_line_item_blocks_the_plan(
    world: World, line_fields: dict[str, Any], field: str
) -> None:
    world.crm.update_line("umbrella_support", 0, **line_fields)
    world.sync()
    plan = world.plan_for("umbrella_support")
    assert plan["status"] == "invalid"
    assert any(p["field"].endswith(field) for p in plan["problems"])
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_a_stripe_429_is_retried_without_duplicating(world: World) -> None:
    world.sync()
    world.stripe_sandbox.inject_faults("/v1/subscriptions", [429])
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert world.plan_for("acme_platform")["status"] == "approved"
    assert "Retrying" in world.plan_for("acme_platform")["status_reason"]
    world.clock.advance(minutes=5)
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active"
    assert len(_subscriptions(world, plan["stripe_customer_id"])) == 1


def test_a_crash_between_stripe_calls_ends_with_one_set_of_objects(world: World) -> None:
    """The subscription is created in Stripe, then the process dies before recording it."""
    world.sync()
    assert world.runtime is not None
    real: StripeGateway = world.runtime.stripe
    calls = {"n": 0}

    class CrashAfterCreate(StripeGateway):
        def create_subscription(self, params: Any, idempotency_key: str) -> Any:
            created = real.create_subscription(params, idempotency_key)
            calls["n"] += 1
            if calls["n"] == 1:
                raise SystemExit("the worker died here")
            return created

    world.runtime.__dict__["stripe"] = CrashAfterCreate(real.client, dashboard_url="x")
    plan = world.plan_for("acme_platform")
    approve(world.runtime, plan["id"], actor="test")
    with pytest.raises(SystemExit):
        activation.activate(world.runtime, plan["id"])
    assert world.plan_for("acme_platform")["status"] == "activating"
    world.clock.advance(minutes=6)  # the dead worker's lease runs out
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active"
    assert len(_subscriptions(world, plan["stripe_customer_id"])) == 1
    assert calls["n"] == 2  # re-sent with the same idempotency key: Stripe replayed it


def test_today_is_the_plan_start(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["plan"]["start_date"] == world.clock().date().isoformat()
    assert date.fromisoformat(plan["plan"]["end_date"]) == add_months(world.clock().date(), 12)


def test_a_stripe_refusal_is_shown_with_stripes_own_message(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    world.stripe_client().v1.customers.delete(plan["stripe_customer_id"])  # behind our back
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200
    refused = response.get_json()
    assert refused["status"] == "failed"
    assert "Stripe refused the activation: No such customer" in refused["status_reason"]
    world.sync()
    assert "No such customer" in world.crm.deal("acme_platform")["plan_summary"]

    retried = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert retried["status"] == "active", retried["status_reason"]  # relinked, then activated
    assert retried["stripe_customer_id"] != plan["stripe_customer_id"]


def test_products_and_prices_are_created_once_and_reused(world: World) -> None:
    world.sync()
    _activate(world, "acme_platform")
    prices_before = world.stripe_count("POST", "/v1/prices")
    products_before = world.stripe_count("POST", "/v1/products")
    world.crm.update_line("acme_expansion", 0, unit_price=Decimal("45.00"))
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        payment_terms="Net 30", payment_method="Credit Card", billing_contact="acme_ap",
    )  # fmt: skip
    world.sync()
    _activate(world, "acme_expansion")  # the same seats product at the same monthly price
    assert world.stripe_count("POST", "/v1/products") == products_before
    assert world.stripe_count("POST", "/v1/prices") == prices_before


def test_plans_needing_no_confirmation_can_activate_without_review(
    database_url: str, clock: FrozenClock
) -> None:
    world = make_world(database_url, clock, plans={"auto_activate": "when_confirmed"})
    world.start()
    try:
        world.sync()
        assert world.plan_for("acme_platform")["status"] == "active"
        assert world.plan_for("umbrella_support")["status"] == "in_review"  # terms missing
    finally:
        world.stop()


def test_an_archived_price_is_never_reused_for_a_new_activation(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    subscription = world.stripe_client().v1.subscriptions.retrieve(first["stripe_subscription_id"])
    seats = next(i.price for i in subscription["items"].data if i.quantity == 25)
    archived = world.api("POST", f"/api/prices/{seats.id}/archive", role="finance")
    assert archived.status_code == 200, archived.get_json()

    world.crm.update_line("acme_expansion", 0, unit_price=Decimal("45.00"))
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        payment_terms="Net 30", payment_method="Credit Card", billing_contact="acme_ap",
    )  # fmt: skip
    world.sync()
    _as_new_business(world, "acme_expansion")
    second = _activate(world, "acme_expansion")  # same product, same monthly price

    assert second["status"] == "active", second["status_reason"]
    again = world.stripe_client().v1.subscriptions.retrieve(second["stripe_subscription_id"])
    (item,) = again["items"].data
    assert item.price.id != seats.id
    assert item.price.active is True
    assert item.price.unit_amount == seats.unit_amount
    assert world.stripe_client().v1.prices.retrieve(seats.id).active is False


def test_a_deal_for_an_archived_product_is_refused_before_billing(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    client = world.stripe_client()
    subscription = client.v1.subscriptions.retrieve(first["stripe_subscription_id"])
    seats_product = next(i.price.product for i in subscription["items"].data if i.quantity == 25)
    archived = world.api("POST", f"/api/products/{seats_product}/archive", role="finance")
    assert archived.status_code == 200, archived.get_json()
    world.crm.update_line("acme_expansion", 0, unit_price=Decimal("45.00"))
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        payment_terms="Net 30", payment_method="Credit Card", billing_contact="acme_ap",
    )  # fmt: skip
    world.sync()

    plan = _as_new_business(world, "acme_expansion")  # the same seats product
    refused = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert refused["status"] == "failed"
    assert f"({seats_product})" in refused["status_reason"]
    assert "is archived" in refused["status_reason"]
    assert len(_subscriptions(world, first["stripe_customer_id"])) == 1

    client.v1.products.update(str(seats_product), params={"active": True})  # finance relents
    retried = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert retried["status"] == "active", retried["status_reason"]


def test_changing_a_price_does_not_move_its_terms_key_to_other_terms(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    subscription = world.stripe_client().v1.subscriptions.retrieve(first["stripe_subscription_id"])
    seats = next(i.price for i in subscription["items"].data if i.quantity == 25)
    changed = world.api(
        "POST", f"/api/prices/{seats.id}/change", role="finance", json={"unit_amount": 5000}
    )
    assert changed.status_code == 200, changed.get_json()
    new_price = world.stripe_client().v1.prices.retrieve(changed.get_json()["price_id"])
    assert new_price.unit_amount == 5000
    assert new_price.lookup_key != seats.lookup_key  # the 45.00 key names 45.00 terms only


def test_an_existing_customer_is_found_whatever_the_case_of_the_email(world: World) -> None:
    existing = world.stripe_client().v1.customers.create(
        params={"email": "ap.team@acmerobotics.example", "name": "Acme AP"}
    )
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["stripe_customer_id"] == existing.id
    everyone = world.stripe_client().v1.customers.list(params={"limit": 100}).data
    acme = [c for c in everyone if (c.email or "").casefold() == "ap.team@acmerobotics.example"]
    assert [c.id for c in acme] == [existing.id]  # found, not created again


def test_a_future_start_becomes_a_subscription_schedule(world: World) -> None:
    world.sync()
    plan = _activate(world, "globex_licence")
    assert plan["status"] == "active"
    schedule = world.stripe_client().v1.subscription_schedules.retrieve(plan["stripe_schedule_id"])
    start = world.clock().date() + timedelta(days=14)
    assert schedule.phases[0].start_date == int(
        datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    )
    items = schedule.phases[0]["items"]
    assert len(items) == 2  # licence and analytics, semi-annually; setup fee rides along
    assert schedule.end_behavior == "cancel"
    # The setup fee's CRM line discount (10 %: on Dynamics 365 the same 230.00 comes as
    # manualdiscountamount, tests/sandboxes/dataverse) is an amount-off coupon on the line,
    # the fee at its list price.
    [setup] = schedule.phases[0]["add_invoice_items"]
    client = world.stripe_client()
    assert client.v1.prices.retrieve(str(setup["price"])).unit_amount == 230000
    [discount] = setup["discounts"]
    coupon = client.v1.coupons.retrieve(str(discount["coupon"]))
    assert (coupon.amount_off, coupon.currency) == (23000, "eur")
