"""The billing overview: dealbridge's mirrors of Stripe turned into the figures finance reads.

The figures are defined once, in ``connector/domain/metrics.py``; this module only reads the
facts out of the mirrors (kept current by webhooks and reconciliation, so the page is fast)
and hands them over. ``stripe_refresh.refresh_from_stripe`` re-reads the mirrors from Stripe
first (``?refresh=1``); ``customer_table`` filters and sorts the rows; ``account_metrics``
writes each account's figures to the CRM.

Counts, in plain words:

* *active subscriptions*: subscriptions that are active or past due (the ones MRR counts);
* *total customers*: Stripe customers linked to a CRM account;
* *customers with active subscriptions*: of those, the ones with an active subscription;
* *products*, *one-time prices*, *recurring prices*: the active (not archived) ones.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.domain.metrics import (
    OWED_INVOICE_STATUSES,
    CreditNoteFacts,
    Discount,
    InvoiceFacts,
    Period,
    PriceFacts,
    RefundFacts,
    SubscriptionFacts,
    SubscriptionItemFacts,
    SubscriptionState,
    Tier,
    UnknownAmount,
    average_billing_per_customer,
    counts_for_mrr,
    current_month,
    last_12_months,
    mrr,
    mrr_trend,
    net_billing,
    open_balance,
    subscription_mrr,
)
from connector.domain.timestamps import datetime_from_unix
from connector.runtime import Runtime
from connector.services.subscription_sync import CUSTOMER_DISCOUNT, EARLIER
from connector.store import models
from connector.store.cursors import read_cursor
from connector.store.models import (
    AccountMetrics,
    CreditNoteMirror,
    CustomerLink,
    InvoiceMirror,
    Plan,
    PriceMirror,
    ProductMirror,
    RefundMirror,
    SubscriptionMirror,
)

log = logging.getLogger(__name__)

TREND_MONTHS = 12
#: What each month of the trend is, and what it cannot know (docs/billing-rules.md §4.1): on
#: the page under the chart and in the API (``mrr_trend_basis``).
TREND_BASIS = (
    "Each month is MRR at its last instant (UTC), by the same rule as the headline; this "
    "month is measured now. Items, quantities, prices and discounts are each subscription's "
    "as they were then: Stripe keeps no history of them, so dealbridge keeps a "
    "subscription's state before each change it sees, dated when it saw it. Before "
    "dealbridge first saw a subscription, its earliest known state stands in. Statuses are "
    "today's: a subscription unpaid or paused now counts in no month."
)
#: Invoices a customer still owes on (open balance, unpaid count, credit exposure).
UNPAID_STATUSES = OWED_INVOICE_STATUSES
#: The cursor that says whether the Stripe answering offers credit notes (``mirrored``) or
#: not (``unsupported``), as the last refresh from Stripe found.
CREDIT_NOTES_CURSOR = "overview.credit_notes"


# --------------------------------------------------------------------------- facts


def _decimal(value: Any) -> Decimal | None:
    """A Stripe number (a decimal string, an int, or a JSON float such as ``25.5`` from
    ``percent_off``) as an exact Decimal, through its text so no binary fraction sneaks in."""
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _fraction(value: Any) -> Fraction:
    number = _decimal(value)
    return Fraction(number) if number is not None else Fraction(0)


def _discount(raw: Any, currency: str | None) -> Discount | None:
    """A discount as Stripe sends it when expanded (``coupon`` before API 2025-09-30,
    ``source.coupon`` after); a bare ``di_`` id cannot be read and is reported by the caller."""
    if not isinstance(raw, Mapping):
        return None
    coupon = raw.get("coupon") or (raw.get("source") or {}).get("coupon")
    if not isinstance(coupon, Mapping):
        return None
    amount_off = coupon.get("amount_off")
    coupon_currency = coupon.get("currency")
    options = (coupon.get("currency_options") or {}).get(currency or "") or {}
    if options.get("amount_off") is not None and coupon_currency != currency:
        amount_off, coupon_currency = options["amount_off"], currency
    products = (coupon.get("applies_to") or {}).get("products")
    return Discount(
        percent_off=_decimal(coupon.get("percent_off")),
        amount_off=int(amount_off) if amount_off is not None else None,
        currency=str(coupon_currency).lower() if coupon_currency else None,
        duration=str(coupon.get("duration") or "forever"),
        duration_in_months=coupon.get("duration_in_months"),
        start=datetime_from_unix(raw.get("start")),
        end=datetime_from_unix(raw.get("end")),
        applies_to=frozenset(products) if products is not None else None,
    )


def _discounts(raws: Any, currency: str | None, unread: list[str]) -> tuple[Discount, ...]:
    found: list[Discount] = []
    for raw in raws or []:
        discount = _discount(raw, currency)
        if discount is None:
            unread.append(raw if isinstance(raw, str) else str((raw or {}).get("id")))
        else:
            found.append(discount)
    return tuple(found)


def _price(price: Mapping[str, Any], currency: str) -> PriceFacts:
    recurring = price.get("recurring") or {}
    tiers_raw = price.get("tiers")
    tiers = None
    if tiers_raw is not None:
        tiers = tuple(
            Tier(
                up_to=None if t.get("up_to") in (None, "inf") else int(t["up_to"]),
                unit_amount=_fraction(
                    t["unit_amount_decimal"]
                    if t.get("unit_amount_decimal") is not None
                    else t.get("unit_amount")
                ),
                flat_amount=_fraction(
                    t["flat_amount_decimal"]
                    if t.get("flat_amount_decimal") is not None
                    else t.get("flat_amount")
                ),
            )
            for t in tiers_raw
        )
    decimal = price.get("unit_amount_decimal")
    unit = _decimal(decimal if decimal is not None else price.get("unit_amount"))
    transform = price.get("transform_quantity") or {}
    product = price.get("product")
    return PriceFacts(
        unit_amount=unit,
        currency=str(price.get("currency") or currency).lower(),
        interval=recurring.get("interval"),
        interval_count=int(recurring.get("interval_count") or 1),
        usage_type=str(recurring.get("usage_type") or "licensed"),
        billing_scheme=str(price.get("billing_scheme") or "per_unit"),
        tiers_mode=price.get("tiers_mode"),
        tiers=tiers,
        divide_by=int(transform["divide_by"]) if transform.get("divide_by") else None,
        round=transform.get("round"),
        product=product if isinstance(product, str) else (product or {}).get("id"),
    )


def subscription_facts(
    data: Mapping[str, Any], status: str | None = None, unread: list[str] | None = None
) -> SubscriptionFacts:
    """A mirrored (or freshly fetched) Stripe subscription as the metrics' plain facts.

    Discounts must have been expanded (``subscription_sync`` asks for them); the ids of any
    that were not are added to ``unread`` so the overview can say its MRR misses them.
    """
    missing: list[str] = [] if unread is None else unread
    currency = str(data.get("currency") or "").lower() or None
    earlier = tuple(
        SubscriptionState(
            until=datetime.fromisoformat(str(state["until"])),
            items=_items(state.get("items"), currency, missing),
            discounts=_discounts(state.get("discounts"), currency, missing),
            customer_discounts=_customer_discounts(state, currency, missing),
        )
        for state in data.get(EARLIER) or []
    )
    return SubscriptionFacts(
        id=str(data["id"]),
        customer_id=str(data.get("customer")),
        status=status or str(data.get("status")),
        items=_items(data.get("items"), currency, missing),
        discounts=_discounts(data.get("discounts"), currency, missing),
        start=datetime_from_unix(data.get("start_date") or data.get("created")),
        ended_at=datetime_from_unix(data.get("ended_at")),
        trial_start=datetime_from_unix(data.get("trial_start")),
        trial_end=datetime_from_unix(data.get("trial_end")),
        collection_paused=bool(data.get("pause_collection")),
        customer_discounts=_customer_discounts(data, currency, missing),
        earlier=earlier,
    )


def _items(raw: Any, currency: str | None, missing: list[str]) -> tuple[SubscriptionItemFacts, ...]:
    items: list[SubscriptionItemFacts] = []
    for item in (raw or {}).get("data") or []:
        price = item.get("price") or {}
        quantity = item.get("quantity")
        items.append(
            SubscriptionItemFacts(
                price=_price(price, currency or ""),
                quantity=int(quantity) if quantity is not None else None,
                discounts=_discounts(item.get("discounts"), currency, missing),
            )
        )
    return tuple(items)


def _customer_discounts(
    data: Mapping[str, Any], currency: str | None, missing: list[str]
) -> tuple[Discount, ...]:
    own = data.get(CUSTOMER_DISCOUNT)
    return _discounts([own] if own else [], currency, missing)


def invoice_facts(row: InvoiceMirror) -> InvoiceFacts:
    return InvoiceFacts(
        id=row.id,
        customer_id=row.stripe_customer_id,
        status=row.status,
        currency=row.currency,
        total_excluding_tax=row.total_excluding_tax,
        created=row.created,
        effective_at=row.effective_at,
        amount_remaining=row.amount_remaining,
    )


def credit_note_facts(row: CreditNoteMirror) -> CreditNoteFacts:
    return CreditNoteFacts(
        id=row.id,
        customer_id=row.stripe_customer_id,
        currency=row.currency,
        total_excluding_tax=row.total_excluding_tax,
        status=row.status,
        created=row.created,
        effective_at=row.effective_at,
        refund_ids=tuple(str(r) for r in row.refund_ids or ()),
    )


def refund_facts(row: RefundMirror) -> RefundFacts:
    return RefundFacts(
        id=row.id,
        customer_id=row.stripe_customer_id,
        currency=row.currency,
        amount=row.amount,
        status=row.status,
        created=row.created,
    )


# --------------------------------------------------------------------------- the overview


@dataclass(frozen=True)
class CurrencyFigures:
    mrr: int
    #: Net billing over the last 12 months (this calendar month and the 11 before it).
    net_billing: int
    average_billing_per_customer: int
    net_billing_this_month: int = 0
    #: What linked customers still owe (open and uncollectible invoices).
    open_balance: int = 0


@dataclass(frozen=True)
class CustomerRow:
    crm_account_id: str
    stripe_customer_id: str
    name: str
    mrr: dict[str, int]
    net_billing: dict[str, int]
    open_balance: dict[str, int]
    unpaid_invoices: int
    credit_state: str
    active_subscriptions: int
    #: Why the account's CRM record does not carry these figures, when it does not.
    crm_note: str | None = None


@dataclass(frozen=True)
class Overview:
    currency: dict[str, CurrencyFigures]
    active_subscriptions: int
    total_customers: int
    customers_with_active_subscriptions: int
    total_products: int
    one_time_prices: int
    recurring_prices: int
    trend: list[tuple[str, dict[str, int]]]
    customers: list[CustomerRow]
    as_of: datetime
    credit_notes: str = "mirrored"  # mirrored | unsupported (the Stripe used has none)
    notes: list[str] = field(default_factory=list)
    #: The periods net billing covers: {"net_billing": ..., "net_billing_this_month": ...}.
    periods: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "currency": {
                c: {
                    "mrr": f.mrr,
                    "net_billing": f.net_billing,
                    "net_billing_this_month": f.net_billing_this_month,
                    "average_billing_per_customer": f.average_billing_per_customer,
                    "open_balance": f.open_balance,
                }
                for c, f in self.currency.items()
            },
            "periods": dict(self.periods),
            "active_subscriptions": self.active_subscriptions,
            "total_customers": self.total_customers,
            "customers_with_active_subscriptions": self.customers_with_active_subscriptions,
            "total_products": self.total_products,
            "one_time_prices": self.one_time_prices,
            "recurring_prices": self.recurring_prices,
            "mrr_trend": [{"month": m, "mrr": v} for m, v in self.trend],
            "mrr_trend_basis": TREND_BASIS,
            "customers": [c.__dict__ for c in self.customers],
            "as_of": self.as_of.isoformat(),
            "credit_notes": self.credit_notes,
            "notes": list(self.notes),
        }


def _in(column: Any, keys: Collection[str] | None) -> list[Any]:
    """The condition "``column`` is one of ``keys``", none when ``keys`` is None (every row).
    ``keys`` are the accounts or customers of one batch of work: a few hundred at most, well
    within both stores' limits on bound parameters."""
    return [] if keys is None else [column.in_(sorted(keys))]


