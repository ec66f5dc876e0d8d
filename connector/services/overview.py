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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.domain.metrics import (
    MRR_STATUSES,
    CreditNoteFacts,
    Discount,
    InvoiceFacts,
    PriceFacts,
    SubscriptionFacts,
    SubscriptionItemFacts,
    average_billing_per_customer,
    mrr,
    mrr_trend,
    net_billing,
)
from connector.domain.timestamps import datetime_from_unix
from connector.runtime import Runtime
from connector.store import models
from connector.store.cursors import read_cursor
from connector.store.models import (
    CreditNoteMirror,
    CustomerLink,
    InvoiceMirror,
    Plan,
    PriceMirror,
    ProductMirror,
    SubscriptionMirror,
)

log = logging.getLogger(__name__)

TREND_MONTHS = 12
#: Invoices a customer still owes on.
UNPAID_STATUSES = frozenset({"open", "uncollectible"})
#: The cursor that says whether the Stripe answering offers credit notes (``mirrored``) or
#: not (``unsupported``), as the last refresh from Stripe found.
CREDIT_NOTES_CURSOR = "overview.credit_notes"


# --------------------------------------------------------------------------- facts


def _discount(raw: Any) -> Discount | None:
    """A subscription discount as Stripe sends it (expanded, or a bare id we cannot read)."""
    if not isinstance(raw, Mapping):
        return None
    coupon = raw.get("coupon") or (raw.get("source") or {}).get("coupon")
    if not isinstance(coupon, Mapping):
        return None
    percent = coupon.get("percent_off")
    return Discount(
        percent_off=Decimal(str(percent)) if percent is not None else None,
        amount_off=int(coupon["amount_off"]) if coupon.get("amount_off") is not None else None,
        currency=coupon.get("currency"),
    )


