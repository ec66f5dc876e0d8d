"""Billing overview metrics, one row per behaviour."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from connector.domain.metrics import (
    CreditNoteFacts,
    Discount,
    InvoiceFacts,
    PriceFacts,
    PriceInterval,
    SubscriptionFacts,
    SubscriptionItemFacts,
    average_billing_per_customer,
    monthly_amount,
    mrr,
    mrr_trend,
    net_billing,
    subscription_mrr,
)

WHEN = datetime(2025, 3, 15, tzinfo=UTC)


def it(
    amount: int,
    interval: PriceInterval | None = "month",
    count: int = 1,
    quantity: int = 1,
    currency: str = "usd",
) -> SubscriptionItemFacts:
    return SubscriptionItemFacts(PriceFacts(amount, currency, interval, count), quantity)


def sub(
    *items: SubscriptionItemFacts,
    status: str = "active",
    discounts: tuple[Discount, ...] = (),
    sub_id: str = "sub_1",
    start: datetime | None = None,
    ended_at: datetime | None = None,
) -> SubscriptionFacts:
    return SubscriptionFacts(
        id=sub_id,
        customer_id="cus_1",
        status=status,
        items=items,
        discounts=discounts,
        start=start,
        ended_at=ended_at,
    )


# --- monthly_amount --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(it(10000), Fraction(10000), id="monthly"),
        pytest.param(it(120000, "year"), Fraction(10000), id="yearly-divided-by-12"),
        pytest.param(it(30000, "month", 3), Fraction(10000), id="every-3-months"),
        pytest.param(it(60000, "month", 6), Fraction(10000), id="every-6-months"),
        pytest.param(it(240000, "year", 2), Fraction(10000), id="every-2-years"),
        pytest.param(it(1200, "week"), Fraction(1200 * 52, 12), id="weekly-times-52-over-12"),
        pytest.param(it(100, "day"), Fraction(100 * 365, 12), id="daily-times-365-over-12"),
        pytest.param(it(10000, quantity=3), Fraction(30000), id="quantity-multiplies"),
        pytest.param(it(100000, "year"), Fraction(100000, 12), id="stays-exact"),
        pytest.param(it(50000, None), Fraction(0), id="one-time-price-is-not-recurring"),
    ],
)
def test_monthly_amount(item: SubscriptionItemFacts, expected: Fraction) -> None:
    assert monthly_amount(item) == expected


# --- subscription_mrr ------------------------------------------------------------------------

SUB_ROWS = [
    pytest.param(sub(it(10000), it(120000, "year")), {"usd": 20000},
                 id="mixed-intervals-add-up"),
    pytest.param(sub(it(100000, "year")), {"usd": 8333}, id="rounded-once-at-the-end"),
    pytest.param(sub(it(100000, "year"), it(100000, "year")), {"usd": 16667},
                 id="rounding-after-summing-not-per-item"),
    pytest.param(sub(it(6, "year")), {"usd": 1}, id="half-rounds-up"),
    pytest.param(sub(it(10000, quantity=5)), {"usd": 50000}, id="quantities"),
    pytest.param(sub(it(10000), discounts=(Discount(percent_off=Decimal("20")),)),
                 {"usd": 8000}, id="percent-discount"),
    pytest.param(sub(it(10000), discounts=(Discount(percent_off=Decimal("12.5")),)),
                 {"usd": 8750}, id="fractional-percent-discount"),
    pytest.param(sub(it(10000), discounts=(Discount(percent_off=Decimal("50")),
                                           Discount(percent_off=Decimal("50")))),
                 {"usd": 2500}, id="percent-discounts-compound"),
    pytest.param(sub(it(10000), discounts=(Discount(amount_off=1500, currency="usd"),)),
                 {"usd": 8500}, id="amount-off-monthly"),
    pytest.param(sub(it(120000, "year"), discounts=(Discount(amount_off=12000,
                                                             currency="usd"),)),
                 {"usd": 9000}, id="amount-off-yearly-normalised-to-a-month"),
    pytest.param(sub(it(30000, "month", 3), discounts=(Discount(amount_off=3000),)),
                 {"usd": 9000}, id="amount-off-quarterly-without-currency-uses-the-subs"),
    pytest.param(sub(it(10000), discounts=(Discount(amount_off=1000, currency="usd"),
                                           Discount(percent_off=Decimal("10")))),
                 {"usd": 8000}, id="percent-before-amount-whatever-the-order"),
    pytest.param(sub(it(10000), discounts=(Discount(amount_off=50000, currency="usd"),)),
                 {"usd": 0}, id="discount-never-below-zero"),
    pytest.param(sub(it(10000), discounts=(Discount(amount_off=1000, currency="eur"),)),
                 {"usd": 10000}, id="amount-off-in-another-currency-ignored"),
    pytest.param(sub(it(10000), it(9000, currency="EUR")), {"eur": 9000, "usd": 10000},
                 id="currencies-side-by-side-lowercased"),
    pytest.param(sub(it(10000), it(9000, currency="eur"),
                     discounts=(Discount(amount_off=1000),)),
                 {"eur": 9000, "usd": 10000},
                 id="amount-off-without-currency-not-guessed-across-currencies"),
    pytest.param(sub(it(10000), it(50000, None)), {"usd": 10000},
                 id="one-time-items-ignored"),
    pytest.param(sub(it(10000), status="canceled"), {"usd": 10000},
                 id="status-not-judged-per-subscription"),
]  # fmt: skip


@pytest.mark.parametrize(("subscription", "expected"), SUB_ROWS)
def test_subscription_mrr(subscription: SubscriptionFacts, expected: dict[str, int]) -> None:
    assert subscription_mrr(subscription) == expected


# --- mrr over subscriptions ------------------------------------------------------------------

MRR_ROWS = [
    pytest.param([sub(it(10000))], {"usd": 10000}, id="active-counts"),
    pytest.param([sub(it(10000), status="past_due")], {"usd": 10000}, id="past-due-counts"),
    pytest.param([sub(it(10000), status="trialing")], {}, id="trialing-does-not-count"),
    pytest.param([sub(it(10000), status="canceled")], {}, id="canceled-does-not-count"),
    pytest.param([sub(it(10000), status="incomplete")], {}, id="incomplete-does-not-count"),
    pytest.param([sub(it(10000), status="unpaid")], {}, id="unpaid-does-not-count"),
    pytest.param([sub(it(10000), status="paused")], {}, id="paused-does-not-count"),
    pytest.param([sub(it(10000)), sub(it(120000, "year"), sub_id="sub_2")], {"usd": 20000},
                 id="subscriptions-add-up"),
    pytest.param([sub(it(10000)), sub(it(9000, currency="eur"), sub_id="sub_2"),
                  sub(it(500000, currency="jpy"), sub_id="sub_3")],
                 {"eur": 9000, "jpy": 500000, "usd": 10000},
                 id="several-currencies-never-summed"),
    pytest.param([sub(it(100000, "year")), sub(it(100000, "year"), sub_id="sub_2")],
                 {"usd": 16666}, id="total-is-the-sum-of-rounded-subscriptions"),
    pytest.param([], {}, id="no-subscriptions"),
]  # fmt: skip


@pytest.mark.parametrize(("subs", "expected"), MRR_ROWS)
def test_mrr(subs: list[SubscriptionFacts], expected: dict[str, int]) -> None:
    assert mrr(subs) == expected


# --- net billing -----------------------------------------------------------------------------


def invoice(total: int, status: str = "paid", currency: str = "usd") -> InvoiceFacts:
    return InvoiceFacts("in_1", "cus_1", status, currency, total, WHEN)


def credit_note(total: int, status: str = "issued", currency: str = "usd") -> CreditNoteFacts:
    return CreditNoteFacts("cn_1", "cus_1", currency, total, status, WHEN)


NET_ROWS = [
    pytest.param([invoice(10000)], [], {"usd": 10000}, id="paid-counts"),
    pytest.param([invoice(10000, "open")], [], {"usd": 10000}, id="open-counts"),
    pytest.param([invoice(10000, "uncollectible")], [], {"usd": 10000},
                 id="uncollectible-was-still-billed"),
    pytest.param([invoice(10000, "draft")], [], {}, id="draft-does-not-count"),
    pytest.param([invoice(10000, "void")], [], {}, id="void-does-not-count"),
    pytest.param([invoice(10000), invoice(5000, "void")], [], {"usd": 10000},
                 id="void-beside-paid"),
    pytest.param([invoice(10000)], [credit_note(2500)], {"usd": 7500},
                 id="credit-note-subtracted"),
    pytest.param([invoice(10000)], [credit_note(2500, "void")], {"usd": 10000},
                 id="void-credit-note-ignored"),
    pytest.param([invoice(10000), invoice(9000, currency="EUR")],
                 [credit_note(1000, currency="eur")], {"eur": 8000, "usd": 10000},
                 id="currencies-side-by-side"),
    pytest.param([], [credit_note(2500)], {"usd": -2500},
                 id="credit-note-without-invoices-in-the-period-is-negative"),
    pytest.param([], [], {}, id="nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("invoices", "notes", "expected"), NET_ROWS)
def test_net_billing(
    invoices: list[InvoiceFacts], notes: list[CreditNoteFacts], expected: dict[str, int]
) -> None:
    assert net_billing(invoices, notes) == expected


# --- average billing per customer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "customers", "expected"),
    [
        pytest.param({"usd": 30000}, 3, {"usd": 10000}, id="even"),
        pytest.param({"usd": 10000}, 3, {"usd": 3333}, id="rounded-down-below-half"),
        pytest.param({"usd": 5}, 2, {"usd": 3}, id="half-rounds-up"),
        pytest.param({"usd": 30000, "eur": 900}, 3, {"eur": 300, "usd": 10000},
                     id="per-currency"),
        pytest.param({"usd": 30000}, 0, {"usd": 0}, id="no-customers-is-zero"),
        pytest.param({}, 5, {}, id="no-billing"),
    ],
)  # fmt: skip
def test_average_billing_per_customer(
    net: dict[str, int], customers: int, expected: dict[str, int]
) -> None:
    assert average_billing_per_customer(net, customers) == expected


def test_negative_customer_count_is_refused() -> None:
    with pytest.raises(ValueError):
        average_billing_per_customer({"usd": 1}, -1)


# --- MRR trend -------------------------------------------------------------------------------

TODAY = date(2025, 3, 15)


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_trend_labels_are_the_last_n_months_oldest_first() -> None:
    labels = [label for label, _ in mrr_trend([], 12, TODAY)]
    assert labels[0] == "2024-04" and labels[-1] == "2025-03" and len(labels) == 12


TREND_ROWS = [
    pytest.param(sub(it(10000), start=at(2025, 1, 10)),
                 [{}, {"usd": 10000}, {"usd": 10000}, {"usd": 10000}],
                 id="counted-from-the-month-it-started"),
    pytest.param(sub(it(10000), status="canceled", start=at(2024, 11, 1),
                     ended_at=at(2025, 2, 10)),
                 [{"usd": 10000}, {"usd": 10000}, {}, {}],
                 id="canceled-counted-while-it-was-live"),
    pytest.param(sub(it(10000), status="canceled", start=at(2024, 11, 1),
                     ended_at=at(2025, 2, 1)),
                 [{"usd": 10000}, {"usd": 10000}, {}, {}],
                 id="ended-on-the-first-counts-in-the-month-before"),
    pytest.param(sub(it(10000), status="canceled", start=at(2024, 11, 1),
                     ended_at=at(2025, 3, 10)),
                 [{"usd": 10000}, {"usd": 10000}, {"usd": 10000}, {}],
                 id="ended-earlier-this-month-not-counted-now"),
    pytest.param(sub(it(10000), start=at(2025, 3, 20)),
                 [{}, {}, {}, {}], id="starting-after-today-not-counted"),
    pytest.param(sub(it(10000), start=None), [{}, {}, {}, {}], id="no-start-left-out"),
    pytest.param(sub(it(10000), status="trialing", start=at(2024, 1, 1)),
                 [{}, {}, {}, {}], id="trialing-left-out"),
    pytest.param(sub(it(10000), status="past_due", start=datetime(2025, 1, 31, 23, 0)),
                 [{}, {"usd": 10000}, {"usd": 10000}, {"usd": 10000}],
                 id="naive-start-taken-as-utc"),
]  # fmt: skip


@pytest.mark.parametrize(("subscription", "expected"), TREND_ROWS)
def test_mrr_trend(subscription: SubscriptionFacts, expected: list[dict[str, int]]) -> None:
    trend = mrr_trend([subscription], 4, TODAY)
    assert [label for label, _ in trend] == ["2024-12", "2025-01", "2025-02", "2025-03"]
    assert [values for _, values in trend] == expected


def test_trend_keeps_currencies_apart() -> None:
    subs = [
        sub(it(10000), start=at(2024, 1, 1)),
        sub(it(9000, currency="eur"), sub_id="sub_2", start=at(2024, 1, 1)),
    ]
    assert mrr_trend(subs, 1, TODAY) == [("2025-03", {"eur": 9000, "usd": 10000})]


def test_trend_needs_at_least_one_month() -> None:
    with pytest.raises(ValueError):
        mrr_trend([], 0, TODAY)
