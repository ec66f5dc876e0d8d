"""Cancel now with a credit note for the unused time, through the API and the customer page,
on the fake CRM: the preview sends nothing, the confirmation sends it once, and the credit
note reaches the CRM invoice record."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from connector.billing.gateway import StripeUnavailable
from connector.store.models import AuditEntry, LifecycleOperation
from tests.e2e.conftest import World
from tests.e2e.test_invoices import _activate, _crm_invoices_raw, _first_invoice, _money, _pay

# acme_platform bills 1,200.00 + 25 x 45.00 + 500.00 a month; the first period has 31 days
# (the clock of these tests is today's date, so the figures are checked against the lines).
MONTHLY = 120_000 + 112_500 + 50_000


def _cancel(world: World, sub_id: str, role: str = "finance", **body: Any) -> Any:
    return world.api("POST", f"/api/subscriptions/{sub_id}/cancel", role=role, json=body)


def _notes(world: World) -> int:
    """Credit notes Stripe issued (refused requests issue none)."""
    return len(world.stripe_client().v1.credit_notes.list(params={"limit": 100}).data)


def _cancels(world: World) -> int:
    return world.stripe_count("DELETE", "/v1/subscriptions/:id")


def test_cancel_now_credits_the_unused_days_once_and_the_crm_invoice_shows_it(
    world: World,
) -> None:
    plan = _activate(world)
    sub_id, customer = plan["stripe_subscription_id"], plan["stripe_customer_id"]
    invoice_id = _first_invoice(world, plan)
    _pay(world, invoice_id)
    world.sync()
    client = world.stripe_client()
    sub = client.v1.subscriptions.retrieve(sub_id)
    item = sub["items"].data[0]
    days = (item.current_period_end - item.current_period_start) // 86_400
    world.clock.advance(days=10, hours=3)

    shown = _cancel(world, sub_id, now=True, credit="customer_balance")

    assert shown.status_code == 200, shown.get_json()
    preview = shown.get_json()
    unused = days - 11  # 10 days 3 hours gone: the 11th day is in progress, counted as used
    assert {line["unused_days"] for line in preview["lines"]} == {unused}
    exact = sum(Decimal(line["net"]) * unused / days for line in preview["lines"])
    assert sum(line["net"] for line in preview["lines"]) == MONTHLY
    assert abs(preview["credit_amount"] - exact) <= Decimal("1.5")  # 3 lines, each +-0.5
    assert preview["credit_amount"] == sum(line["credit"] for line in preview["lines"])
    assert preview["actions"] == {"credit_amount": preview["credit_amount"]}  # paid invoice
    assert (preview["status"], preview["invoice_id"]) == ("previewed", invoice_id)
    assert _notes(world) == 0 and _cancels(world) == 0  # nothing sent
    assert client.v1.subscriptions.retrieve(sub_id).status == "active"

    other = _cancel(world, sub_id, now=True, credit="customer_balance").get_json()  # 2nd tab
    done = _cancel(world, sub_id, now=True, confirm=True, operation_id=preview["operation_id"])
    again = _cancel(world, sub_id, now=True, confirm=True, operation_id=preview["operation_id"])
    twice = _cancel(world, sub_id, now=True, confirm=True, operation_id=other["operation_id"])

    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["status"], done.get_json()["done_by_this_request"]) == (
        "completed",
        True,
    )
    assert again.status_code == 200 and again.get_json()["done_by_this_request"] is False
    assert twice.status_code == 409, twice.get_json()  # the same days are not credited twice
    assert "already canceled" in twice.get_json()["error"]["message"]
    note_id = done.get_json()["credit_note_id"]
    assert again.get_json()["credit_note_id"] == note_id
    assert _notes(world) == 1 and _cancels(world) == 1  # twice -> once
    note = client.v1.credit_notes.retrieve(note_id)
    assert (note.invoice, note.amount, note.post_payment_amount) == (
        invoice_id,
        preview["credit_amount"],
        preview["credit_amount"],
    )
    assert client.v1.customers.retrieve(customer).balance == -preview["credit_amount"]
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"
    world.sync()  # the worker sends the invoice's CRM write queued with the credit note
    record = _crm_invoices_raw(world)[invoice_id]
    assert _money(record["amount_credited"]) == Decimal(preview["credit_amount"]) / 100
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        entries = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "subscription.cancel_now")
            )
        )
    assert len(entries) == 1 and entries[0].actor not in ("", "anonymous")
    assert entries[0].subject_id == sub_id


def test_cancel_now_is_for_finance_and_refuses_a_stale_or_missing_preview(world: World) -> None:
    plan = _activate(world)
    sub_id = plan["stripe_subscription_id"]
    _pay(world, _first_invoice(world, plan))
    world.clock.advance(days=3)

    assert _cancel(world, sub_id, role="sales_rep", now=True).status_code == 403
    assert _cancel(world, sub_id, now=True, credit="cash").status_code == 422
    assert _cancel(world, sub_id, now=True, confirm=True).status_code == 422
    missing = _cancel(world, sub_id, now=True, confirm=True, operation_id="nope")
    assert missing.status_code == 404
    refund = _cancel(world, sub_id, now=True, credit="refund").get_json()
    assert refund["actions"] == {"refund_amount": refund["credit_amount"]}
    refused = _cancel(world, sub_id, now=True, confirm=True, operation_id=refund["operation_id"])
    assert refused.status_code == 502  # paid outside Stripe: there is no payment to refund
    assert "Nothing was cancelled" in refused.get_json()["error"]["message"]
    again = _cancel(world, sub_id, now=True, confirm=True, operation_id=refund["operation_id"])
    assert again.status_code == 409 and "failed" in again.get_json()["error"]["message"]
    preview = _cancel(world, sub_id, now=True, credit="customer_balance").get_json()
    world.clock.advance(days=1)  # one more day used: the amount shown is no longer right
    stale = _cancel(world, sub_id, now=True, confirm=True, operation_id=preview["operation_id"])

    assert stale.status_code == 409, stale.get_json()
    assert "preview again" in stale.get_json()["error"]["message"]
    assert _notes(world) == 0 and _cancels(world) == 0
    assert world.stripe_client().v1.subscriptions.retrieve(sub_id).status == "active"


def _cancel_screen(world: World, customer: str, sub_id: str, credit: str) -> tuple[Any, str, str]:
    """Finance asks, on the customer page, to cancel now with ``credit``: the confirm
    screen's response, the page's CSRF token and the cancel URL (to confirm with)."""
    page = world.api("GET", f"/customers/{customer}", role="finance").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    url = f"/customers/{customer}/subscriptions/{sub_id}/cancel"
    data = {"csrf": csrf.group(1), "when": "now", "credit": credit}
    return world.api("POST", url, role="finance", data=data), csrf.group(1), url


def test_the_page_shows_the_credit_and_its_rounding_before_cancelling(world: World) -> None:
    plan = _activate(world)
    sub_id, customer = plan["stripe_subscription_id"], plan["stripe_customer_id"]
    invoice_id = _first_invoice(world, plan)  # still open: the credit lowers what is due
    client = world.stripe_client()
    due = client.v1.invoices.retrieve(invoice_id).amount_due
    world.clock.advance(days=20)

    screen, csrf, url = _cancel_screen(world, customer, sub_id, "refund")

    html = screen.get_data(as_text=True)
    assert screen.status_code == 200, html
    assert "Confirm: cancel now and issue the credit note" in html, html
    assert "lowers the invoice's amount due by USD" in html and "Rounding" in html
    assert re.search(r'<td class="num">USD [\d,]+\.\d{8}(…)?</td>', html)  # the exact figure
    total = re.search(r'id="credit-total">USD ([\d,.]+)<', html)
    operation = re.search(r'name="operation_id" value="([\w-]+)"', html)
    assert total is not None and operation is not None
    assert _notes(world) == 0 and _cancels(world) == 0

    done = world.api("POST", url, role="finance", data={
        "csrf": csrf, "when": "confirm", "operation_id": operation.group(1)})  # fmt: skip

    assert done.status_code == 200 and "is canceled." in done.get_data(as_text=True)
    credited = int(Decimal(total.group(1).replace(",", "")) * 100)
    assert credited > 0
    assert client.v1.invoices.retrieve(invoice_id).amount_due == due - credited
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"


def test_the_page_for_no_credit_shows_the_unused_time_as_not_credited(world: World) -> None:
    """Dropping the unused days is the person's choice, so they see how much they drop; the
    page must not present that figure as a credit."""
    plan = _activate(world)
    sub_id, customer = plan["stripe_subscription_id"], plan["stripe_customer_id"]
    _pay(world, _first_invoice(world, plan))
    world.clock.advance(days=20)

    screen, csrf, url = _cancel_screen(world, customer, sub_id, "none")

    html = screen.get_data(as_text=True)
    assert screen.status_code == 200, html
    dropped = re.search(r'id="uncredited-total">(USD [\d,.]+)<', html)
    assert dropped is not None, html
    assert "none of it is credited" in html and "Unused, not credited" in html
    assert 'id="credit-total"' not in html and "issue the credit note" not in html
    assert f"No credit note: the unused time ({dropped.group(1)}) is not credited." in html
    operation = re.search(r'name="operation_id" value="([\w-]+)"', html)
    assert operation is not None
    done = world.api("POST", url, role="finance", data={
        "csrf": csrf, "when": "confirm", "operation_id": operation.group(1)})  # fmt: skip
    assert done.status_code == 200 and "is canceled." in done.get_data(as_text=True)
    assert _notes(world) == 0


def test_a_confirm_interrupted_after_the_credit_note_completes_on_retry_without_a_second(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _activate(world)
    sub_id = plan["stripe_subscription_id"]
    _pay(world, _first_invoice(world, plan))
    world.clock.advance(days=5)
    preview = _cancel(world, sub_id, now=True, credit="customer_balance").get_json()
    assert world.runtime is not None
    gateway = world.runtime.stripe._target  # the gateway behind the runtime's session guard

    def down(*args: Any) -> Any:
        raise StripeUnavailable("Stripe is down")

    monkeypatch.setattr(gateway, "cancel_subscription", down)
    failed = _cancel(world, sub_id, now=True, confirm=True, operation_id=preview["operation_id"])
    assert failed.status_code == 502, failed.get_json()
    assert _notes(world) == 1  # the note was issued, the cancellation was not
    monkeypatch.undo()
    world.clock.advance(days=2)  # days later: the amount stored at the first confirm is kept

    retried = _cancel(world, sub_id, now=True, confirm=True, operation_id=preview["operation_id"])

    assert retried.status_code == 200, retried.get_json()
    assert retried.get_json()["credit_amount"] == preview["credit_amount"]
    assert _notes(world) == 1  # found by its operation id, not issued again
    client = world.stripe_client()
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"
    notes = client.v1.credit_notes.list(params={"invoice": preview["invoice_id"]}).data
    assert [n.amount for n in notes] == [preview["credit_amount"]]


def test_two_previews_confirmed_at_the_same_moment_credit_once(world: World) -> None:
    """The second confirmation finds the first one under way (pending) and sends nothing."""
    plan = _activate(world)
    sub_id = plan["stripe_subscription_id"]
    _pay(world, _first_invoice(world, plan))
    first = _cancel(world, sub_id, now=True, credit="customer_balance").get_json()
    second = _cancel(world, sub_id, now=True, credit="customer_balance").get_json()
    assert world.runtime is not None
    with world.runtime.db.session() as session:  # the first confirmation is under way
        op = session.get(LifecycleOperation, first["operation_id"])
        assert op is not None
        op.status = "pending"

    answer = _cancel(world, sub_id, now=True, confirm=True, operation_id=second["operation_id"])

    assert answer.status_code == 409, answer.get_json()
    assert first["operation_id"] in answer.get_json()["error"]["message"]
    assert _notes(world) == 0 and _cancels(world) == 0
