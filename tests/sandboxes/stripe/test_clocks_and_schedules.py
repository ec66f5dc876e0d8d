"""Test clocks driving the billing engine, and subscription schedules."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, WITH_CARD, FakeClock, Receiver

FEB_1 = START + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
APR_1 = MAR_1 + 31 * DAY


@pytest.fixture
def test_clock(client: stripe.StripeClient) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": START, "name": "renewals"}
    )


@pytest.fixture
def clocked_customer(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> stripe.Customer:
    return client.v1.customers.create(
        params={"email": "clock@example.com", "test_clock": test_clock.id, **WITH_CARD}
    )


def _advance(client: stripe.StripeClient, clock_id: str, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})


def test_a_test_clock_is_created_retrieved_listed_and_deleted(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> None:
    assert test_clock.id.startswith("clock_")
    assert (test_clock.frozen_time, test_clock.status) == (START, "ready")
    assert client.v1.test_helpers.test_clocks.retrieve(test_clock.id).name == "renewals"
    listed = client.v1.test_helpers.test_clocks.list().data
    assert [c.id for c in listed] == [test_clock.id]
    assert client.v1.test_helpers.test_clocks.delete(test_clock.id).deleted is True


def test_objects_of_a_clock_customer_are_created_at_the_frozen_time(
    client: stripe.StripeClient, clocked_customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": clocked_customer.id, "items": [{"price": recurring_price.id}]}
    )
    assert clocked_customer.created == START
    assert sub.created == START
    assert sub.test_clock is not None


def test_advancing_a_clock_generates_every_renewal_invoice_in_between(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={
            "customer": clocked_customer.id,
            "items": [{"price": recurring_price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    _advance(client, test_clock.id, APR_1 + 2 * 3600)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert sorted(i.created for i in invoices) == [START, FEB_1, MAR_1, APR_1]
    assert {i.status for i in invoices} == {"open"}
    item = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert item.current_period_start == APR_1


def test_advancing_reports_advancing_then_becomes_ready_with_the_new_time(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> None:
    response = client.v1.test_helpers.test_clocks.advance(
        test_clock.id, params={"frozen_time": FEB_1}
    )
    assert response.status == "advancing"
    ready = client.v1.test_helpers.test_clocks.retrieve(test_clock.id)
    assert (ready.status, ready.frozen_time) == ("ready", FEB_1)
    types = [e.type for e in client.v1.events.list(params={"type": "test_helpers.*"}).data]
    assert types[0] == "test_helpers.test_clock.ready"


def test_advancing_a_clock_backwards_is_refused(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        _advance(client, test_clock.id, START - 1)
    assert raised.value.param == "frozen_time"


def test_renewal_events_are_stamped_with_the_clock_time_and_delivered(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
    receiver: Receiver,
) -> None:
    client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["invoice.created"]}
    )
    client.v1.subscriptions.create(
        params={"customer": clocked_customer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock.id, FEB_1)
    sandbox.deliver_webhooks()
    assert [r.event["created"] for r in receiver.received] == [START, FEB_1]


def test_a_clock_does_not_move_customers_without_a_clock(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock.id, MAR_1)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1


def test_a_schedule_in_the_future_waits_then_creates_its_subscription(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": clocked_customer.id,
            "start_date": FEB_1,
            "end_behavior": "release",
            "phases": [
                {
                    "items": [{"price": recurring_price.id, "quantity": 2}],
                    "duration": {"interval": "month", "interval_count": 2},
                }
            ],
        }
    )
    assert schedule.id.startswith("sub_sched_")
    assert (schedule.status, schedule.subscription) == ("not_started", None)
    assert schedule.phases[0].end_date == APR_1
    _advance(client, test_clock.id, FEB_1)
    started = client.v1.subscription_schedules.retrieve(schedule.id)
    assert started.status == "active"
    sub = client.v1.subscriptions.retrieve(
        str(started.subscription), params={"expand": ["latest_invoice"]}
    )
    assert sub.start_date == FEB_1
    assert sub.schedule == schedule.id
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert sub.latest_invoice.amount_due == 4000


def test_a_schedule_with_end_behavior_release_completes_and_releases_at_its_end(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": clocked_customer.id,
            "start_date": "now",
            "end_behavior": "release",
            "phases": [{"items": [{"price": recurring_price.id}], "end_date": FEB_1}],
        }
    )
    sub_id = str(schedule.subscription)
    _advance(client, test_clock.id, FEB_1)
    done = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (done.status, done.completed_at) == ("completed", FEB_1)
    assert (done.subscription, done.released_subscription) == (None, sub_id)
    sub = client.v1.subscriptions.retrieve(sub_id)
    assert (sub.status, sub.schedule) == ("active", None)
    assert client.v1.events.list(params={"type": "subscription_schedule.completed"}).data


def test_a_schedule_warns_seven_days_before_it_expires(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    client.v1.subscription_schedules.create(
        params={
            "customer": clocked_customer.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "phases": [{"items": [{"price": recurring_price.id}], "end_date": FEB_1}],
        }
    )
    _advance(client, test_clock.id, FEB_1 - 8 * DAY)
    assert client.v1.events.list(params={"type": "subscription_schedule.expiring"}).data == []
    _advance(client, test_clock.id, FEB_1 - 6 * DAY)
    expiring = client.v1.events.list(params={"type": "subscription_schedule.expiring"}).data
    assert [e.created for e in expiring] == [FEB_1 - 7 * DAY]


def test_a_schedule_with_end_behavior_cancel_cancels_and_completes(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": clocked_customer.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "phases": [
                {"items": [{"price": recurring_price.id}], "duration": {"interval": "month"}}
            ],
        }
    )
    _advance(client, test_clock.id, FEB_1 + DAY)
    done = client.v1.subscription_schedules.retrieve(schedule.id)
    assert done.status == "completed"
    sub = client.v1.subscriptions.retrieve(str(done.subscription))
    assert (sub.status, sub.ended_at) == ("canceled", FEB_1)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1


def test_a_schedule_moves_to_its_next_phase(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    bigger = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 3000,
            "recurring": {"interval": "month"},
            "product": str(recurring_price.product),
        }
    )
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": clocked_customer.id,
            "start_date": "now",
            "default_settings": {
                "collection_method": "send_invoice",
                "invoice_settings": {"days_until_due": 15},
            },
            "phases": [
                {"items": [{"price": recurring_price.id}], "duration": {"interval": "month"}},
                {
                    "items": [{"price": bigger.id}],
                    "duration": {"interval": "month"},
                    "metadata": {"phase": "2"},
                },
            ],
        }
    )
    _advance(client, test_clock.id, FEB_1)
    sub = client.v1.subscriptions.retrieve(
        str(schedule.subscription), params={"expand": ["latest_invoice"]}
    )
    assert sub["items"].data[0].price.id == bigger.id
    assert sub.metadata.to_dict() == {"phase": "2"}
    assert sub.collection_method == "send_invoice"
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert sub.latest_invoice.amount_due == 3000


def test_schedule_phase_add_invoice_items_and_collection_settings_apply(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "phases": [
                {
                    "items": [{"price": recurring_price.id}],
                    "add_invoice_items": [{"price": one_time_price.id}],
                    "collection_method": "send_invoice",
                    "invoice_settings": {"days_until_due": 10},
                    "duration": {"interval": "year"},
                }
            ],
        }
    )
    sub = client.v1.subscriptions.retrieve(
        str(schedule.subscription), params={"expand": ["latest_invoice"]}
    )
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert sub.latest_invoice.amount_due == 7000
    assert sub.latest_invoice.due_date == START + 10 * DAY


def test_a_phases_discounts_show_on_the_schedule_and_bill(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    off = client.v1.coupons.create(params={"amount_off": 500, "currency": "usd"}).id
    half = client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"}).id
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "phases": [
                {
                    "items": [{"price": recurring_price.id, "discounts": [{"coupon": half}]}],
                    "add_invoice_items": [
                        {"price": one_time_price.id, "discounts": [{"coupon": off}]}
                    ],
                    "duration": {"interval": "year"},
                }
            ],
        }
    )
    phase = schedule.phases[0]
    assert [d.coupon for d in phase["add_invoice_items"][0].discounts] == [off]
    assert [d.coupon for d in phase["items"][0].discounts] == [half]
    assert phase["add_invoice_items"][0].discounts[0].promotion_code is None
    sub = client.v1.subscriptions.retrieve(
        str(schedule.subscription), params={"expand": ["latest_invoice"]}
    )
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert sub.latest_invoice.amount_due == 7000 - 500 - 1000  # 20.00 halved, 5.00 off 50.00


def test_phase_iterations_is_rejected_as_removed_in_2025_09_30(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscription_schedules.create(
            params={
                "customer": customer.id,
                "start_date": "now",
                "phases": [{"items": [{"price": recurring_price.id}], "iterations": 3}],
            }
        )  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"
    assert raised.value.param == "phases[0][iterations]"


def test_canceling_a_schedule_cancels_its_subscription(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "phases": [{"items": [{"price": recurring_price.id}]}],
        }
    )
    canceled = client.v1.subscription_schedules.cancel(schedule.id)
    assert canceled.status == "canceled"
    assert client.v1.subscriptions.retrieve(str(schedule.subscription)).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.release(schedule.id)


def test_releasing_a_schedule_keeps_its_subscription(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "phases": [{"items": [{"price": recurring_price.id}]}],
        }
    )
    released = client.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released"
    sub = client.v1.subscriptions.retrieve(str(released.released_subscription))
    assert (sub.status, sub.schedule) == ("active", None)


def test_schedules_are_listed_by_customer(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": START + 5 * DAY,
            "phases": [{"items": [{"price": recurring_price.id}]}],
        }
    )
    listed = client.v1.subscription_schedules.list(params={"customer": customer.id}).data
    assert [s.id for s in listed] == [schedule.id]


def test_real_time_schedules_start_when_the_engine_runs(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
    clock: FakeClock,
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": START + 5 * DAY,
            "phases": [{"items": [{"price": recurring_price.id}]}],
        }
    )
    clock.value = START + 5 * DAY
    sandbox.run_billing()
    assert client.v1.subscription_schedules.retrieve(schedule.id).status == "active"


def test_a_future_anchor_ends_the_first_period_and_a_backdated_whole_period_bills_in_full(
    client: stripe.StripeClient,
    clocked_customer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
) -> None:
    """Stripe: the first period ends at ``billing_cycle_anchor``; a backdated start is
    prorated against an imagined period starting on the backdated date, so a whole such
    period bills in full; ``cancel_at`` on a period end cancels without a stub."""
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount_decimal": "8333.3", "product_data": {"name": "X"},
                "recurring": {"interval": "month"}}
    )  # fmt: skip
    _advance(client, test_clock.id, START + 10 * 3600)  # 10:00 on Jan 1
    sub = client.v1.subscriptions.create(
        params={"customer": clocked_customer.id, "items": [{"price": price.id, "quantity": 10}],
                "collection_method": "send_invoice", "days_until_due": 30,
                "backdate_start_date": START, "billing_cycle_anchor": FEB_1,
                "cancel_at": APR_1}
    )  # fmt: skip
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (START, FEB_1)
    _advance(client, test_clock.id, APR_1 + DAY)
    invoices = client.v1.invoices.list(params={"customer": clocked_customer.id}).data
    assert sorted((i.period_end, i.total) for i in invoices) == [
        (START + 10 * 3600, 83333),
        (FEB_1, 83333),
        (MAR_1, 83333),
    ]
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_renewals_of_a_month_end_anchor_bill_whole_months(
    client: stripe.StripeClient,
    clocked_customer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    """Anchored on 31 January: 31 Jan to 28 Feb and 28 Feb to 31 Mar are whole months."""
    jan_31 = START + 30 * DAY
    _advance(client, test_clock.id, jan_31)
    sub = client.v1.subscriptions.create(
        params={"customer": clocked_customer.id, "items": [{"price": recurring_price.id}],
                "collection_method": "send_invoice", "days_until_due": 30}
    )  # fmt: skip
    _advance(client, test_clock.id, APR_1 + 30 * DAY)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert len(invoices) == 4
    assert {i.total for i in invoices} == {recurring_price.unit_amount}


def test_a_phases_payment_method_discounts_and_trial_reach_its_subscription(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    customer = client.v1.customers.create(
        params={"email": "phase@example.com", "test_clock": test_clock.id}
    )
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "forever"})
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": FEB_1,
            "end_behavior": "cancel",
            "phases": [
                {
                    "items": [{"price": recurring_price.id}],
                    "end_date": MAR_1 + 10 * DAY,
                    "collection_method": "charge_automatically",
                    "default_payment_method": card.id,
                    "discounts": [{"coupon": coupon.id}],
                    "trial_end": FEB_1 + 10 * DAY,
                }
            ],
        }
    )
    phase = schedule.phases[0]
    assert (phase.default_payment_method, phase.trial_end) == (card.id, FEB_1 + 10 * DAY)
    assert phase.discounts[0].coupon == coupon.id
    _advance(client, test_clock.id, FEB_1 + DAY)
    sub = client.v1.subscriptions.retrieve(
        str(client.v1.subscription_schedules.retrieve(schedule.id).subscription)
    )
    assert (sub.status, sub.default_payment_method, sub.trial_end) == (
        "trialing",
        card.id,
        FEB_1 + 10 * DAY,
    )
    assert len(sub.discounts) == 1
    _advance(client, test_clock.id, FEB_1 + 11 * DAY)
    paid = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub.id).latest_invoice))
    # The card is charged when the trial ends, 25% off the 20.00 price.
    assert (paid.status, paid.amount_paid) == ("paid", 1500)


def test_a_phases_trial_must_fall_within_it(
    client: stripe.StripeClient, customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="trial_end of phase 0"):
        client.v1.subscription_schedules.create(
            params={
                "customer": customer.id,
                "start_date": FEB_1,
                "phases": [
                    {
                        "items": [{"price": recurring_price.id}],
                        "end_date": MAR_1,
                        "trial_end": MAR_1 + DAY,
                    }
                ],
            }
        )


def _seats(client: stripe.StripeClient, customer: stripe.Customer, price: stripe.Price) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id, "quantity": 2}]}
    )


def test_from_subscription_makes_the_current_period_the_schedules_one_phase(
    client: stripe.StripeClient, clocked_customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _seats(client, clocked_customer, recurring_price)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert (schedule.status, schedule.subscription, schedule.end_behavior) == (
        "active",
        sub.id,
        "release",
    )
    [phase] = schedule.phases
    assert (phase.start_date, phase.end_date) == (START, FEB_1)
    assert [(i.price, i.quantity) for i in phase.items] == [(recurring_price.id, 2)]
    assert schedule.default_settings.collection_method == "charge_automatically"
    assert client.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert "already attached" in again.value.user_message


def test_from_subscription_takes_no_phases_and_keeps_an_end_date(
    client: stripe.StripeClient, clocked_customer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    sub = _seats(client, clocked_customer, recurring_price)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscription_schedules.create(
            params={
                "from_subscription": sub.id,
                "phases": [{"items": [{"price": recurring_price.id}]}],
            }
        )
    assert raised.value.param == "phases"
    client.v1.subscriptions.update(sub.id, params={"cancel_at": APR_1})
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert schedule.end_behavior == "cancel"
    assert schedule.phases[0].end_date == APR_1


def test_a_phase_starting_mid_period_changes_the_items_with_prorations_and_keeps_the_cycle(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    sub = _seats(client, clocked_customer, recurring_price)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    change = START + 15 * DAY  # 16 of January's 31 days are left
    updated = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "end_behavior": "release",
            "phases": [
                {
                    "items": [{"price": recurring_price.id, "quantity": 2}],
                    "start_date": schedule.phases[0].start_date,
                    "end_date": change,
                },
                {
                    "items": [{"price": recurring_price.id, "quantity": 5}],
                    "end_date": APR_1,
                    "proration_behavior": "create_prorations",
                },
            ],
        },
    )
    assert [(p.start_date, p.end_date) for p in updated.phases] == [
        (START, change),
        (change, APR_1),
    ]
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity == 2

    _advance(client, test_clock.id, change)
    now = client.v1.subscriptions.retrieve(sub.id)
    assert now["items"].data[0].quantity == 5
    assert now.billing_cycle_anchor == START
    assert now["items"].data[0].current_period_end == FEB_1
    assert now.latest_invoice == sub.latest_invoice  # nothing invoiced at the change

    _advance(client, test_clock.id, FEB_1)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    # 5 x 20.00 for February, plus 16/31 of January: 3 more seats (51.61 - 20.65).
    assert renewal.amount_due == 10000 + 5161 - 2065
    assert client.v1.subscription_schedules.retrieve(schedule.id).status == "active"


def test_a_phase_with_always_invoice_bills_the_change_when_it_starts(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    sub = _seats(client, clocked_customer, recurring_price)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    change = START + 15 * DAY
    client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "items": [{"price": recurring_price.id, "quantity": 2}],
                    "start_date": START,
                    "end_date": change,
                },
                {
                    "items": [{"price": recurring_price.id, "quantity": 5}],
                    "end_date": APR_1,
                    "proration_behavior": "always_invoice",
                },
            ],
        },
    )
    _advance(client, test_clock.id, change)
    now = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert isinstance(now.latest_invoice, stripe.Invoice)
    assert now.latest_invoice.billing_reason == "subscription_update"
    assert now.latest_invoice.amount_due == 5161 - 2065


def test_a_schedules_end_behavior_sets_its_subscriptions_end_and_phases_keep_its_defaults(
    client: stripe.StripeClient,
    test_clock: stripe.test_helpers.TestClock,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={
            "customer": clocked_customer.id,
            "items": [{"price": recurring_price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 14,
        }
    )
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert schedule.default_settings.invoice_settings.days_until_due == 14
    client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "cancel"})
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at == FEB_1
    client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {"items": [{"price": recurring_price.id}], "start_date": START, "end_date": FEB_1},
                {"items": [{"price": recurring_price.id, "quantity": 3}], "end_date": APR_1},
            ]
        },
    )
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at == APR_1
    _advance(client, test_clock.id, FEB_1)
    after = client.v1.subscriptions.retrieve(sub.id)
    assert (after["items"].data[0].quantity, after.collection_method) == (3, "send_invoice")
    assert after.days_until_due == 14


@pytest.mark.parametrize("change", [{"cancel_at_period_end": True}, {"cancel_at": APR_1}])
def test_a_scheduled_subscriptions_end_cannot_be_set_directly_until_released(
    client: stripe.StripeClient,
    clocked_customer: stripe.Customer,
    recurring_price: stripe.Price,
    change: dict[str, Any],
) -> None:
    sub = _seats(client, clocked_customer, recurring_price)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(sub.id, params=change)
    assert refused.value.user_message == (
        f"The subscription is managed by the subscription schedule `{schedule.id}`, and "
        "updating any cancelation behavior directly is not allowed. Please update the "
        "schedule instead."
    )
    client.v1.subscription_schedules.release(schedule.id)
    assert client.v1.subscriptions.update(sub.id, params=change).schedule is None
