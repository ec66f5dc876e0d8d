"""Billing overview metrics, one row per behaviour."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from connector.domain.metrics import (
    CreditNoteFacts,
    Discount,
    InvoiceFacts,
    Period,
    PriceFacts,
    PriceInterval,
    RefundFacts,
    SubscriptionFacts,
    SubscriptionItemFacts,
    SubscriptionState,
    Tier,
    UnknownAmount,
    average_billing_per_customer,
    current_month,
    last_12_months,
    monthly_amount,
    mrr,
    mrr_trend,
    net_billing,
    open_balance,
    period_amount,
    subscription_mrr,
)
from connector.domain.money import round_half_up

WHEN = datetime(2025, 3, 15, tzinfo=UTC)


def it(
    amount: int | Decimal | None,
    interval: PriceInterval | None = "month",
    count: int = 1,
    quantity: int | None = 1,
    currency: str = "usd",
    *,
    product: str | None = None,
    usage_type: str = "licensed",
    discounts: tuple[Discount, ...] = (),
) -> SubscriptionItemFacts:
    price = PriceFacts(amount, currency, interval, count, usage_type=usage_type, product=product)
    return SubscriptionItemFacts(price, quantity, discounts)


def tiered(mode: str, quantity: int, tiers: tuple[Tier, ...] | None) -> SubscriptionItemFacts:
    price = PriceFacts(None, "usd", "month", billing_scheme="tiered", tiers_mode=mode, tiers=tiers)
    return SubscriptionItemFacts(price, quantity)


def sub(
    *items: SubscriptionItemFacts,
    status: str = "active",
    discounts: tuple[Discount, ...] = (),
    sub_id: str = "sub_1",
    start: datetime | None = None,
    ended_at: datetime | None = None,
    trial: tuple[datetime, datetime] | None = None,
    paused: bool = False,
    customer_discounts: tuple[Discount, ...] = (),
) -> SubscriptionFacts:
    return SubscriptionFacts(
        id=sub_id,
        customer_id="cus_1",
        status=status,
        items=items,
        discounts=discounts,
        customer_discounts=customer_discounts,
        start=start,
        ended_at=ended_at,
        trial_start=trial[0] if trial else None,
        trial_end=trial[1] if trial else None,
        collection_paused=paused,
    )


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def pct(value: str, **kw: object) -> Discount:
    return Discount(percent_off=Decimal(value), **kw)  # type: ignore[arg-type]


def off(amount: int, currency: str | None = "usd", **kw: object) -> Discount:
    return Discount(amount_off=amount, currency=currency, **kw)  # type: ignore[arg-type]


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
        pytest.param(it(10000, quantity=0), Fraction(0), id="quantity-zero-is-zero"),
        pytest.param(it(10000, usage_type="metered", quantity=None), Fraction(0),
                     id="metered-is-not-counted"),
        pytest.param(it(10000, usage_type="metered", quantity=3), Fraction(0),
                     id="metered-with-a-quantity-is-still-not-counted"),
        pytest.param(it(Decimal("1234.5678"), quantity=3), Fraction("3703.7034"),
                     id="unit-amount-decimal-exact"),
        pytest.param(it(Decimal("0.5"), "year", quantity=1), Fraction(1, 24),
                     id="sub-minor-unit-prices-stay-exact"),
        pytest.param(it(90000, "month", 3), Fraction(30000), id="three-month-interval"),
        pytest.param(it(480000, "year", 2), Fraction(20000), id="two-year-interval"),
    ],
)  # fmt: skip
def test_monthly_amount(item: SubscriptionItemFacts, expected: Fraction) -> None:
    assert monthly_amount(item) == expected


GRADUATED = (
    Tier(up_to=5, unit_amount=Fraction(1000), flat_amount=Fraction(500)),
    Tier(up_to=10, unit_amount=Fraction(800)),
    Tier(up_to=None, unit_amount=Fraction("600.5"), flat_amount=Fraction(100)),
)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(tiered("graduated", 3, GRADUATED), Fraction(3500), id="graduated-first"),
        pytest.param(tiered("graduated", 5, GRADUATED), Fraction(5500), id="graduated-edge"),
        pytest.param(tiered("graduated", 7, GRADUATED), Fraction(7100),
                     id="graduated-second-tier"),
        pytest.param(tiered("graduated", 12, GRADUATED), Fraction(5500 + 4000 + 1201 + 100),
                     id="graduated-last-tier-decimal-and-flat"),
        pytest.param(tiered("graduated", 0, GRADUATED), Fraction(0), id="graduated-zero"),
        pytest.param(tiered("volume", 3, GRADUATED), Fraction(3500), id="volume-first"),
        pytest.param(tiered("volume", 7, GRADUATED), Fraction(5600),
                     id="volume-every-unit-at-its-tier"),
        pytest.param(tiered("volume", 12, GRADUATED), Fraction("7306"), id="volume-last"),
        pytest.param(tiered("volume", 0, GRADUATED), Fraction(0), id="volume-zero"),
        pytest.param(
            SubscriptionItemFacts(PriceFacts(500, "usd", "month", divide_by=10, round="up"), 11),
            Fraction(1000), id="transform-quantity-rounds-up"),
        pytest.param(
            SubscriptionItemFacts(PriceFacts(500, "usd", "month", divide_by=10, round="down"),
                                  19),
            Fraction(500), id="transform-quantity-rounds-down"),
    ],
)  # fmt: skip
def test_period_amount(item: SubscriptionItemFacts, expected: Fraction) -> None:
    assert period_amount(item) == expected


def test_a_tiered_price_without_its_tiers_is_unknown_not_zero() -> None:
    with pytest.raises(UnknownAmount):
        period_amount(tiered("graduated", 3, None))


def test_a_per_unit_price_without_an_amount_is_unknown_not_zero() -> None:
    with pytest.raises(UnknownAmount):
        period_amount(it(None))


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
    # amount off spread over items in proportion, whatever their order or interval
    pytest.param(sub(it(10000), it(120000, "year"), discounts=(off(2000),)),
                 {"usd": 10000 - Fraction(2000 * 10000, 130000) + 10000
                  - Fraction(2000 * 120000, 130000) / 12},
                 id="amount-off-spread-by-share"),
    pytest.param(sub(it(120000, "year"), it(10000), discounts=(off(2000),)),
                 {"usd": 10000 - Fraction(2000 * 10000, 130000) + 10000
                  - Fraction(2000 * 120000, 130000) / 12},
                 id="amount-off-spread-same-in-any-order"),
    pytest.param(sub(it(10000, product="prod_a"), it(10000, product="prod_b"),
                     discounts=(pct("50", applies_to=frozenset({"prod_b"})),)),
                 {"usd": 15000}, id="coupon-applies-to-some-products"),
    pytest.param(sub(it(10000, discounts=(pct("10"),)), it(10000)), {"usd": 19000},
                 id="item-discount-on-its-item-only"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="once"),)), {"usd": 10000},
                 id="once-coupon-is-not-recurring"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="repeating",
                                               start=datetime(2025, 1, 1, tzinfo=UTC),
                                               end=datetime(2025, 3, 1, tzinfo=UTC)),)),
                 {"usd": 10000}, id="repeating-coupon-ended"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="repeating",
                                               start=datetime(2025, 1, 1, tzinfo=UTC),
                                               end=datetime(2025, 4, 1, tzinfo=UTC)),)),
                 {"usd": 8000}, id="repeating-coupon-still-running"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="repeating", duration_in_months=2,
                                               start=datetime(2025, 1, 1, tzinfo=UTC)),)),
                 {"usd": 10000}, id="repeating-coupon-end-from-its-months"),
    pytest.param(sub(it(10000), discounts=(pct("20", start=datetime(2025, 4, 1, tzinfo=UTC)),)),
                 {"usd": 10000}, id="discount-starting-later-not-yet"),
    pytest.param(sub(it(10000, quantity=0), discounts=(off(500),)), {"usd": 0},
                 id="amount-off-on-nothing-stays-zero"),
    # The customer's discount (customer.discount): Stripe applies it to a subscription
    # without a discount of its own.
    pytest.param(sub(it(10000), customer_discounts=(pct("25"),)), {"usd": 7500},
                 id="customer-discount-on-a-subscription-without-its-own"),
    pytest.param(sub(it(10000), it(120000, "year"), customer_discounts=(off(2000),)),
                 {"usd": 10000 - Fraction(2000 * 10000, 130000) + 10000
                  - Fraction(2000 * 120000, 130000) / 12},
                 id="customer-amount-off-spread-as-the-subscriptions"),
    pytest.param(sub(it(10000), discounts=(pct("10"),), customer_discounts=(pct("25"),)),
                 {"usd": 9000}, id="the-subscriptions-own-discount-wins-over-the-customers"),
    pytest.param(sub(it(10000, discounts=(pct("10"),)), customer_discounts=(pct("50"),)),
                 {"usd": 4500}, id="item-discounts-and-the-customers-both-apply"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="repeating",
                                               start=datetime(2025, 1, 1, tzinfo=UTC),
                                               end=datetime(2025, 3, 1, tzinfo=UTC)),),
                     customer_discounts=(pct("25"),)),
                 {"usd": 7500}, id="the-customers-once-the-subscriptions-own-ended"),
    pytest.param(sub(it(10000), discounts=(pct("20", duration="once"),),
                     customer_discounts=(pct("25"),)),
                 {"usd": 7500}, id="a-once-coupon-does-not-keep-the-customers-off-later-bills"),
    pytest.param(sub(it(10000), customer_discounts=(pct("25", duration="repeating",
                                                        start=datetime(2025, 1, 1, tzinfo=UTC),
                                                        end=datetime(2025, 3, 1, tzinfo=UTC)),)),
                 {"usd": 10000}, id="customer-repeating-discount-ended"),
]  # fmt: skip


@pytest.mark.parametrize(("subscription", "expected"), SUB_ROWS)
def test_subscription_mrr(subscription: SubscriptionFacts, expected: dict[str, object]) -> None:
    want = {c: round_half_up(Fraction(v)) for c, v in expected.items()}  # type: ignore[arg-type]
    assert subscription_mrr(subscription, WHEN) == want


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
    pytest.param([sub(it(10000), trial=(at(2025, 3, 1), at(2025, 4, 1)))], {},
                 id="active-status-but-in-trial-does-not-count"),
    pytest.param([sub(it(10000), trial=(at(2025, 2, 1), at(2025, 3, 1)))], {"usd": 10000},
                 id="trial-over-counts"),
    pytest.param([sub(it(10000), paused=True)], {}, id="collection-paused-does-not-count"),
    pytest.param([sub(it(10000), status="canceled", ended_at=at(2025, 4, 1))], {"usd": 10000},
                 id="canceled-status-before-it-ended-counts"),
    pytest.param([sub(it(10000), start=at(2025, 3, 16))], {},
                 id="not-started-yet-does-not-count"),
]  # fmt: skip


@pytest.mark.parametrize(("subs", "expected"), MRR_ROWS)
def test_mrr(subs: list[SubscriptionFacts], expected: dict[str, int]) -> None:
    assert mrr(subs, WHEN) == expected


# --- net billing -----------------------------------------------------------------------------


def invoice(
    total: int,
    status: str = "paid",
    currency: str = "usd",
    when: datetime = WHEN,
    remaining: int = 0,
) -> InvoiceFacts:
    return InvoiceFacts(
        "in_1", "cus_1", status, currency, total, WHEN, effective_at=when,
        amount_remaining=remaining,
    )  # fmt: skip


def credit_note(
    total: int,
    status: str = "issued",
    currency: str = "usd",
    when: datetime = WHEN,
    refunds: tuple[str, ...] = (),
) -> CreditNoteFacts:
    return CreditNoteFacts(
        "cn_1", "cus_1", currency, total, status, WHEN, effective_at=when, refund_ids=refunds
    )


def refund(
    amount: int, refund_id: str = "re_1", status: str = "succeeded", when: datetime = WHEN
) -> RefundFacts:
    return RefundFacts(refund_id, "cus_1", "usd", amount, status, when)


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


NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
MONTH = current_month(NOW)
YEAR = last_12_months(NOW)

PERIOD_ROWS = [
    pytest.param([invoice(10000, when=at(2025, 3, 1))], [], [], MONTH, {"usd": 10000},
                 id="invoice-on-the-first-is-in-the-month"),
    pytest.param([invoice(10000, when=at(2025, 2, 28))], [], [], MONTH, {},
                 id="last-month-not-in-this-month"),
    pytest.param([invoice(10000, when=at(2025, 2, 28))], [], [], YEAR, {"usd": 10000},
                 id="last-month-in-the-last-12"),
    pytest.param([invoice(10000, when=at(2024, 4, 1))], [], [], YEAR, {"usd": 10000},
                 id="first-day-of-the-12-months"),
    pytest.param([invoice(10000, when=at(2024, 3, 31))], [], [], YEAR, {},
                 id="before-the-12-months"),
    pytest.param([invoice(10000, when=at(2025, 3, 16))], [], [], MONTH, {},
                 id="after-now-not-yet"),
    pytest.param([invoice(10000)], [], [refund(3000)], MONTH, {"usd": 7000},
                 id="refund-subtracted"),
    pytest.param([invoice(10000)], [credit_note(3000, refunds=("re_1",))], [refund(3000)],
                 MONTH, {"usd": 7000}, id="refund-carried-by-a-credit-note-counted-once"),
    pytest.param([invoice(10000)], [credit_note(3000, "void", refunds=("re_1",))],
                 [refund(3000)], MONTH, {"usd": 7000},
                 id="refund-of-a-void-credit-note-counts-on-its-own"),
    pytest.param([invoice(10000)], [], [refund(3000, status="failed")], MONTH,
                 {"usd": 10000}, id="failed-refund-not-subtracted"),
    pytest.param([invoice(10000)], [], [refund(3000, status="canceled")], MONTH,
                 {"usd": 10000}, id="canceled-refund-not-subtracted"),
    pytest.param([invoice(10000, when=at(2025, 2, 10))], [credit_note(2000)], [], MONTH,
                 {"usd": -2000}, id="credit-note-counts-in-its-own-month"),
    pytest.param([invoice(10000, when=at(2025, 2, 10))], [], [refund(1000)], YEAR,
                 {"usd": 9000}, id="refund-in-the-period"),
]  # fmt: skip


@pytest.mark.parametrize(("invoices", "notes", "refunds", "period", "expected"), PERIOD_ROWS)
def test_net_billing_for_a_period(
    invoices: list[InvoiceFacts],
    notes: list[CreditNoteFacts],
    refunds: list[RefundFacts],
    period: Period,
    expected: dict[str, int],
) -> None:
    assert net_billing(invoices, notes, refunds, period) == expected


def test_the_periods_are_the_calendar_month_and_the_eleven_before() -> None:
    assert (MONTH.start, YEAR.start) == (at(2025, 3, 1), at(2024, 4, 1))
    assert MONTH.contains(NOW) and YEAR.contains(NOW)  # now itself is in
    assert not MONTH.contains(NOW + timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("invoices", "expected"),
    [
        pytest.param([invoice(10000, "open", remaining=6000)], {"usd": 6000}, id="open"),
        pytest.param([invoice(10000, "uncollectible", remaining=10000)], {"usd": 10000},
                     id="uncollectible-is-still-owed"),
        pytest.param([invoice(10000, "paid")], {}, id="paid"),
        pytest.param([invoice(10000, "void", remaining=10000)], {}, id="void-is-not-owed"),
        pytest.param([invoice(10000, "draft", remaining=10000)], {}, id="draft-is-not-owed"),
        pytest.param([invoice(500, "open", "JPY", remaining=500),
                      invoice(100, "open", remaining=100)], {"jpy": 500, "usd": 100},
                     id="per-currency"),
    ],
)  # fmt: skip
def test_open_balance(invoices: list[InvoiceFacts], expected: dict[str, int]) -> None:
    assert open_balance(invoices) == expected


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
    pytest.param(sub(it(10000), start=None), [{"usd": 10000}] * 4,
                 id="no-start-counted-throughout"),
    pytest.param(sub(it(10000), start=at(2024, 11, 1), trial=(at(2024, 11, 1), at(2025, 1, 15))),
                 [{}, {"usd": 10000}, {"usd": 10000}, {"usd": 10000}],
                 id="trial-months-left-out"),
    pytest.param(sub(it(10000), start=at(2024, 11, 1),
                     discounts=(pct("50", duration="repeating", start=at(2024, 11, 1),
                                    end=at(2025, 2, 1)),)),
                 [{"usd": 5000}, {"usd": 5000}, {"usd": 10000}, {"usd": 10000}],
                 id="discount-counted-in-the-months-it-ran"),
    pytest.param(sub(it(10000), status="unpaid", start=at(2024, 1, 1)),
                 [{}, {}, {}, {}], id="unpaid-now-left-out-of-every-month"),
    pytest.param(sub(it(10000), start=at(2024, 1, 1), paused=True),
                 [{}, {}, {}, {}], id="paused-collection-left-out-of-every-month"),
    pytest.param(sub(it(10000), status="trialing", start=at(2024, 1, 1)),
                 [{}, {}, {}, {}], id="trialing-left-out"),
    pytest.param(sub(it(10000), status="past_due", start=datetime(2025, 1, 31, 23, 0)),
                 [{}, {"usd": 10000}, {"usd": 10000}, {"usd": 10000}],
                 id="naive-start-taken-as-utc"),
    # Items and discounts as they were: the earlier states dealbridge's mirror kept.
    pytest.param(replace(sub(it(10000, quantity=3), start=at(2024, 11, 1)),
                         earlier=(SubscriptionState(at(2025, 2, 10), (it(10000),)),)),
                 [{"usd": 10000}, {"usd": 10000}, {"usd": 30000}, {"usd": 30000}],
                 id="an-upgrade-counts-from-the-month-it-happened"),
    pytest.param(replace(sub(it(20000), start=at(2024, 11, 1)),
                         earlier=(SubscriptionState(at(2025, 1, 5), (it(10000),)),
                                  SubscriptionState(at(2025, 2, 5), (it(15000),),
                                                    discounts=(pct("20"),)))),
                 [{"usd": 10000}, {"usd": 12000}, {"usd": 20000}, {"usd": 20000}],
                 id="each-month-its-own-state"),
    pytest.param(replace(sub(it(10000), start=at(2024, 11, 1)),
                         earlier=(SubscriptionState(at(2025, 2, 1), (it(10000),),
                                                    discounts=(pct("50", duration="repeating",
                                                                   start=at(2024, 11, 1),
                                                                   end=at(2025, 2, 1)),)),)),
                 [{"usd": 5000}, {"usd": 5000}, {"usd": 10000}, {"usd": 10000}],
                 id="a-discount-removed-when-it-ended-still-counts-while-it-ran"),
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
