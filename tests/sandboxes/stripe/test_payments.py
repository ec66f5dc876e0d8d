"""Payment methods, automatic charging, declines and retries, 3-D Secure, refunds."""

from __future__ import annotations

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, FakeClock

FEB_1 = START + 31 * DAY


def _customer_paying_with(client: stripe.StripeClient, test_value: str) -> stripe.Customer:
    return client.v1.customers.create(
        params={
            "email": "payer@example.com",
            "payment_method": test_value,
            "invoice_settings": {"default_payment_method": test_value},
        }
    )


def _open_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 2500
) -> stripe.Invoice:
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": amount, "currency": "usd"}
    )
    draft = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    return client.v1.invoices.finalize_invoice(draft.id)


def _types(client: stripe.StripeClient) -> list[str]:
    return [str(e.type) for e in client.v1.events.list(params={"limit": 100}).data][::-1]


# -- payment methods ------------------------------------------------------------------------------


def test_attaching_a_test_payment_method_creates_a_new_one_on_the_customer(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    attached = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert attached.id.startswith("pm_") and attached.id != "pm_card_visa"
    assert attached.customer == customer.id
    assert attached.card is not None
    assert (attached.card.brand, attached.card.last4) == ("visa", "4242")
    listed = client.v1.customers.payment_methods.list(customer.id).data
    assert attached.id in [pm.id for pm in listed]
    assert "payment_method.attached" in _types(client)


def test_a_card_that_always_declines_cannot_be_attached(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert raised.value.code == "card_declined"


def test_detaching_the_default_payment_method_clears_the_default(
    client: stripe.StripeClient,
) -> None:
    customer = _customer_paying_with(client, "pm_card_visa")
    default = str(customer.invoice_settings.default_payment_method)
    client.v1.payment_methods.detach(default)
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert "payment_method.detached" in _types(client)


def test_a_default_payment_method_must_belong_to_the_customer(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    loose = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": loose.id}}
        )
    assert raised.value.code == "resource_missing"


def test_a_us_bank_account_payment_method(client: stripe.StripeClient) -> None:
    pm = client.v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "us_bank_account": {
                "routing_number": "110000000",
                "account_number": "000123456789",
                "account_holder_type": "company",
            },
            "billing_details": {"name": "Acme Inc."},
        }
    )
    assert pm.type == "us_bank_account"
    assert pm.us_bank_account is not None
    assert (pm.us_bank_account.last4, pm.us_bank_account.account_holder_type) == (
        "6789",
        "company",
    )


def test_a_token_source_becomes_the_customers_default_card(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"source": "tok_mastercard"})
    assert str(customer.default_source).startswith("card_")
    invoice = client.v1.invoices.pay(_open_invoice(client, customer).id)
    assert invoice.status == "paid"
    charge = client.v1.charges.list(params={"customer": customer.id}).data[0]
    assert charge.source is not None and charge.source.id == customer.default_source