def _credit_states(session: Session, accounts: Collection[str] | None = None) -> dict[str, str]:
    """Each account's credit state as the credit service last recorded it (``ok``,
    ``on_hold``, ``over_limit``); accounts it has not looked at yet are ``ok``."""
    table: Any = getattr(models, "AccountCredit", None)
    if table is None:
        return {}
    return {
        row.crm_account_id: str(row.state)
        for row in session.scalars(select(table).where(*_in(table.crm_account_id, accounts)))
    }


def _account_names(session: Session, accounts: Collection[str] | None = None) -> dict[str, str]:
    names: dict[str, str] = {}
    query = select(Plan).where(*_in(Plan.crm_account_id, accounts)).order_by(Plan.created_at)
    for plan in session.scalars(query):
        account = (plan.deal_data or {}).get("account") or {}
        if plan.crm_account_id and account.get("name"):
            names[plan.crm_account_id] = str(account["name"])
    return names


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for currency, amount in more.items():
        into[currency] = into.get(currency, 0) + amount


def _period_text(period: Period) -> str:
    return f"{period.start.date().isoformat()} to {period.end.isoformat(timespec='seconds')}"


def _measurable(
    subs: list[SubscriptionFacts], notes: list[str], now: datetime
) -> list[SubscriptionFacts]:
    """The subscriptions whose MRR can be computed; each one that cannot is named in
    ``notes`` rather than counted as 0."""
    kept: list[SubscriptionFacts] = []
    for sub in subs:
        try:
            subscription_mrr(sub, now)
        except UnknownAmount as exc:
            notes.append(f"Subscription {sub.id} is left out of MRR: {exc}.")
            continue
        kept.append(sub)
    return kept