def subscription_facts(data: Mapping[str, Any], status: str | None = None) -> SubscriptionFacts:
    """A mirrored (or freshly listed) Stripe subscription as the metrics' plain facts."""
    items: list[SubscriptionItemFacts] = []
    for item in (data.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        recurring = price.get("recurring") or {}
        items.append(
            SubscriptionItemFacts(
                price=PriceFacts(
                    unit_amount=int(price.get("unit_amount") or 0),
                    currency=str(price.get("currency") or data.get("currency") or "").lower(),
                    interval=recurring.get("interval"),
                    interval_count=int(recurring.get("interval_count") or 1),
                ),
                quantity=int(item.get("quantity") or 1),
            )
        )
    discounts = tuple(d for d in (_discount(raw) for raw in data.get("discounts") or []) if d)
    return SubscriptionFacts(
        id=str(data["id"]),
        customer_id=str(data.get("customer")),
        status=status or str(data.get("status")),
        items=tuple(items),
        discounts=discounts,
        start=datetime_from_unix(data.get("start_date") or data.get("created")),
        ended_at=datetime_from_unix(data.get("ended_at")),
    )


def invoice_facts(row: InvoiceMirror) -> InvoiceFacts:
    return InvoiceFacts(
        id=row.id,
        customer_id=row.stripe_customer_id,
        status=row.status,
        currency=row.currency,
        total_excluding_tax=row.total_excluding_tax,
        created=row.created,
    )


def credit_note_facts(row: CreditNoteMirror) -> CreditNoteFacts:
    return CreditNoteFacts(
        id=row.id,
        customer_id=row.stripe_customer_id,
        currency=row.currency,
        total_excluding_tax=row.total_excluding_tax,
        status=row.status,
        created=row.created,
    )


# --------------------------------------------------------------------------- the overview


@dataclass(frozen=True)
class CurrencyFigures:
    mrr: int
    net_billing: int
    average_billing_per_customer: int


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

    def as_json(self) -> dict[str, Any]:
        return {
            "currency": {
                c: {
                    "mrr": f.mrr,
                    "net_billing": f.net_billing,
                    "average_billing_per_customer": f.average_billing_per_customer,
                }
                for c, f in self.currency.items()
            },
            "active_subscriptions": self.active_subscriptions,
            "total_customers": self.total_customers,
            "customers_with_active_subscriptions": self.customers_with_active_subscriptions,
            "total_products": self.total_products,
            "one_time_prices": self.one_time_prices,
            "recurring_prices": self.recurring_prices,
            "mrr_trend": [{"month": m, "mrr": v} for m, v in self.trend],
            "customers": [c.__dict__ for c in self.customers],
            "as_of": self.as_of.isoformat(),
            "credit_notes": self.credit_notes,
            "notes": list(self.notes),
        }


def _credit_states(session: Session) -> dict[str, str]:
    """Each account's credit state as the credit service last recorded it (``ok``,
    ``on_hold``, ``over_limit``); accounts it has not looked at yet are ``ok``."""
    table: Any = getattr(models, "AccountCredit", None)
    if table is None:
        return {}
    return {row.crm_account_id: str(row.state) for row in session.scalars(select(table))}


def _account_names(session: Session) -> dict[str, str]:
    names: dict[str, str] = {}
    for plan in session.scalars(select(Plan).order_by(Plan.created_at)):
        account = (plan.deal_data or {}).get("account") or {}
        if plan.crm_account_id and account.get("name"):
            names[plan.crm_account_id] = str(account["name"])
    return names


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for currency, amount in more.items():
        into[currency] = into.get(currency, 0) + amount


def compute(runtime: Runtime, session: Session) -> Overview:
    """Every overview figure, from the mirrors only (no Stripe or CRM call)."""
    links = list(session.scalars(select(CustomerLink)))
    customer_ids = {link.stripe_customer_id for link in links}
    subs = [
        subscription_facts(row.data, row.status)
        for row in session.scalars(select(SubscriptionMirror))
        if row.stripe_customer_id in customer_ids
    ]
    invoices = [
        row
        for row in session.scalars(select(InvoiceMirror).where(InvoiceMirror.deleted.is_(False)))
        if row.stripe_customer_id in customer_ids
    ]
    notes = [
        row
        for row in session.scalars(select(CreditNoteMirror))
        if row.stripe_customer_id in customer_ids
    ]
    total_mrr = mrr(subs)
    net = net_billing([invoice_facts(i) for i in invoices], [credit_note_facts(n) for n in notes])
    average = average_billing_per_customer(net, len(links))
    figures = {
        c: CurrencyFigures(total_mrr.get(c, 0), net.get(c, 0), average.get(c, 0))
        for c in sorted(set(total_mrr) | set(net))
    }
    active = [s for s in subs if s.status in MRR_STATUSES]

    by_customer_subs: dict[str, list[SubscriptionFacts]] = defaultdict(list)
    for sub in subs:
        by_customer_subs[sub.customer_id].append(sub)
    by_customer_invoices: dict[str, list[InvoiceMirror]] = defaultdict(list)
    for invoice in invoices:
        by_customer_invoices[invoice.stripe_customer_id].append(invoice)
    by_customer_notes: dict[str, list[CreditNoteMirror]] = defaultdict(list)
    for note in notes:
        by_customer_notes[note.stripe_customer_id].append(note)
    names = _account_names(session)
    credit = _credit_states(session)
    rows: list[CustomerRow] = []
    for link in links:
        cid = link.stripe_customer_id
        own_invoices = by_customer_invoices[cid]
        balance: dict[str, int] = {}
        for invoice in own_invoices:
            if invoice.status == "open":
                _add(balance, {invoice.currency: invoice.amount_remaining})
        rows.append(
            CustomerRow(
                crm_account_id=link.crm_account_id,
                stripe_customer_id=cid,
                name=names.get(link.crm_account_id, link.crm_account_id),
                mrr=mrr(by_customer_subs[cid]),
                net_billing=net_billing(
                    [invoice_facts(i) for i in own_invoices],
                    [credit_note_facts(n) for n in by_customer_notes[cid]],
                ),
                open_balance=dict(sorted(balance.items())),
                unpaid_invoices=sum(
                    1 for i in own_invoices if i.status in UNPAID_STATUSES and i.amount_remaining
                ),
                credit_state=credit.get(link.crm_account_id, "ok"),
                active_subscriptions=sum(
                    1 for s in by_customer_subs[cid] if s.status in MRR_STATUSES
                ),
            )
        )
    active_products = list(
        session.scalars(select(ProductMirror.id).where(ProductMirror.active.is_(True)))
    )
    prices = list(session.scalars(select(PriceMirror).where(PriceMirror.active.is_(True))))
    supported = read_cursor(session, CREDIT_NOTES_CURSOR)
    overview_notes: list[str] = []
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
        trend=mrr_trend(subs, TREND_MONTHS, runtime.today()),
        customers=rows,
        as_of=runtime.clock(),
        credit_notes=supported or "mirrored",
        notes=overview_notes,
    )


def overview(runtime: Runtime) -> Overview:
    with runtime.db.session() as session:
        return compute(runtime, session)
