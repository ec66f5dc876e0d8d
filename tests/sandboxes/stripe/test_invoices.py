"""Invoice items and invoices: creation, money fields and the status machine."""

from __future__ import annotations

import pytest
import requests
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, FakeClock


def _draft(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 1500, **extra: object
) -> stripe.Invoice:
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "amount": amount,
            "currency": "usd",
            "description": "Setup fee",
        }
    )
    params = {"customer": customer.id, "pending_invoice_items_behavior": "include", **extra}
    return client.v1.invoices.create(params=params)  # type: ignore[arg-type]


def test_an_invoice_item_is_pending_until_invoiced(
    client: stripe.StripeClient, customer: stripe.Customer, one_time_price: stripe.Price
) -> None:
    item = client.v1.invoice_items.create(
        params={"customer": customer.id, "pricing": {"price": one_time_price.id}, "quantity": 2}
    )
    assert item.id.startswith("ii_")
    assert item.amount == 10_000
    assert item.invoice is None
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True})
    assert [i.id for i in pending.data] == [item.id]


def test_invoice_items_take_price_data(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    item = client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "quantity": 3,
            "price_data": {
                "currency": "usd",
                "product": str(recurring_price.product),
                "unit_amount": 700,
            },
        }
    )
    assert (item.amount, item.quantity, item.currency) == (2100, 3, "usd")


def test_an_invoice_item_with_neither_amount_nor_price_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(params={"customer": customer.id, "currency": "usd"})


def test_a_manual_invoice_starts_as_a_draft_without_pending_items_by_default(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 100, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    assert invoice.status == "draft"
    assert invoice.billing_reason == "manual"
    assert invoice.lines.data == []
    assert invoice.number is None
    assert invoice.hosted_invoice_url is None


def test_including_pending_items_puts_them_on_the_invoice_with_totals(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _draft(client, customer, 1500)
    assert [line.amount for line in invoice.lines.data] == [1500]
    assert (invoice.subtotal, invoice.total, invoice.total_excluding_tax) == (1500, 1500, 1500)
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (1500, 0, 1500)


def test_an_invoice_item_can_be_added_to_a_draft_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 300, "currency": "usd", "invoice": invoice.id}
    )
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 300


