"""The gateway reads why an invoice's payment failed, from the Stripe sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock


@pytest.fixture
def world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    w = make_world(f"sqlite:///{tmp_path / 'decline.sqlite3'}", clock).start()
    yield w
    w.stop()


def _open_invoice(client: stripe.StripeClient, payment_method: str) -> str:
    customer = client.v1.customers.create(params={"email": "decline@x.test"})
    method = client.v1.payment_methods.attach(payment_method, params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 1500, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "charge_automatically",
            "default_payment_method": method.id,
            "pending_invoice_items_behavior": "include",
        }
    )
    return str(invoice.id)


def _finalize_and_pay(client: stripe.StripeClient, invoice_id: str) -> None:
    try:
        client.v1.invoices.finalize_invoice(invoice_id)
        client.v1.invoices.pay(invoice_id)
    except stripe.CardError:
        pass  # the decline is what the test reads back


def test_a_declined_payment_is_explained_by_the_banks_reason(world: World) -> None:
    client = world.stripe_client()
    invoice_id = _open_invoice(client, "pm_card_chargeCustomerFail")
    _finalize_and_pay(client, invoice_id)
    assert world.runtime is not None
    assert world.runtime.stripe.payment_decline(invoice_id) == (
        "Your card was declined. (card_declined: generic_decline)"
    )


def test_an_invoice_without_a_failed_attempt_has_no_decline(world: World) -> None:
    client = world.stripe_client()
    invoice_id = _open_invoice(client, "pm_card_visa")
    client.v1.invoices.finalize_invoice(invoice_id)
    assert world.runtime is not None
    assert world.runtime.stripe.payment_decline(invoice_id) is None
