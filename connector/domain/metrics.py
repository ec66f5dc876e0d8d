"""Billing overview metrics: MRR, net billing, open balance, average billing, MRR trend.

Each figure is defined in docs/billing-rules.md and computed here once, from plain facts the
caller reads out of Stripe's own objects, so the overview page, the CLI and the CRM agree to
the minor unit. Amounts stay exact (``Fraction``) until the end and are rounded half-up to
minor units once. Every result is keyed by currency: several currencies are reported side by
side and never added together, because adding USD to EUR without an exchange rate is
meaningless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from connector.domain.money import round_half_up
from connector.domain.plan import add_months

__all__ = [
    "MRR_STATUSES",
    "NET_BILLING_INVOICE_STATUSES",
    "OWED_INVOICE_STATUSES",
    "CreditNoteFacts",
    "Discount",
    "InvoiceFacts",
    "Period",
    "PriceFacts",
    "RefundFacts",
    "SubscriptionFacts",
    "SubscriptionItemFacts",
    "SubscriptionState",
    "Tier",
    "UnknownAmount",
    "as_of",
    "average_billing_per_customer",
    "counts_for_mrr",
    "current_month",
    "last_12_months",
    "monthly_amount",
    "mrr",
    "mrr_trend",
    "net_billing",
    "open_balance",
    "period_amount",
    "subscription_mrr",
]

PriceInterval = Literal["day", "week", "month", "year"]

# Subscriptions that are billing: past_due still counts, because the customer still owes it.
MRR_STATUSES = frozenset({"active", "past_due"})
# Finalized invoices; drafts may still change and void ones were never owed.
NET_BILLING_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible"})
# Invoices the customer still owes on. An uncollectible invoice stays payable in Stripe (it can
# still be paid, and moves to ``paid`` when it is): it is a write-off in the books, not a
# forgiven debt, so the open balance and the credit exposure both count it.
OWED_INVOICE_STATUSES = frozenset({"open", "uncollectible"})
# Refunds that did not (or will not) move money back are not subtracted.
_REFUND_NOT_MOVED = frozenset({"failed", "canceled"})

# Multiply an amount per interval by this to get an amount per month: a yearly amount counts
# 1/12, a weekly one 52/12 (52 weeks over 12 months), a daily one 365/12. Exact fractions.
_PER_MONTH: Mapping[PriceInterval, Fraction] = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}


class UnknownAmount(ValueError):
    """A price whose amount per period cannot be known from the facts given (a tiered price
    whose tiers were not expanded, a custom amount): counting it as 0 would be a wrong
    figure, so the caller is told instead."""


@dataclass(frozen=True)
class Tier:
    """One tier of a tiered price, in minor units (``unit_amount_decimal`` exactly)."""

    up_to: int | None  # None: the last tier (``inf``)
    unit_amount: Fraction = Fraction(0)
    flat_amount: Fraction = Fraction(0)


@dataclass(frozen=True)
class PriceFacts:
    """A Stripe price. ``unit_amount`` is in minor units and may be fractional (Stripe's
    ``unit_amount_decimal``); ``None`` when the price has none (tiered, custom amount)."""

    unit_amount: int | Decimal | Fraction | None
    currency: str
    interval: PriceInterval | None
    interval_count: int = 1
    usage_type: str = "licensed"  # licensed | metered
    billing_scheme: str = "per_unit"  # per_unit | tiered
    tiers_mode: str | None = None  # graduated | volume
    tiers: tuple[Tier, ...] | None = None  # None: not expanded
    divide_by: int | None = None  # transform_quantity
    round: str | None = None  # transform_quantity: up | down
    product: str | None = None


@dataclass(frozen=True)
class Discount:
    """A discount (one redemption of a coupon) on a subscription or one of its items.

    ``duration`` is the coupon's: ``forever``; ``repeating`` for ``duration_in_months`` from
    ``start`` (Stripe sets ``end``); ``once``: the first invoice only, which is not recurring.
    ``applies_to`` limits it to these product ids (the coupon's ``applies_to.products``).
    """

    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration: str = "forever"
    duration_in_months: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    applies_to: frozenset[str] | None = None

    def active_at(self, moment: datetime) -> bool:
        """Whether this discount lowers recurring revenue at ``moment``."""
        if self.duration == "once":
            return False
        if self.start is not None and _utc(self.start) > moment:
            return False
        end = self.end
        if end is None and self.duration == "repeating" and self.start and self.duration_in_months:
            end = _add_months_dt(_utc(self.start), self.duration_in_months)
        return end is None or moment < _utc(end)


@dataclass(frozen=True)
class SubscriptionItemFacts:
    price: PriceFacts
    quantity: int | None  # None: metered items carry no quantity
    discounts: tuple[Discount, ...] = ()


@dataclass(frozen=True)
class SubscriptionState:
    """What a subscription billed before ``until``: its items (prices, quantities, their
    discounts) and discounts as they were until a change dealbridge saw at ``until``."""

    until: datetime
    items: tuple[SubscriptionItemFacts, ...]
    discounts: tuple[Discount, ...] = ()
    customer_discounts: tuple[Discount, ...] = ()


@dataclass(frozen=True)
class SubscriptionFacts:
    id: str
    customer_id: str
    status: str
    items: tuple[SubscriptionItemFacts, ...]
    discounts: tuple[Discount, ...] = ()
    start: datetime | None = None
    ended_at: datetime | None = None
    trial_start: datetime | None = None
    trial_end: datetime | None = None
    #: ``pause_collection`` is set: Stripe bills nothing for it while paused.
    collection_paused: bool = False
    #: The customer's discount (``customer.discount``): Stripe applies it to the invoices of
    #: a subscription that has no discount of its own.
    customer_discounts: tuple[Discount, ...] = ()
    #: Earlier states, oldest first, each valid until the next; the fields above hold since
    #: the last one's ``until``. Empty: the subscription is known only as it is now.
    earlier: tuple[SubscriptionState, ...] = ()


def as_of(sub: SubscriptionFacts, moment: datetime) -> SubscriptionFacts:
    """The subscription with the items and discounts it had at ``moment``: the first earlier
    state that lasted past it, else its current ones. Before the oldest known state that
    state is the best known (nothing older was seen)."""
    for state in sub.earlier:
        if _utc(moment) < _utc(state.until):
            return replace(
                sub,
                items=state.items,
                discounts=state.discounts,
                customer_discounts=state.customer_discounts,
                earlier=(),
            )
    return sub


@dataclass(frozen=True)
class InvoiceFacts:
    id: str
    customer_id: str
    status: str
    currency: str
    total_excluding_tax: int
    created: datetime
    #: When the invoice took effect (Stripe's ``effective_at``, else its finalization).
    effective_at: datetime | None = None
    amount_remaining: int = 0


@dataclass(frozen=True)
class CreditNoteFacts:
    id: str
    customer_id: str
    currency: str
    total_excluding_tax: int
    status: str
    created: datetime
    effective_at: datetime | None = None
    #: Refunds this credit note carries (its ``refunds[].refund``): not subtracted again.
    refund_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefundFacts:
    id: str
    customer_id: str
    currency: str
    amount: int
    status: str
    created: datetime


@dataclass(frozen=True)
class Period:
    """A half-open span of time ``[start, end)`` that a figure covers, with its label."""

    label: str
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= _utc(moment) < self.end


# --------------------------------------------------------------------------- time helpers


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC (the house rule), aware ones converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _add_months_dt(moment: datetime, months: int) -> datetime:
    day = add_months(moment.date(), months)
    return datetime.combine(day, moment.timetz())


def _month_start(day: date) -> datetime:
    return datetime.combine(date(day.year, day.month, 1), time(), tzinfo=UTC)


#: Periods that end "now" include now itself (what happened this very instant).
_INSTANT = timedelta(microseconds=1)


def current_month(now: datetime) -> Period:
    """The calendar month (UTC) of ``now``, up to and including ``now``."""
    now = _utc(now)
    return Period(f"{now.year:04d}-{now.month:02d}", _month_start(now.date()), now + _INSTANT)


def last_12_months(now: datetime) -> Period:
    """The current calendar month (up to and including ``now``) and the eleven before it."""
    now = _utc(now)
    start = _month_start(add_months(date(now.year, now.month, 1), -11))
    return Period("last 12 months", start, now + _INSTANT)


# --------------------------------------------------------------------------- MRR


def _months_factor(interval: PriceInterval, interval_count: int) -> Fraction:
    if interval_count < 1:
        raise ValueError(f"interval_count must be at least 1, got {interval_count}")
    return _PER_MONTH[interval] / interval_count


def _exact(amount: int | Decimal | Fraction) -> Fraction:
    return amount if isinstance(amount, Fraction) else Fraction(amount)


def _tiered(price: PriceFacts, quantity: int) -> Fraction:
    if not price.tiers:
        raise UnknownAmount(
            "a tiered price's tiers were not read from Stripe (expand items.data.price.tiers)"
        )
    if quantity == 0:
        return Fraction(0)
    if price.tiers_mode == "volume":
        for tier in price.tiers:
            if tier.up_to is None or quantity <= tier.up_to:
                return tier.unit_amount * quantity + tier.flat_amount
        raise UnknownAmount("no tier holds the quantity (the last tier must be up_to=inf)")
    total, lower = Fraction(0), 0
    for tier in price.tiers:
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if top > lower:
            total += tier.unit_amount * (top - lower) + tier.flat_amount
        if tier.up_to is None or quantity <= tier.up_to:
            return total
        lower = tier.up_to
    raise UnknownAmount("no tier holds the quantity (the last tier must be up_to=inf)")


def period_amount(item: SubscriptionItemFacts) -> Fraction:
    """What the item bills each of its periods before discounts, exact, in minor units.

    Per-unit prices: ``unit_amount_decimal`` x quantity (after ``transform_quantity``);
    tiered prices: graduated (each unit at its tier, each reached tier's flat amount) or
    volume (every unit at the quantity's tier plus its flat amount). A quantity of 0 bills 0.
    Metered and one-time prices are not recurring revenue and count 0.
    """
    price = item.price
    if price.interval is None or price.usage_type == "metered":
        return Fraction(0)
    quantity = 1 if item.quantity is None else item.quantity
    if quantity < 0:
        raise ValueError(f"quantity cannot be negative, got {quantity}")
    if price.billing_scheme == "tiered":
        return _tiered(price, quantity)
    if price.divide_by:
        whole, rest = divmod(quantity, price.divide_by)
        quantity = whole + (1 if rest and price.round == "up" else 0)
    if price.unit_amount is None:
        raise UnknownAmount("the price has no unit amount")
    return _exact(price.unit_amount) * quantity


def monthly_amount(item: SubscriptionItemFacts) -> Fraction:
    """The item's amount per month before discounts, exact: its period amount normalised to a
    month (a yearly price counts 1/12, every 3 months 1/3, a weekly one 52/12, a daily one
    365/12, each divided by ``interval_count``)."""
    price = item.price
    if price.interval is None:
        return Fraction(0)
    return period_amount(item) * _months_factor(price.interval, price.interval_count)


def _eligible(discount: Discount, item: SubscriptionItemFacts) -> bool:
    if discount.applies_to is not None and item.price.product not in discount.applies_to:
        return False
    if discount.amount_off is not None and discount.currency is not None:
        return discount.currency.lower() == item.price.currency.lower()
    return True


def _apply(
    discounts: Iterable[Discount],
    items: list[SubscriptionItemFacts],
    amounts: list[Fraction],
    moment: datetime,
) -> None:
    """Lower ``amounts`` (each item's per-period amount) by the discounts active at
    ``moment``: percentages first, each on what is left, then amounts off. An amount off is
    per invoice; it is spread over the items it applies to in proportion to what is left of
    each (so the order of the items never matters) and never takes them below zero."""
    active = [d for d in discounts if d.active_at(moment)]
    for discount in active:
        if discount.percent_off is None:
            continue
        keep = 1 - Fraction(discount.percent_off) / 100
        for i, item in enumerate(items):
            if _eligible(discount, item):
                amounts[i] *= keep
    for discount in active:
        if discount.amount_off is None:
            continue
        targets = [i for i, item in enumerate(items) if _eligible(discount, item)]
        currencies = {items[i].price.currency.lower() for i in targets}
        if discount.currency is None and len(currencies) > 1:
            continue  # an amount without a currency cannot be split over several currencies
        base = sum((amounts[i] for i in targets), Fraction(0))
        if base <= 0:
            continue
        off = min(Fraction(discount.amount_off), base)
        for i in targets:
            amounts[i] -= off * amounts[i] / base


def _billed_items(sub: SubscriptionFacts) -> list[SubscriptionItemFacts]:
    return [
        item
        for item in sub.items
        if item.price.interval is not None and item.price.usage_type != "metered"
    ]


def _subscription_discounts(sub: SubscriptionFacts, moment: datetime) -> tuple[Discount, ...]:
    """The discounts on the whole subscription at ``moment``: its own, or, when none of its own
    lowers recurring revenue then, the customer's (Stripe bills a subscription without a
    discount of its own with the customer's discount). Item discounts apply either way."""
    if any(d.active_at(moment) for d in sub.discounts):
        return sub.discounts
    return sub.customer_discounts


def exact_subscription_mrr(sub: SubscriptionFacts, moment: datetime) -> dict[str, Fraction]:
    """One subscription's MRR at ``moment``, exact, by currency (status not looked at), from
    the items and discounts it had then (``as_of``)."""
    sub = as_of(sub, moment)
    items = _billed_items(sub)
    amounts = [period_amount(item) for item in items]
    for i, item in enumerate(items):  # an item's own discounts apply to it alone
        one = [amounts[i]]
        _apply(item.discounts, [item], one, moment)
        amounts[i] = one[0]
    _apply(_subscription_discounts(sub, moment), items, amounts, moment)
    per_currency: dict[str, Fraction] = {}
    for item, amount in zip(items, amounts, strict=True):
        price = item.price
        assert price.interval is not None
        currency = price.currency.lower()
        monthly = amount * _months_factor(price.interval, price.interval_count)
        per_currency[currency] = per_currency.get(currency, Fraction(0)) + monthly
    return {c: max(a, Fraction(0)) for c, a in per_currency.items()}


def subscription_mrr(sub: SubscriptionFacts, moment: datetime) -> dict[str, int]:
    """Monthly recurring revenue of one subscription at ``moment``, by currency, before tax,
    rounded half-up to minor units once at the end. Discounts active at ``moment`` apply
    (see ``_apply``). The status is not looked at: ``counts_for_mrr``
    decides whether the subscription counts."""
    at = _utc(moment)
    return {c: round_half_up(a) for c, a in sorted(exact_subscription_mrr(sub, at).items())}


def _trialing_at(sub: SubscriptionFacts, moment: datetime) -> bool:
    if sub.trial_end is None:
        return sub.status == "trialing"
    started = sub.trial_start is None or _utc(sub.trial_start) <= moment
    return started and moment < _utc(sub.trial_end)


def counts_for_mrr(sub: SubscriptionFacts, moment: datetime) -> bool:
    """Whether the subscription was recurring revenue at ``moment``.

    It had started and not ended, was not in a trial, and is billing: ``active`` or
    ``past_due`` now, or ``canceled`` now and ``moment`` before it ended (it was billing
    then). Subscriptions that are now ``unpaid``, ``paused``, ``incomplete``,
    ``incomplete_expired`` or have their collection paused are left out of every month:
    Stripe keeps no history of when a status began, so no month is guessed.
    """
    if sub.collection_paused:
        return False
    if sub.status == "canceled":
        if sub.ended_at is None or moment >= _utc(sub.ended_at):
            return False
    elif sub.status not in MRR_STATUSES:
        return False
    if sub.start is not None and _utc(sub.start) > moment:
        return False
    if sub.ended_at is not None and moment >= _utc(sub.ended_at):
        return False
    return not _trialing_at(sub, moment)


def mrr(subs: Iterable[SubscriptionFacts], moment: datetime) -> dict[str, int]:
    """Total MRR by currency at ``moment`` (the caller's clock) over the subscriptions that count
    (``counts_for_mrr``). The total is the sum of each subscription's rounded MRR, so it
    adds up with a per-subscription listing."""
    at = _utc(moment)
    totals: dict[str, int] = defaultdict(int)
    for sub in subs:
        if not counts_for_mrr(sub, at):
            continue
        for currency, amount in subscription_mrr(sub, at).items():
            totals[currency] += amount
    return dict(sorted(totals.items()))


def mrr_trend(
    subs_history: Iterable[SubscriptionFacts], months: int, now: datetime | date
) -> list[tuple[str, dict[str, int]]]:
    """MRR at the end of each of the last ``months`` calendar months (UTC), oldest first; the
    current month is measured at ``now``, so its figure is the headline MRR.

    Each month applies the same rule as the headline (``mrr`` at that moment): statuses,
    trials and discount dates as of that moment, and the items, prices, quantities and
    discounts the subscription had then as far as its ``earlier`` states record them
    (Stripe keeps no history of them; dealbridge's mirror keeps each change it sees).
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    if isinstance(now, datetime):
        at_now = _utc(now)
    else:
        at_now = datetime.combine(now + timedelta(days=1), time(), tzinfo=UTC)
    history = list(subs_history)
    this_month = date(at_now.year, at_now.month, 1)
    trend: list[tuple[str, dict[str, int]]] = []
    for back in range(months - 1, -1, -1):
        month = add_months(this_month, -back)
        # The last instant of the month: a subscription ending at midnight no longer counts.
        month_end = _month_start(add_months(month, 1)) - timedelta(microseconds=1)
        trend.append((f"{month.year:04d}-{month.month:02d}", mrr(history, min(month_end, at_now))))
    return trend


# --------------------------------------------------------------------------- billing


def _when(effective_at: datetime | None, created: datetime) -> datetime:
    return _utc(effective_at if effective_at is not None else created)


def net_billing(
    invoices: Iterable[InvoiceFacts],
    credit_notes: Iterable[CreditNoteFacts],
    refunds: Iterable[RefundFacts] = (),
    period: Period | None = None,
) -> dict[str, int]:
    """What was billed in ``period`` (all time when None), by currency: finalized invoices
    (``open``, ``paid``, ``uncollectible``; by ``effective_at``, else creation) before tax,
    less credit notes that are not void (by ``effective_at``), less refunds that moved money
    (by creation) and that no credit note carries: a refund made through a credit note is in
    the credit note's amount and is subtracted once."""
    totals: dict[str, int] = defaultdict(int)
    carried: set[str] = set()
    for invoice in invoices:
        if invoice.status not in NET_BILLING_INVOICE_STATUSES:
            continue
        if period is None or period.contains(_when(invoice.effective_at, invoice.created)):
            totals[invoice.currency.lower()] += invoice.total_excluding_tax
    for note in credit_notes:
        if note.status == "void":
            continue
        carried.update(note.refund_ids)
        if period is None or period.contains(_when(note.effective_at, note.created)):
            totals[note.currency.lower()] -= note.total_excluding_tax
    for refund in refunds:
        if refund.status in _REFUND_NOT_MOVED or refund.id in carried:
            continue
        if period is None or period.contains(refund.created):
            totals[refund.currency.lower()] -= refund.amount
    return dict(sorted(totals.items()))


def open_balance(invoices: Iterable[InvoiceFacts]) -> dict[str, int]:
    """What the customer still owes, by currency: the remaining amount of ``open`` and
    ``uncollectible`` invoices (see ``OWED_INVOICE_STATUSES``)."""
    totals: dict[str, int] = defaultdict(int)
    for invoice in invoices:
        if invoice.status in OWED_INVOICE_STATUSES and invoice.amount_remaining:
            totals[invoice.currency.lower()] += invoice.amount_remaining
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