def test_send_invoice_requires_days_until_due_or_due_date(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.create(
            params={"customer": customer.id, "collection_method": "send_invoice"}
        )
    assert "days_until_due" in str(raised.value.user_message)


def test_finalizing_numbers_the_invoice_and_sets_the_due_date(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = _draft(client, customer, collection_method="send_invoice", days_until_due=14)
    clock.advance(600)
    final = client.v1.invoices.finalize_invoice(invoice.id)
    assert final.status == "open"
    assert final.number == f"{customer.invoice_prefix}-0001"
    assert final.status_transitions.finalized_at == START + 600
    assert final.due_date == START + 600 + 14 * DAY
    assert final.hosted_invoice_url is not None
    assert final.invoice_pdf is not None


def test_the_hosted_invoice_page_and_pdf_render(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    final = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    page = requests.get(str(final.hosted_invoice_url), timeout=5)
    assert page.status_code == 200
    assert str(final.number) in page.text
    pdf = requests.get(str(final.invoice_pdf), timeout=5)
    assert pdf.content.startswith(b"%PDF-")


def test_the_dashboard_stand_in_lists_a_customers_invoices(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    final = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    base = str(final.hosted_invoice_url).split("/invoice/")[0]
    page = requests.get(f"{base}/dashboard/customers/{customer.id}", timeout=5)
    assert page.status_code == 200
    assert str(final.number) in page.text and str(final.hosted_invoice_url) in page.text
    missing = requests.get(f"{base}/dashboard/customers/cus_missing", timeout=5)
    assert missing.status_code == 404


def test_refinalizing_an_open_invoice_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert "already finalized" in str(raised.value.user_message)


def test_a_zero_amount_invoice_is_paid_on_finalization(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "paid"


def test_paying_out_of_band_marks_the_invoice_paid(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    clock.advance(60)
    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert paid.status == "paid"
    assert (paid.amount_paid, paid.amount_remaining) == (1500, 0)
    assert paid.status_transitions.paid_at == START + 60


def test_paying_a_draft_finalizes_it_first(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    paid = client.v1.invoices.pay(_draft(client, customer).id)
    assert paid.status == "paid"
    assert paid.number is not None
    types = [e.type for e in client.v1.events.list(params={"type": "invoice.*"}).data][::-1]
    assert types == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]


def test_paying_a_paid_invoice_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    paid = client.v1.invoices.pay(_draft(client, customer).id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.pay(paid.id)
    assert raised.value.user_message == "Invoice is already paid"


def test_a_declined_payment_is_a_card_error_and_counts_an_attempt(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(
        params={
            "payment_method": "pm_card_chargeCustomerFail",
            "invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"},
        }
    )
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.invoices.pay(invoice.id)
    assert raised.value.http_status == 402
    assert raised.value.code == "card_declined"
    failed = client.v1.invoices.retrieve(invoice.id)
    assert (failed.status, failed.attempt_count, failed.attempted) == ("open", 1, True)
    event = client.v1.events.list(params={"type": "invoice.payment_failed"}).data[0]
    assert event.data.object["attempt_count"] == 1


def test_a_declining_test_payment_method_fails_the_payment(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_chargeDeclined"})


def test_voiding_an_open_invoice(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    voided = client.v1.invoices.void_invoice(invoice.id)
    assert voided.status == "void"
    assert voided.status_transitions.voided_at is not None


def test_voiding_a_draft_is_refused(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.void_invoice(_draft(client, customer).id)
    assert (
        raised.value.user_message == "You can only pass in open invoices. This invoice isn't open."
    )


def test_voiding_a_paid_invoice_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    paid = client.v1.invoices.pay(_draft(client, customer).id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(paid.id)


def test_an_uncollectible_invoice_can_still_be_paid(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    marked = client.v1.invoices.mark_uncollectible(invoice.id)
    assert marked.status == "uncollectible"
    assert client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True}).status == "paid"


def test_sending_an_invoice_emits_invoice_sent(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _draft(client, customer, collection_method="send_invoice", days_until_due=30)
    sent = client.v1.invoices.send_invoice(invoice.id)
    assert sent.status == "open"
    assert client.v1.events.list(params={"type": "invoice.sent"}).data[0].data.object["id"] == (
        invoice.id
    )


def test_only_drafts_can_be_deleted(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    draft = _draft(client, customer)
    assert client.v1.invoices.delete(draft.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.retrieve(draft.id)
    assert missing.value.http_status == 404
    final = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.delete(final.id)
    assert raised.value.user_message == "You can only delete draft invoices."


def test_a_finalized_invoice_accepts_metadata_but_not_description(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    final = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    assert client.v1.invoices.update(final.id, params={"metadata": {"a": "1"}}).metadata
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.update(final.id, params={"description": "x"})
    assert raised.value.param == "description"


def test_updating_a_draft_emits_invoice_updated_with_previous_attributes(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    draft = _draft(client, customer)
    client.v1.invoices.update(draft.id, params={"description": "Q1"})
    event = client.v1.events.list(params={"type": "invoice.updated"}).data[0]
    assert event.data.to_dict()["previous_attributes"] == {"description": None}


def test_invoices_list_filters_by_status_customer_and_created(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    draft = _draft(client, customer)
    clock.advance(100)
    final = client.v1.invoices.finalize_invoice(_draft(client, customer).id)
    by_status = client.v1.invoices.list(params={"status": "open", "customer": customer.id})
    assert [i.id for i in by_status.data] == [final.id]
    early = client.v1.invoices.list(params={"created": {"lt": START + 100}})
    assert [i.id for i in early.data] == [draft.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.list(params={"status": "bogus"})  # type: ignore[typeddict-item]


def test_invoice_lines_can_be_listed(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _draft(client, customer)
    lines = client.v1.invoices.line_items.list(invoice.id)
    assert [line.amount for line in lines.data] == [1500]


def test_expanding_the_customer_of_an_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.retrieve(
        _draft(client, customer).id, params={"expand": ["customer"]}
    )
    assert isinstance(invoice.customer, stripe.Customer)
    assert invoice.customer.email == "ada@example.com"


def test_a_manual_auto_advance_draft_is_finalized_and_charged_by_the_engine(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    clock: FakeClock,
) -> None:
    invoice = _draft(client, customer, auto_advance=True)
    assert invoice.automatically_finalizes_at == START + 3600
    clock.advance(3600)
    sandbox.run_billing()
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"


def test_an_invoice_item_in_a_second_currency_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 100, "currency": "usd"}
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "amount": 100, "currency": "eur"}
        )
    assert "combine currencies" in str(raised.value)
