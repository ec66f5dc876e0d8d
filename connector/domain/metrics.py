"""Billing overview metrics: MRR, net billing, average billing per customer, MRR trend.

Each figure is defined here once, from plain facts the caller reads out of Stripe, so the
overview page, the CLI and any export agree to the cent. Amounts stay exact (``Fraction``)
until the end and are rounded half-up to minor units once. Every result is keyed by currency:
several currencies are always reported side by side and never added together, because adding
USD to EUR without an exchange rate is meaningless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from connector.domain.money import round_half_up
from connector.domain.plan import add_months

__all__ = [
    "MRR_STATUSES",
    "NET_BILLING_INVOICE_STATUSES",
    "CreditNoteFacts",
    "Discount",
    "InvoiceFacts",
    "PriceFacts",
    "SubscriptionFacts",
    "SubscriptionItemFacts",
    "average_billing_per_customer",
    "monthly_amount",
    "mrr",
    "mrr_trend",
    "net_billing",
    "subscription_mrr",
]

PriceInterval = Literal["day", "week", "month", "year"]

# Subscriptions that are billing: past_due still counts, because the customer still owes it.
MRR_STATUSES = frozenset({"active", "past_due"})
# Finalized invoices; drafts may still change and void ones were never owed.
NET_BILLING_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible"})
# Statuses that never billed anything, left out of the historical trend.
_NEVER_BILLED = frozenset({"incomplete", "incomplete_expired", "trialing"})

# Multiply an amount per interval by this to get an amount per month: a yearly amount counts
# 1/12, a weekly one 52/12 (52 weeks over 12 months), a daily one 365/12. Exact fractions.
_PER_MONTH: Mapping[PriceInterval, Fraction] = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}


@dataclass(frozen=True)
class PriceFacts:
    unit_amount: int
    currency: str
    interval: PriceInterval | None
    interval_count: int = 1


@dataclass(frozen=True)
class SubscriptionItemFacts:
    price: PriceFacts
    quantity: int


@dataclass(frozen=True)
class Discount:
    """A subscription discount: a percentage, or an amount off each billing period."""

    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class SubscriptionFacts:
    id: str
    customer_id: str
    status: str
    items: tuple[SubscriptionItemFacts, ...]
    discounts: tuple[Discount, ...] = ()
    start: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class InvoiceFacts:
    id: str
    customer_id: str
    status: str
    currency: str
    total_excluding_tax: int
    created: datetime


@dataclass(frozen=True)
class CreditNoteFacts:
    id: str
    customer_id: str
    currency: str
    total_excluding_tax: int
    status: str
    created: datetime


def _months_factor(interval: PriceInterval, interval_count: int) -> Fraction:
    if interval_count < 1:
        raise ValueError(f"interval_count must be at least 1, got {interval_count}")
    return _PER_MONTH[interval] / interval_count


def monthly_amount(item: SubscriptionItemFacts) -> Fraction:
    """The item's amount per month, exact: unit amount times quantity, normalised to a month.

    A yearly price counts 1/12 per month, a weekly one 52/12, a daily one 365/12, each
    divided by ``interval_count`` (a price every 3 months counts a third per month).
    One-time prices (no interval) are not recurring revenue and count 0.
    """
    price = item.price
    if price.interval is None:
        return Fraction(0)
    factor = _months_factor(price.interval, price.interval_count)
    return Fraction(price.unit_amount * item.quantity) * factor


def _exact_subscription_mrr(sub: SubscriptionFacts) -> dict[str, Fraction]:
    per_currency: dict[str, Fraction] = {}
    billing_factor: Fraction | None = None
    for item in sub.items:
        if item.price.interval is None:
            continue
        currency = item.price.currency.lower()
        per_currency[currency] = per_currency.get(currency, Fraction(0)) + monthly_amount(item)
        if billing_factor is None:
            billing_factor = _months_factor(item.price.interval, item.price.interval_count)

    # Percentages first (each applies to what is left), then fixed amounts, as on an invoice.
    for discount in sub.discounts:
        if discount.percent_off is not None:
            keep = 1 - Fraction(discount.percent_off) / 100
            per_currency = {c: amount * keep for c, amount in per_currency.items()}
    for discount in sub.discounts:
        if discount.amount_off is None or billing_factor is None:
            continue
        if discount.currency is not None:
            currency = discount.currency.lower()
        elif len(per_currency) == 1:
            currency = next(iter(per_currency))
        else:
            continue  # an amount without a currency cannot be applied to several currencies
        if currency in per_currency:
            per_currency[currency] -= Fraction(discount.amount_off) * billing_factor

    return {c: max(amount, Fraction(0)) for c, amount in per_currency.items()}


def subscription_mrr(sub: SubscriptionFacts) -> dict[str, int]:
    """Monthly recurring revenue of one subscription, by currency, before tax.

    Discounts are applied: percentages first, then amounts off, which are per billing period
    and so normalised to a month by the subscription's interval (its first recurring item's).
    A discount never takes MRR below zero. Rounded half-up to minor units at the end.
    The status is not looked at here; ``mrr`` decides which subscriptions count.
    """
    return {c: round_half_up(a) for c, a in sorted(_exact_subscription_mrr(sub).items())}


def mrr(subs: Iterable[SubscriptionFacts]) -> dict[str, int]:
    """Total MRR by currency over subscriptions that are ``active`` or ``past_due``.

    Trialing, canceled, incomplete, paused and unpaid subscriptions do not count. The total is
    the sum of each subscription's rounded MRR, so it adds up with a per-subscription listing.
    """
    totals: dict[str, int] = defaultdict(int)
    for sub in subs:
        if sub.status not in MRR_STATUSES:
            continue
        for currency, amount in subscription_mrr(sub).items():
            totals[currency] += amount
    return dict(sorted(totals.items()))


def net_billing(
    invoices: Iterable[InvoiceFacts], credit_notes: Iterable[CreditNoteFacts]
) -> dict[str, int]:
    """What was billed, by currency, before tax: finalized invoices minus credit notes.

    Invoices count when finalized (``open``, ``paid`` or ``uncollectible``; an uncollectible
    invoice was still billed); drafts and void invoices do not. Credit notes that are not
    void are subtracted. The caller chooses the period by choosing the facts.
    """
    totals: dict[str, int] = defaultdict(int)
    for invoice in invoices:
        if invoice.status in NET_BILLING_INVOICE_STATUSES:
            totals[invoice.currency.lower()] += invoice.total_excluding_tax
    for note in credit_notes:
        if note.status != "void":
            totals[note.currency.lower()] -= note.total_excluding_tax
    return dict(sorted(totals.items()))


def average_billing_per_customer(net: Mapping[str, int], total_customers: int) -> dict[str, int]:
    """Net billing divided by the number of customers, per currency, rounded half-up.

    With no customers the average is 0 rather than an error, so an empty account shows zeros.
    """
    if total_customers < 0:
        raise ValueError(f"total_customers cannot be negative, got {total_customers}")
    if total_customers == 0:
        return {currency: 0 for currency in sorted(net)}
    return {
        currency: round_half_up(Fraction(amount, total_customers))
        for currency, amount in sorted(net.items())
    }


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC (the house rule), aware ones converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def mrr_trend(
    subs_history: Iterable[SubscriptionFacts], months: int, today: date
) -> list[tuple[str, dict[str, int]]]:
    """MRR at the end of each of the last ``months`` calendar months, oldest first.

    Labels are ``YYYY-MM``; the current month is measured at the end of ``today``. A
    subscription counts in a month when it had started by the end of that month and had not
    ended by then (``start`` < end of month ≤ ``ended_at``), whatever its status is now, so
    canceled subscriptions count in the months they were live. Subscriptions without a start,
    and those that never billed (incomplete, incomplete_expired, trialing), are left out.

    This is a simple version: each subscription's *current* items and discounts are used for
    every month (price changes and upgrades are not replayed).
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    history = [
        (sub, _utc(sub.start), None if sub.ended_at is None else _utc(sub.ended_at))
        for sub in subs_history
        if sub.start is not None and sub.status not in _NEVER_BILLED
    ]
    this_month = date(today.year, today.month, 1)
    end_of_today = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    trend: list[tuple[str, dict[str, int]]] = []
    for back in range(months - 1, -1, -1):
        month = add_months(this_month, -back)
        month_end = datetime.combine(add_months(month, 1), time(), tzinfo=UTC)
        as_of = min(month_end, end_of_today)
        totals: dict[str, int] = defaultdict(int)
        for sub, start, ended_at in history:
            if start < as_of and (ended_at is None or ended_at >= as_of):
                for currency, amount in subscription_mrr(sub).items():
                    totals[currency] += amount
        trend.append((f"{month.year:04d}-{month.month:02d}", dict(sorted(totals.items()))))
    return trend