@dataclass(frozen=True)
class _Mirrored:
    """The mirrored facts of some linked customers, the ones the overview can measure."""

    subs: list[SubscriptionFacts]
    invoices: list[InvoiceFacts]
    notes: list[CreditNoteFacts]
    refunds: list[RefundFacts]


def _mirrored(
    session: Session,
    customer_ids: set[str],
    *,
    scoped: bool,
    overview_notes: list[str],
    now: datetime,
) -> _Mirrored:
    """The facts of these customers' mirrored rows. ``scoped``: read only their rows (a few
    accounts' figures); otherwise every row, filtered here (the whole overview reads nearly
    all of them anyway)."""
    only = customer_ids if scoped else None

    def rows(model: Any, *conditions: Any) -> list[Any]:
        query = select(model).where(*conditions, *_in(model.stripe_customer_id, only))
        return [
            r
            for r in session.scalars(query.order_by(model.id))
            if r.stripe_customer_id in customer_ids
        ]

    unread: list[str] = []
    subs = [subscription_facts(r.data, r.status, unread) for r in rows(SubscriptionMirror)]
    if unread:
        overview_notes.append(
            "Discounts not read from Stripe (not expanded), so MRR does not subtract them: "
            + ", ".join(sorted(set(unread)))
            + ". A refresh re-reads them."
        )
    return _Mirrored(
        subs=_measurable(subs, overview_notes, now),
        invoices=[invoice_facts(r) for r in rows(InvoiceMirror, InvoiceMirror.deleted.is_(False))],
        notes=[credit_note_facts(r) for r in rows(CreditNoteMirror)],
        refunds=[refund_facts(r) for r in rows(RefundMirror)],
    )


