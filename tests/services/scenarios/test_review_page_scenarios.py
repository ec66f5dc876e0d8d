"""Scenarios moved down from ``tests/e2e/test_review_page.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

import re
from datetime import timedelta

from werkzeug.datastructures import MultiDict

from tests.e2e.conftest import World
from tests.e2e.test_review_page import Rep, _first_invoice, _forms


def test_saving_the_form_unchanged_keeps_the_suggested_plan(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    before = rep.plan()["plan"]

    rep.post("adjust-form")

    after = rep.plan()["plan"]
    keys = ("invoice_type", "interval", "interval_count", "total_amount", "first_invoice_amount")
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
    assert [line["kind"] for line in after["lines"]] == [line["kind"] for line in before["lines"]]


def test_choosing_one_invoice_on_the_page_bills_the_contract_once(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")

    rep.post("adjust-form", {"billing": "one_time"})

    plan = rep.plan()["plan"]
    assert (plan["invoice_type"], plan["interval"]) == ("one_time", None)


def test_ach_debit_and_bank_transfer_are_separate_choices(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    fields = [k for k, v in rep.form("adjust-form") if k == "payment_method_types"]
    assert fields, "the deal's ACH and card are preselected"

    form = [(k, v) for k, v in rep.form("adjust-form") if k != "payment_method_types"]
    form.append(("payment_method_types", "us_bank_account"))
    rep.client.post(f"{rep.path}/adjust", data=MultiDict(form))

    assert rep.plan()["plan"]["payment_method_types"] == ["us_bank_account"]


def test_the_api_refuses_a_one_time_bill_with_a_frequency_naming_both_fields(
    world: World,
) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")

    response = world.api(
        "POST", f"/api/plans/{plan['id']}/adjust",
        json={"invoice_type": "one_time", "interval": "month"},
    )  # fmt: skip

    assert response.status_code == 422
    problems = response.get_json()["error"]["problems"]
    assert [p["field"] for p in problems] == ["interval"]
    assert "invoice_type" in problems[0]["message"] and "interval" in problems[0]["message"]
    assert world.plan_for("acme_platform")["overrides"] == {}


def test_the_api_refuses_a_send_date_for_a_schedule(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    today = world.clock().date().isoformat()

    response = world.api(
        "POST", f"/api/plans/{plan['id']}/adjust",
        json={"invoice_type": "recurring", "send_date": today},
    )  # fmt: skip

    assert response.status_code == 422
    [problem] = response.get_json()["error"]["problems"]
    assert problem["field"] == "send_date" and "invoice_type" in problem["message"]


def test_manual_invoicing_asks_first_and_says_what_it_means(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")

    rep.open(f"{rep.path}/manual")

    assert rep.plan()["status"] == "in_review"
    assert "no subscription and no invoice" in rep.html
    assert "undo this" in rep.html and "as long as no invoice has been sent" in rep.html
    without_confirming = [(k, v) for k, v in rep.form(f"/plans/{rep.plan_id}/manual")]
    rep.client.post(
        f"{rep.path}/manual",
        data=MultiDict([(k, v) for k, v in without_confirming if k != "confirm"]),
    )
    assert rep.plan()["status"] == "in_review"

    rep.post(f"/plans/{rep.plan_id}/manual")

    assert rep.plan()["status"] == "manual"
    assert "Please confirm" not in rep.html
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_manual_invoicing_can_be_undone_until_an_invoice_is_sent(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    rep.open(f"{rep.path}/manual")
    rep.post(f"/plans/{rep.plan_id}/manual")

    rep.post(f"/plans/{rep.plan_id}/manual/undo")

    plan = rep.plan()
    assert plan["status"] == "in_review" and "collection" not in plan["overrides"]
    world.sync()
    assert world.crm.deal("acme_platform")["plan_status"] == "Awaiting review"
    rep.open(f"{rep.path}/manual")
    rep.post(f"/plans/{rep.plan_id}/manual")
    world.invoice_by_hand(plan["stripe_customer_id"])

    response = rep.post(f"/plans/{rep.plan_id}/manual/undo")

    assert response.status_code == 409
    assert "already sent" in rep.html
    assert rep.plan()["status"] == "manual"
    assert "manual-undo" not in rep.html


def test_the_preview_is_the_first_invoice_stripe_then_creates(world: World) -> None:
    """acme_platform: platform, 25 seats and quarterly support recurring monthly, plus the
    setup fee on the first invoice."""
    world.sync()
    plan = world.plan_for("acme_platform")

    preview = _first_invoice(world, plan["id"])

    assert preview.kind == "preview", preview
    assert preview.total == plan["plan"]["first_invoice_amount"]
    assert sorted(line.amount for line in preview.lines) == sorted(
        line["unit_amount"] * line["quantity"] for line in plan["plan"]["lines"]
    )
    today = world.clock().date()
    assert (preview.date, preview.due_date) == (today, today + timedelta(days=30))
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert activated["status"] == "active", activated["status_reason"]

    created = _first_invoice(world, plan["id"])

    assert created.kind == "created" and created.invoice_id
    assert (created.total, created.subtotal, created.tax, created.discount) == (
        preview.total, preview.subtotal, preview.tax, preview.discount,
    )  # fmt: skip
    assert [(line.description, line.amount) for line in created.lines] == [
        (line.description, line.amount) for line in preview.lines
    ]
    assert (created.date, created.due_date) == (preview.date, preview.due_date)
    assert created.hosted_invoice_url and created.invoice_pdf
    api = world.api("GET", f"/api/plans/{plan['id']}/first-invoice").get_json()
    assert (api["available"], api["kind"], api["total"]) == (True, "created", created.total)
    assert api["date"] == created.date.isoformat() and api["lines"][0]["amount"] > 0


def test_the_preview_shows_the_customers_discount_as_stripe_applies_it(
    world: World,
) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    stripe = world.stripe_client()
    coupon = stripe.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    stripe.v1.customers.update(  # a coupon on the customer: API versions before 2025-09-30
        plan["stripe_customer_id"],
        params={"coupon": coupon.id},  # type: ignore[typeddict-unknown-key]
        options={"stripe_version": "2025-08-27.basil"},
    )

    preview = _first_invoice(world, plan["id"])

    subtotal = plan["plan"]["first_invoice_amount"]
    assert preview.subtotal == subtotal
    assert preview.discount == subtotal // 10
    assert preview.total == subtotal - subtotal // 10


def test_when_stripe_cannot_preview_the_page_says_so_and_still_works(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    world.stripe_sandbox.inject_faults("/v1/invoices/create_preview", [503])

    response = rep.open(rep.path)

    assert response.status_code == 200
    assert "Stripe could not compute the preview just now" in rep.html
    assert 'id="activate"' in rep.html


def test_the_duplicate_customer_chooser_shows_when_each_was_created_as_a_date(
    world: World,
) -> None:
    for name in ("Acme Robotics", "Acme Robotics Inc."):
        world.stripe_client().v1.customers.create(
            params={"name": name, "email": "ap.team@acmerobotics.example"}
        )
    world.sync()
    rep = Rep(world, "acme_platform")
    assert rep.plan()["status"] == "needs_customer", rep.plan()["status_reason"]

    text = " ".join(_forms(rep.html).text)

    today = world.clock().date().isoformat()
    assert text.count(today) >= 2
    assert not re.search(r"\b\d{10}\b", text)


def test_a_contract_started_months_ago_previews_its_catch_up_as_stripe_bills_it(
    world: World,
) -> None:
    world.crm.update_deal("acme_platform", contract_start=world.clock().date() - timedelta(days=70))
    world.sync()
    plan = world.plan_for("acme_platform")

    preview = _first_invoice(world, plan["id"])
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert activated["status"] == "active", activated["status_reason"]
    created = _first_invoice(world, plan["id"])

    assert preview.kind == "preview" and created.kind == "created"
    assert [(line.description, line.amount) for line in preview.lines] == [
        (line.description, line.amount) for line in created.lines
    ]
    assert preview.total == created.total == plan["plan"]["invoices"][0]["amount"]
    assert len(preview.lines) > len(plan["plan"]["lines"])  # the elapsed months' catch-up