def test_a_setup_intent_confirmed_with_a_test_card_attaches_it(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    intent = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    assert intent.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(str(intent.payment_method))
    assert pm.customer == customer.id


def test_a_setup_intent_with_a_declining_card_fails(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError):
        client.v1.setup_intents.create(
            params={"payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
    assert "setup_intent.setup_failed" in _types(client)


# -- charging -------------------------------------------------------------------------------------


def test_an_unknown_payment_method_is_resource_missing(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_doesnotexist"})
    assert (raised.value.http_status, raised.value.code) == (400, "resource_missing")
    assert client.v1.invoices.retrieve(invoice.id).status == "open"


def test_paying_without_any_payment_method_is_refused(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.pay(invoice.id)
    assert "no attached payment source or default payment method" in str(raised.value)


def test_automatic_charging_collects_the_default_payment_method_after_finalizing(
    sandbox: StripeSandbox, client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 2500, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "pending_invoice_items_behavior": "include",
            "auto_advance": True,
        }
    )
    clock.advance(3600)  # Stripe finalizes an auto_advance draft an hour after creation
    sandbox.run_billing()
    paid = client.v1.invoices.retrieve(invoice.id)
    assert (paid.status, paid.amount_paid, paid.attempt_count) == ("paid", 2500, 1)
    payment = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data[0]
    assert (payment.status, payment.amount_paid, payment.is_default) == ("paid", 2500, True)
    assert payment.payment.payment_intent is not None
    intent = client.v1.payment_intents.retrieve(str(payment.payment.payment_intent))
    assert (intent.status, intent.amount_received) == ("succeeded", 2500)
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.status, charge.paid, charge.amount) == ("succeeded", True, 2500)
    assert charge.payment_method == customer.invoice_settings.default_payment_method
    assert [t for t in _types(client) if t in ("charge.succeeded", "payment_intent.succeeded")] == [
        "charge.succeeded",
        "payment_intent.succeeded",
    ]


def test_a_subscription_charges_its_first_invoice_at_once(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": recurring_price.id}],
            "expand": ["latest_invoice"],
        }
    )
    assert sub.status == "active"
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert sub.latest_invoice.status == "paid"


def test_a_declined_first_payment_leaves_the_subscription_incomplete(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    customer = _customer_paying_with(client, "pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    assert sub.status == "incomplete"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert "invoice.payment_failed" in _types(client)
    assert "charge.failed" in _types(client)


def test_error_if_incomplete_refuses_and_keeps_nothing(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    customer = _customer_paying_with(client, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": recurring_price.id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []


def test_a_declined_renewal_is_retried_on_stripes_schedule_and_recovers(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    on_clock = client.v1.customers.create(
        params={
            "test_clock": clock.id,
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": on_clock.id, "items": [{"price": recurring_price.id}]}
    )
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": on_clock.id}
    )
    client.v1.customers.update(
        on_clock.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 7200})
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.status, renewal.attempt_count) == ("open", 1)
    first_attempt = FEB_1 + 3600
    assert renewal.next_payment_attempt == first_attempt + 3 * DAY
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    working = client.v1.payment_methods.attach("pm_card_visa", params={"customer": on_clock.id})
    client.v1.customers.update(
        on_clock.id, params={"invoice_settings": {"default_payment_method": working.id}}
    )
    client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": first_attempt + 3 * DAY}
    )
    retried = client.v1.invoices.retrieve(renewal.id)
    assert (retried.status, retried.attempt_count) == ("paid", 2)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_when_every_retry_fails_the_subscription_is_canceled(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    on_clock = client.v1.customers.create(params={"test_clock": clock.id, "source": "tok_visa"})
    sub = client.v1.subscriptions.create(
        params={"customer": on_clock.id, "items": [{"price": recurring_price.id}]}
    )
    client.v1.customers.update(on_clock.id, params={"source": "tok_chargeCustomerFail"})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 20 * DAY})
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled"
    assert ended.cancellation_details is not None
    assert ended.cancellation_details.reason == "payment_failed"
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.status, renewal.attempt_count, renewal.next_payment_attempt) == (
        "open",
        4,
        None,
    )


def test_three_d_secure_required_asks_for_authentication(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.invoices.pay(
            invoice.id, params={"payment_method": "pm_card_threeDSecure2Required"}
        )
    assert raised.value.code == "invoice_payment_intent_requires_action"
    still_open = client.v1.invoices.retrieve(invoice.id)
    assert still_open.status == "open"
    assert "invoice.payment_action_required" in _types(client)
    payment = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data[0]
    intent = client.v1.payment_intents.retrieve(str(payment.payment.payment_intent))
    assert intent.status == "requires_action"
    assert intent.next_action is not None and intent.next_action.type == "use_stripe_sdk"


def test_a_subscription_needing_authentication_is_incomplete(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    customer = _customer_paying_with(client, "pm_card_threeDSecure2Required")
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    assert sub.status == "incomplete"
    assert "invoice.payment_action_required" in _types(client)


# -- refunds ---------------------------------------------------------------------------------------


def _paid_charge(client: stripe.StripeClient, customer: stripe.Customer) -> stripe.Charge:
    invoice = client.v1.invoices.pay(_open_invoice(client, customer, 5000).id)
    assert invoice.status == "paid"
    return client.v1.charges.list(params={"customer": customer.id}).data[0]


def test_a_partial_refund_on_a_charge(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    charge = _paid_charge(client, customer)
    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 1200})
    assert (refund.status, refund.amount, refund.charge) == ("succeeded", 1200, charge.id)
    after = client.v1.charges.retrieve(charge.id)
    assert (after.amount_refunded, after.refunded) == (1200, False)
    assert {"refund.created", "charge.refunded"} <= set(_types(client))


def test_refunding_the_rest_by_payment_intent_refunds_the_charge_fully(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    charge = _paid_charge(client, customer)
    client.v1.refunds.create(params={"charge": charge.id, "amount": 1000})
    rest = client.v1.refunds.create(params={"payment_intent": str(charge.payment_intent)})
    assert rest.amount == 4000
    after = client.v1.charges.retrieve(charge.id)
    assert (after.amount_refunded, after.refunded) == (5000, True)


def test_refunding_more_than_remains_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    charge = _paid_charge(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 5001})
    assert raised.value.code == "amount_too_large"


def test_a_scheduled_subscription_canceled_for_non_payment_aborts_its_schedule(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    on_clock = client.v1.customers.create(params={"test_clock": clock.id, "source": "tok_visa"})
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": on_clock.id,
            "start_date": "now",
            "phases": [
                {"items": [{"price": recurring_price.id}], "duration": {"interval": "year"}}
            ],
        }
    )
    client.v1.customers.update(on_clock.id, params={"source": "tok_chargeCustomerFail"})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 20 * DAY})
    aborted = client.v1.subscription_schedules.retrieve(schedule.id)
    assert aborted.status == "canceled"
    assert "subscription_schedule.aborted" in _types(client)


def test_a_credit_note_can_carry_a_refund_of_the_invoice_payment(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.pay(_open_invoice(client, customer, 5000).id)
    note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 2000, "refund_amount": 2000}
    )
    assert note.refunds[0].amount_refunded == 2000
    refund = client.v1.refunds.retrieve(str(note.refunds[0].refund))
    assert refund.amount == 2000
    charge = client.v1.charges.retrieve(str(refund.charge))
    assert charge.amount_refunded == 2000


def test_a_refund_on_a_credit_note_needs_a_stripe_payment(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.pay(
        _open_invoice(client, customer).id, params={"paid_out_of_band": True}
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 100, "refund_amount": 100}
        )
    assert raised.value.param == "refund_amount"