def _customer_rows(
    session: Session,
    links: list[CustomerLink],
    mirrored: _Mirrored,
    now: datetime,
    *,
    scoped: bool,
) -> list[CustomerRow]:
    """One row per link, each from its own customer's facts."""
    accounts = {link.crm_account_id for link in links} if scoped else None
    by_customer_subs: dict[str, list[SubscriptionFacts]] = defaultdict(list)
    for sub in mirrored.subs:
        by_customer_subs[sub.customer_id].append(sub)
    by_customer_invoices: dict[str, list[InvoiceFacts]] = defaultdict(list)
    for invoice in mirrored.invoices:
        by_customer_invoices[invoice.customer_id].append(invoice)
    by_customer_notes: dict[str, list[CreditNoteFacts]] = defaultdict(list)
    for note in mirrored.notes:
        by_customer_notes[note.customer_id].append(note)
    by_customer_refunds: dict[str, list[RefundFacts]] = defaultdict(list)
    for refund in mirrored.refunds:
        by_customer_refunds[refund.customer_id].append(refund)
    names = _account_names(session, accounts)
    credit = _credit_states(session, accounts)
    crm_notes = {
        row.crm_account_id: row.note
        for row in session.scalars(
            select(AccountMetrics).where(*_in(AccountMetrics.crm_account_id, accounts))
        )
    }
    year = last_12_months(now)
    rows: list[CustomerRow] = []
    for link in links:
        cid = link.stripe_customer_id
        own_invoices = by_customer_invoices[cid]
        rows.append(
            CustomerRow(
                crm_account_id=link.crm_account_id,
                stripe_customer_id=cid,
                name=names.get(link.crm_account_id, link.crm_account_id),
                mrr=mrr(by_customer_subs[cid], now),
                net_billing=net_billing(
                    own_invoices, by_customer_notes[cid], by_customer_refunds[cid], year
                ),
                open_balance=open_balance(own_invoices),
                unpaid_invoices=sum(
                    1
                    for i in own_invoices
                    if i.status in OWED_INVOICE_STATUSES and i.amount_remaining
                ),
                credit_state=credit.get(link.crm_account_id, "ok"),
                active_subscriptions=sum(
                    1 for s in by_customer_subs[cid] if counts_for_mrr(s, now)
                ),
                crm_note=crm_notes.get(link.crm_account_id),
            )
        )
    return rows


