"""The gateway's reads the figures depend on, against the Stripe sandbox: what a customer
owes (the credit exposure's open balance), refunds, a subscription's discounts and tiers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from connector.billing.gateway import StripeGateway, StripeRejected
from connector.billing.objects import plain
from sandboxes.stripe import StripeSandbox


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox().start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


@pytest.fixture
def gateway(sandbox: StripeSandbox) -> StripeGateway:
    client = stripe.StripeClient(
        "sk_test_gateway0123", base_addresses={"api": sandbox.url}, max_network_retries=0
    )
    return StripeGateway(client, dashboard_url="https://dashboard.stripe.com/test")


def _invoice(client: Any, customer: str, amount: int) -> Any:
    client.v1.invoice_items.create(
        params={"customer": customer, "amount": amount, "currency": "usd"}
    )
    draft = client.v1.invoices.create(
        params={"customer": customer, "collection_method": "send_invoice",
                "days_until_due": 30, "pending_invoice_items_behavior": "include"}
    )  # fmt: skip
    return client.v1.invoices.finalize_invoice(str(draft.id))


def test_the_open_balance_counts_open_and_uncollectible_invoices(gateway: StripeGateway) -> None:
    client = gateway.client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
    _invoice(client, customer, 10_000)
    written_off = _invoice(client, customer, 2_500)
    client.v1.invoices.mark_uncollectible(str(written_off.id))
    paid = _invoice(client, customer, 7_000)
    client.v1.invoices.pay(str(paid.id), params={"paid_out_of_band": True})
    void = _invoice(client, customer, 9_000)
    client.v1.invoices.void_invoice(str(void.id))
    assert gateway.open_balance(customer, "usd") == 12_500
    assert gateway.open_balance(customer, "eur") == 0


def test_refunds_are_listed_through_the_customers_charges(gateway: StripeGateway) -> None:
    client = gateway.client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
    invoice = _invoice(client, customer, 10_000)
    client.v1.invoices.pay(str(invoice.id), params={"payment_method": "pm_card_visa"})
    charge = client.v1.charges.list(params={"customer": customer}).data[0]
    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 1_500})
    listed = [plain(r) for r in gateway.iter_customer_refunds(customer)]
    assert [(r["id"], r["amount"]) for r in listed] == [(refund.id, 1_500)]
    fetched = plain(gateway.retrieve_refund(str(refund.id)))
    assert fetched["charge"]["customer"] == customer  # the charge names the customer


def test_a_subscription_is_read_with_its_discounts_coupons(gateway: StripeGateway) -> None:
    client = gateway.client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 1_000, "product_data": {"name": "Seat"},
                "recurring": {"interval": "month"}}
    )  # fmt: skip
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    sub = client.v1.subscriptions.create(
        params={"customer": customer, "items": [{"price": price.id, "quantity": 2}],
                "collection_method": "send_invoice", "days_until_due": 30,
                "discounts": [{"coupon": coupon.id}]}
    )  # fmt: skip
    data = plain(gateway.retrieve_subscription(str(sub.id)))
    (discount,) = data["discounts"]
    assert discount["source"]["coupon"]["percent_off"] == 20


def test_a_list_page_is_stripes_json_newest_first_and_resumable(gateway: StripeGateway) -> None:
    client = gateway.client
    made = [
        client.v1.customers.create(
            params={"email": f"ap{n}@acme.example", "metadata": {"n": str(n)}}
        ).id
        for n in range(3)
    ]

    first, more = gateway.list_page("customers", limit=2)
    rest, more_after = gateway.list_page("customers", starting_after=first[-1]["id"], limit=2)

    assert [c["id"] for c in first + rest] == list(reversed(made))
    assert (more, more_after) == (True, False)
    assert not isinstance(first[0], stripe.StripeObject)
    assert first[0]["metadata"] == {"n": "2"}
    assert first[0]["email"] == "ap2@acme.example"


def test_invoice_pages_are_stripes_json(gateway: StripeGateway) -> None:
    client = gateway.client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
    made = {_invoice(client, customer, amount).id for amount in (1_000, 2_000, 3_000)}

    pages = list(gateway.iter_invoice_pages({"customer": customer, "limit": 2}))

    assert [len(page) for page in pages] == [2, 1]
    assert {invoice["id"] for page in pages for invoice in page} == made
    assert sorted(invoice["amount_due"] for page in pages for invoice in page) == [
        1_000,
        2_000,
        3_000,
    ]


def test_an_invoice_read_as_json_is_what_the_stripe_object_gives(gateway: StripeGateway) -> None:
    client = gateway.client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
    made = _invoice(client, customer, 4_250)

    data = gateway.retrieve_invoice_data(str(made.id))

    assert data == plain(gateway.retrieve_invoice(str(made.id)))
    assert (data["id"], data["amount_due"], data["status"]) == (made.id, 4_250, "open")


def test_an_invoice_stripe_does_not_have_is_rejected_as_missing(gateway: StripeGateway) -> None:
    with pytest.raises(StripeRejected) as missing:
        gateway.retrieve_invoice_data("in_nonesuch")

    assert missing.value.code == "resource_missing"
