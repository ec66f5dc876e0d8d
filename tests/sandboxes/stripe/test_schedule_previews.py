"""``create_preview`` with ``schedule`` / ``schedule_details``: the next invoice of a
subscription schedule as it is, or as the details would change it, equal (but for ids) to the
invoice the test clock then makes."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .conftest import DAY, START, WITH_CARD

FEB_1 = START + 31 * DAY
JAN_16 = START + 15 * DAY


@pytest.fixture
def test_clock(client: stripe.StripeClient) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})


@pytest.fixture
def payer(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> stripe.Customer:
    return client.v1.customers.create(params={"test_clock": test_clock.id, **WITH_CARD})


@pytest.fixture
def gold(client: stripe.StripeClient, recurring_price: stripe.Price) -> stripe.Price:
    """A dearer monthly price of the same product (3,000 a month against 2,000)."""
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 3000,
            "recurring": {"interval": "month"},
            "product": str(recurring_price.product),
        }
    )


def _summary(invoice: stripe.Invoice) -> tuple[Any, ...]:
    return (
        invoice.total,
        invoice.amount_due,
        invoice.billing_reason,
        sorted(
            (line.amount, str(line.description), line.period.start, line.period.end)
            for line in invoice.lines.data
        ),
    )


def _scheduled(
    client: stripe.StripeClient, payer: stripe.Customer, price: stripe.Price
) -> stripe.SubscriptionSchedule:
    """A subscription of two of ``price`` from 1 January, managed by a schedule made from it."""
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price.id, "quantity": 2}]}
    )
    return client.v1.subscription_schedules.create(params={"from_subscription": sub.id})


def _later_phase(
    schedule: stripe.SubscriptionSchedule, price: stripe.Price, starts: int, **extra: Any
) -> dict[str, Any]:
    current = schedule.phases[0]
    return {
        "phases": [
            {
                "start_date": current.start_date,
                "end_date": starts,
                "items": [{"price": str(i.price), "quantity": i.quantity} for i in current.items],
            },
            {
                "items": [{"price": price.id, "quantity": 3}],
                "end_date": starts + 59 * DAY,
                **extra,
            },
        ],
        "end_behavior": "release",
        "proration_behavior": "none",
    }


def _advance(client: stripe.StripeClient, clock: stripe.test_helpers.TestClock, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})


def _last_invoice(client: stripe.StripeClient, schedule_id: str) -> stripe.Invoice:
    schedule = client.v1.subscription_schedules.retrieve(schedule_id)
    sub = str(schedule.subscription or schedule.released_subscription)
    return client.v1.invoices.list(params={"subscription": sub}).data[0]


def test_a_phase_from_the_period_end_is_previewed_as_the_invoice_it_makes(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
    gold: stripe.Price,
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    details = _later_phase(schedule, gold, FEB_1)
    preview = client.v1.invoices.create_preview(
        params={"customer": payer.id, "schedule": schedule.id, "schedule_details": details}
    )
    assert (preview.total, preview.billing_reason) == (3 * 3000, "subscription_cycle")
    # The preview changed nothing: the schedule still has its one phase.
    assert len(client.v1.subscription_schedules.retrieve(schedule.id).phases) == 1
    client.v1.subscription_schedules.update(schedule.id, params=details)
    _advance(client, test_clock, FEB_1)
    assert _summary(preview) == _summary(_last_invoice(client, schedule.id))


def test_a_prorated_phase_inside_a_period_is_previewed_on_the_renewal(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
    gold: stripe.Price,
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    details = _later_phase(schedule, gold, JAN_16, proration_behavior="create_prorations")
    preview = client.v1.invoices.create_preview(
        params={"schedule": schedule.id, "schedule_details": details}
    )
    prorations = [line.amount for line in preview.lines.data if line.amount < 0]
    assert prorations, "the unused time of the old items is credited"
    client.v1.subscription_schedules.update(schedule.id, params=details)
    _advance(client, test_clock, FEB_1)
    assert _summary(preview) == _summary(_last_invoice(client, schedule.id))


def test_a_schedule_without_details_previews_its_next_invoice(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    preview = client.v1.invoices.create_preview(params={"schedule": schedule.id})
    _advance(client, test_clock, FEB_1)
    assert preview.total == 2 * 2000
    assert _summary(preview) == _summary(_last_invoice(client, schedule.id))


def test_invoice_items_are_on_a_schedules_previewed_invoice(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    preview = client.v1.invoices.create_preview(
        params={
            "schedule": schedule.id,
            "invoice_items": [{"price": one_time_price.id, "quantity": 1}],
        }
    )
    assert preview.total == 2 * 2000 + 5000
    client.v1.invoice_items.create(
        params={"customer": payer.id, "pricing": {"price": one_time_price.id}}
    )
    _advance(client, test_clock, FEB_1)
    assert _summary(preview) == _summary(_last_invoice(client, schedule.id))


def test_details_for_a_customer_preview_a_new_schedules_first_invoice(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    details: Any = {
        "phases": [{"items": [{"price": recurring_price.id, "quantity": 4}]}],
        "end_behavior": "cancel",
    }
    preview = client.v1.invoices.create_preview(
        params={"customer": payer.id, "schedule_details": details}
    )
    assert client.v1.subscription_schedules.list(params={"customer": payer.id}).data == []
    created = client.v1.subscription_schedules.create(
        params={"customer": payer.id, "start_date": "now", **details}
    )
    assert preview.total == 4 * 2000
    assert _summary(preview) == _summary(_last_invoice(client, created.id))


_SD = "schedule_details"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"subscription": "sub_x"}, "subscription"),
        ({"subscription_details": {"proration_behavior": "none"}}, "subscription_details"),
        ({_SD: {"billing_mode": {"type": "flexible"}}}, f"{_SD}[billing_mode]"),
        ({_SD: {"phases": [{"pause_collection": "x"}]}}, f"{_SD}[phases][0][pause_collection]"),
        ({_SD: {"amendments": [{"x": "y"}]}}, f"{_SD}[amendments]"),
        ({_SD: {"end_behavior": "renew"}}, f"{_SD}[end_behavior]"),
        ({"discounts": [{"coupon": "co_x"}]}, "discounts"),
        ({"preview_mode": "recurring"}, "preview_mode"),
    ],
)
def test_what_a_schedule_preview_cannot_take_is_refused_by_name(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    recurring_price: stripe.Price,
    extra: dict[str, Any],
    param: str,
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.create_preview(params={"schedule": schedule.id, **extra})
    assert raised.value.http_status == 400
    assert raised.value.param == param


def test_a_schedule_that_cancels_before_billing_again_has_no_upcoming_invoice(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    schedule = _scheduled(client, payer, recurring_price)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.create_preview(
            params={"schedule": schedule.id, "schedule_details": {"end_behavior": "cancel"}}
        )
    assert raised.value.param == "schedule"