def customer_rows(
    runtime: Runtime, session: Session, accounts: Collection[str]
) -> list[CustomerRow]:
    """The overview's customer rows of these accounts only, read from their own mirrored
    rows: writing one account's CRM figures must not read every other customer's invoices
    (the whole overview, with fifty thousand invoices, takes seconds)."""
    now = runtime.clock()
    links = list(
        session.scalars(
            select(CustomerLink)
            .where(*_in(CustomerLink.crm_account_id, accounts))
            .order_by(CustomerLink.crm_account_id, CustomerLink.stripe_customer_id)
        )
    )
    customer_ids = {link.stripe_customer_id for link in links}
    mirrored = _mirrored(session, customer_ids, scoped=True, overview_notes=[], now=now)
    return _customer_rows(session, links, mirrored, now, scoped=True)


def compute(runtime: Runtime, session: Session) -> Overview:
    """Every overview figure, from the mirrors only (no Stripe or CRM call)."""
    now = runtime.clock()
    links = list(session.scalars(select(CustomerLink)))
    customer_ids = {link.stripe_customer_id for link in links}
    overview_notes: list[str] = []
    mirrored = _mirrored(
        session, customer_ids, scoped=False, overview_notes=overview_notes, now=now
    )
    subs, invoices, notes, refunds = (
        mirrored.subs, mirrored.invoices, mirrored.notes, mirrored.refunds
    )  # fmt: skip
    year, month = last_12_months(now), current_month(now)
    total_mrr = mrr(subs, now)
    net = net_billing(invoices, notes, refunds, year)
    net_month = net_billing(invoices, notes, refunds, month)
    owed = open_balance(invoices)
    average = average_billing_per_customer(net, len(links))
    figures = {
        c: CurrencyFigures(
            mrr=total_mrr.get(c, 0),
            net_billing=net.get(c, 0),
            average_billing_per_customer=average.get(c, 0),
            net_billing_this_month=net_month.get(c, 0),
            open_balance=owed.get(c, 0),
        )
        for c in sorted(set(total_mrr) | set(net) | set(net_month) | set(owed))
    }
    active = [s for s in subs if counts_for_mrr(s, now)]
    rows = _customer_rows(session, links, mirrored, now, scoped=False)
    for row in rows:
        if row.crm_note:
            overview_notes.append(f"{row.name}: {row.crm_note}")
    active_products = list(
        session.scalars(select(ProductMirror.id).where(ProductMirror.active.is_(True)))
    )
    prices = list(session.scalars(select(PriceMirror).where(PriceMirror.active.is_(True))))
    supported = read_cursor(session, CREDIT_NOTES_CURSOR)
    if supported == "unsupported":
        overview_notes.append(
            "The Stripe account answering does not offer credit notes, so net billing "
            "subtracts none."
        )
    return Overview(
        currency=figures,
        active_subscriptions=len(active),
        total_customers=len(links),
        customers_with_active_subscriptions=len({s.customer_id for s in active}),
        total_products=len(active_products),
        one_time_prices=sum(1 for p in prices if p.type == "one_time"),
        recurring_prices=sum(1 for p in prices if p.type == "recurring"),
        trend=mrr_trend(subs, TREND_MONTHS, now),
        customers=rows,
        as_of=now,
        credit_notes=supported or "mirrored",
        notes=overview_notes,
        periods={
            "net_billing": f"last 12 months ({_period_text(year)})",
            "net_billing_this_month": f"{month.label} ({_period_text(month)})",
        },
    )


def overview(runtime: Runtime) -> Overview:
    with runtime.db.session() as session:
        return compute(runtime, session)
