"""Subscriptions: creation with its first invoice, updates, cancellation and renewals."""

from __future__ import annotations

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, FakeClock

FEB_1 = START + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY


def _subscribe(
    client: stripe.StripeClient, customer: stripe.Customer, price: stripe.Price, **extra: object
) -> stripe.Subscription:
    params = {
        "customer": customer.id,
        "items": [{"price": price.id, "quantity": 3}],
        "collection_method": "send_invoice",
        "days_until_due": 30,
        "expand": ["latest_invoice"],
        **extra,
    }
    return client.v1.subscriptions.create(params=params)  # type: ignore[arg-type]


def _invoice(sub: stripe.Subscription) -> stripe.Invoice:
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    return sub.latest_invoice


def test_a_send_invoice_subscription_is_active_with_a_sent_first_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    assert sub.id.startswith("sub_")
    assert sub.status == "active"
    invoice = _invoice(sub)
    assert invoice.status == "open"
    assert invoice.billing_reason == "subscription_create"
    assert invoice.amount_due == 6000
    assert invoice.due_date == START + 30 * DAY
    assert invoice.number is not None
    sent = client.v1.events.list(params={"type": "invoice.sent"}).data
    assert [e.data.object["id"] for e in sent] == [invoice.id]


def test_the_first_invoice_names_its_subscription_in_its_parent_only(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    invoice = client.v1.invoices.retrieve(_invoice(sub).id)
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == sub.id
    # The top-level ``subscription`` field was removed in API 2025-03-31.
    assert "subscription" not in invoice.to_dict()


def test_items_carry_the_current_period(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    item = _subscribe(client, customer, recurring_price)["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (START, FEB_1)
    assert item.price.id == recurring_price.id
    assert item.quantity == 3


def test_add_invoice_items_are_billed_on_the_first_invoice_only(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    sub = _subscribe(
        client,
        customer,
        recurring_price,
        add_invoice_items=[{"price": one_time_price.id, "quantity": 1}],
    )
    invoice = _invoice(sub)
    assert sorted(line.amount for line in invoice.lines.data) == [5000, 6000]
    assert invoice.amount_due == 11_000


def test_payment_method_types_are_kept_on_the_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(
        client,
        customer,
        recurring_price,
        payment_settings={"payment_method_types": ["us_bank_account", "card"]},
    )
    assert _invoice(sub).payment_settings.payment_method_types == ["us_bank_account", "card"]


def test_a_charge_automatically_subscription_is_paid_at_once(
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
    assert _invoice(sub).status == "paid"


def test_a_declined_first_payment_leaves_the_subscription_incomplete(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    customer = client.v1.customers.create(params={"metadata": {"sandbox_fail_payments": "true"}})
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    assert sub.status == "incomplete"


def test_send_invoice_without_days_until_due_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": recurring_price.id}],
                "collection_method": "send_invoice",
            }
        )
    assert raised.value.param == "days_until_due"


def test_a_one_time_price_cannot_be_a_subscription_item(
    client: stripe.StripeClient, customer: stripe.Customer, one_time_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": one_time_price.id}]}
        )
    assert raised.value.param == "items[0][price]"


def test_a_missing_customer_is_refused_with_param_customer(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            params={"customer": "cus_nope", "items": [{"price": recurring_price.id}]}
        )
    assert (raised.value.code, raised.value.param) == ("resource_missing", "customer")


def test_expand_customer_on_a_subscription(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = client.v1.subscriptions.retrieve(
        _subscribe(client, customer, recurring_price).id,
        params={"expand": ["customer", "latest_invoice"]},
    )
    assert isinstance(sub.customer, stripe.Customer)
    assert isinstance(sub.latest_invoice, stripe.Invoice)


def test_metadata_update_emits_subscription_updated(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price, metadata={"deal": "D-1"})
    updated = client.v1.subscriptions.update(sub.id, params={"metadata": {"deal": "D-2"}})
    assert updated.metadata.to_dict() == {"deal": "D-2"}
    event = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert event.data.to_dict()["previous_attributes"] == {"metadata": {"deal": "D-1"}}


def test_cancelling_ends_the_subscription_now(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    clock.advance(DAY)
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    assert canceled.canceled_at == canceled.ended_at == START + DAY
    assert client.v1.events.list(params={"type": "customer.subscription.deleted"}).data


def test_list_hides_canceled_subscriptions_unless_asked(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    client.v1.subscriptions.cancel(sub.id)
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "all"}).data] == [sub.id]
    canceled = client.v1.subscriptions.list(params={"status": "canceled"}).data
    assert [s.id for s in canceled] == [sub.id]


def test_a_canceled_subscription_only_accepts_metadata(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    client.v1.subscriptions.cancel(sub.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert client.v1.subscriptions.update(sub.id, params={"metadata": {"a": "b"}}).metadata


def test_the_engine_generates_the_renewal_invoice_on_the_billing_date(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    clock.value = FEB_1
    sandbox.run_billing()
    renewed = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    invoice = _invoice(renewed)
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.status == "draft"
    assert invoice.created == FEB_1
    assert (invoice.period_start, invoice.period_end) == (START, FEB_1)
    assert renewed["items"].data[0].current_period_start == FEB_1
    assert renewed["items"].data[0].current_period_end == MAR_1


def test_a_renewal_draft_is_finalized_and_sent_an_hour_later(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    clock.value = FEB_1 + 3600
    sandbox.run_billing()
    invoice = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert invoice.status == "open"
    assert invoice.due_date == FEB_1 + 3600 + 30 * DAY


def test_an_unpaid_send_invoice_past_its_due_date_makes_the_subscription_past_due(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price, days_until_due=7)
    clock.value = START + 7 * DAY
    sandbox.run_billing()
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    client.v1.invoices.pay(_invoice(sub).id, params={"paid_out_of_band": True})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_a_failed_renewal_payment_makes_the_subscription_past_due(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    clock.value = FEB_1 + 3600
    sandbox.run_billing()
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    failed = client.v1.events.list(params={"type": "invoice.payment_failed"}).data
    assert len(failed) == 1


def test_cancel_at_cancels_on_that_date_without_renewing(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price, cancel_at=MAR_1)
    clock.value = MAR_1 + 10 * DAY
    sandbox.run_billing()
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled"
    assert ended.ended_at == MAR_1
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert sorted(i.billing_reason for i in invoices) == [
        "subscription_create",
        "subscription_cycle",
    ]


def test_a_cancel_at_inside_the_first_period_prorates_the_first_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    halfway = START + 31 * DAY // 2
    sub = _subscribe(client, customer, recurring_price, cancel_at=halfway)
    assert sub["items"].data[0].current_period_end == halfway
    assert _invoice(sub).amount_due == 3000


def test_cancel_at_period_end_cancels_when_the_period_ends(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (updated.cancel_at_period_end, updated.cancel_at) == (True, FEB_1)
    clock.value = FEB_1
    sandbox.run_billing()
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_pause_collection_keep_as_draft_leaves_renewals_in_draft(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    paused = client.v1.subscriptions.update(
        sub.id, params={"pause_collection": {"behavior": "keep_as_draft"}}
    )
    assert paused.pause_collection is not None
    assert paused.pause_collection.behavior == "keep_as_draft"
    assert paused.status == "active"
    clock.value = FEB_1 + 2 * DAY
    sandbox.run_billing()
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (renewal.status, renewal.auto_advance) == ("draft", False)


@pytest.mark.parametrize(
    ("behavior", "status"), [("void", "void"), ("mark_uncollectible", "uncollectible")]
)
def test_pause_collection_void_or_uncollectible_closes_each_renewal(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
    behavior: str,
    status: str,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    client.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": behavior}})  # type: ignore[typeddict-item]
    clock.value = FEB_1
    sandbox.run_billing()
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.status == status


def test_clearing_pause_collection_with_an_empty_string_resumes_collection(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    client.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void"}})
    resumed = client.v1.subscriptions.update(sub.id, params={"pause_collection": ""})
    assert resumed.pause_collection is None


def test_pause_collection_resumes_at_resumes_at(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    client.v1.subscriptions.update(
        sub.id, params={"pause_collection": {"behavior": "void", "resumes_at": START + 10 * DAY}}
    )
    clock.value = START + 10 * DAY
    sandbox.run_billing()
    assert client.v1.subscriptions.retrieve(sub.id).pause_collection is None


def test_changing_quantity_applies_to_the_next_invoice(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    item_id = sub["items"].data[0].id
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item_id, "quantity": 5}], "proration_behavior": "none"}
    )
    clock.value = FEB_1
    sandbox.run_billing()
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.amount_due == 10_000


def test_subscriptions_list_filters_by_customer_and_status(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    other = client.v1.customers.create()
    _subscribe(client, other, recurring_price)
    mine = client.v1.subscriptions.list(params={"customer": customer.id, "status": "active"})
    assert [s.id for s in mine.data] == [sub.id]


def test_invoices_can_expand_their_subscription_in_lists(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _subscribe(client, customer, recurring_price)
    page = client.v1.invoices.list(
        params={
            "subscription": sub.id,
            "expand": ["data.parent.subscription_details.subscription", "data.customer"],
        }
    )
    expanded = page.data[0].to_dict()
    assert expanded["parent"]["subscription_details"]["subscription"]["id"] == sub.id
    assert expanded["customer"]["id"] == customer.id
