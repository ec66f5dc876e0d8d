"""The billing overview: dealbridge's mirrors of Stripe turned into the figures finance reads.

The figures are defined once, in ``connector/domain/metrics.py``; this module only reads the
facts out of the mirrors (kept current by webhooks and reconciliation, so the page is fast)
and hands them over. ``refresh_from_stripe`` re-reads every linked customer's subscriptions,
invoices and credit notes, and the catalogue, through the gateway first (``?refresh=1``).

Counts, in plain words:

* *active subscriptions*: subscriptions that are active or past due (the ones MRR counts);
* *total customers*: Stripe customers linked to a CRM account;
* *customers with active subscriptions*: of those, the ones with an active subscription;
* *products*, *one-time prices*, *recurring prices*: the active (not archived) ones.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.billing.objects import plain
from connector.crm.base import Money
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
from connector.services import crm_outbound
from connector.services.credit_notes import mirror_credit_note
from connector.services.invoice_sync import sync_invoice, sync_subscription
from connector.store import models
from connector.store.models import (
    AccountMetrics,
    CreditNoteMirror,
    Cursor,
    CustomerLink,
    InvoiceMirror,
    Plan,
    PriceMirror,
    ProductMirror,
    SubscriptionMirror,
)

log = logging.getLogger(__name__)

TREND_MONTHS = 12
CATALOG_CURSOR = "overview.catalog_refreshed_at"
#: Invoices a customer still owes on.
UNPAID_STATUSES = frozenset({"open", "uncollectible"})


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
    supported = session.get(Cursor, "overview.credit_notes")
    overview_notes: list[str] = []
    if supported is not None and supported.value == "unsupported":
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
        credit_notes=supported.value if supported is not None else "mirrored",
        notes=overview_notes,
    )


def overview(runtime: Runtime) -> Overview:
    with runtime.db.session() as session:
        return compute(runtime, session)


# --------------------------------------------------------------------------- the table


SORT_KEYS = ("name", "mrr", "net_billing", "unpaid_invoices", "credit_state")


def customer_table(
    rows: Iterable[CustomerRow],
    *,
    sort: str = "name",
    descending: bool = False,
    query: str = "",
    credit_state: str = "",
    currency: str | None = None,
) -> list[CustomerRow]:
    """Filter (name or id contains ``query``, any case; exact credit state) and sort.

    Money columns sort by the amount in ``currency`` (a customer without it counts 0), so
    amounts in different currencies are never compared with each other.
    """
    wanted = query.strip().casefold()
    kept = [
        r
        for r in rows
        if (
            not wanted
            or wanted in r.name.casefold()
            or wanted in r.crm_account_id.casefold()
            or wanted in r.stripe_customer_id.casefold()
        )
        and (not credit_state or r.credit_state == credit_state)
    ]
    key = sort if sort in SORT_KEYS else "name"

    def sort_key(row: CustomerRow) -> tuple[Any, str]:
        value: Any
        if key in ("mrr", "net_billing"):
            amounts: dict[str, int] = getattr(row, key)
            value = amounts.get(currency, 0) if currency else sum(amounts.values())
        elif key == "name":
            value = row.name.casefold()
        else:
            value = getattr(row, key)
        return value, row.crm_account_id

    return sorted(kept, key=sort_key, reverse=descending)


# --------------------------------------------------------------------------- refresh


@dataclass
class RefreshResult:
    subscriptions: int = 0
    invoices: int = 0
    credit_notes: int = 0
    products: int = 0
    prices: int = 0
    credit_notes_supported: bool = True


def refresh_catalog(runtime: Runtime) -> tuple[int, int]:
    """Re-read every product and price from Stripe into the catalogue mirror."""
    now = runtime.clock()
    products = list(runtime.stripe.iter_products())
    prices = list(runtime.stripe.iter_prices())
    with runtime.db.session() as session:
        for product in products:
            row = session.get(ProductMirror, product.id) or ProductMirror(id=product.id)
            row.name = str(product.name or product.id)[:250]
            row.active = bool(product.active)
            row.synced_at = now
            session.merge(row)
        for price in prices:
            row_p = session.get(PriceMirror, price.id) or PriceMirror(id=price.id)
            recurring = price.recurring
            product_ref: Any = price.product
            row_p.product_id = product_ref if isinstance(product_ref, str) else product_ref.id
            row_p.active = bool(price.active)
            row_p.type = "recurring" if recurring else "one_time"
            row_p.currency = str(price.currency)
            row_p.unit_amount = price.unit_amount
            row_p.interval = recurring.interval if recurring else None
            row_p.interval_count = recurring.interval_count if recurring else None
            row_p.synced_at = now
            session.merge(row_p)
        cursor = session.get(Cursor, CATALOG_CURSOR)
        if cursor is None:
            session.add(Cursor(name=CATALOG_CURSOR, value=now.isoformat(), updated_at=now))
        else:
            cursor.value = now.isoformat()
            cursor.updated_at = now
    return len(products), len(prices)


def _store_credit_notes(runtime: Runtime, link: CustomerLink, notes: list[Any]) -> None:
    now = runtime.clock()
    with runtime.db.session() as session:
        for note in notes:
            mirror_credit_note(session, link.crm_account_id, plain(note), now)


def _set_cursor(runtime: Runtime, name: str, value: str) -> None:
    now = runtime.clock()
    with runtime.db.session() as session:
        cursor = session.get(Cursor, name)
        if cursor is None:
            session.add(Cursor(name=name, value=value, updated_at=now))
        else:
            cursor.value = value
            cursor.updated_at = now


def refresh_from_stripe(runtime: Runtime) -> RefreshResult:
    """Re-read every linked customer's subscriptions, invoices and credit notes, and the
    catalogue, from Stripe; whatever differs from the mirror goes through the same sync as
    a webhook (so the CRM hears of it too). Then queue the accounts' figures for the CRM."""
    result = RefreshResult()
    with runtime.db.session() as session:
        links = list(session.scalars(select(CustomerLink)))
        session.expunge_all()
    for link in links:
        cid = link.stripe_customer_id
        for sub in runtime.stripe.iter_customer_subscriptions(cid):
            data = plain(sub)
            with runtime.db.session() as session:
                mirror = session.get(SubscriptionMirror, sub.id)
                same = mirror is not None and mirror.data == data
            if not same:
                sync_subscription(runtime, sub.id, cid)
            result.subscriptions += 1
        for invoice in runtime.stripe.iter_invoices({"customer": cid}):
            with runtime.db.session() as session:
                row = session.get(InvoiceMirror, invoice.id)
                same = (
                    row is not None
                    and not row.deleted
                    and row.status == invoice.status
                    and row.amount_remaining == int(invoice.amount_remaining or 0)
                    and row.total_excluding_tax
                    == int(invoice.total_excluding_tax or invoice.total or 0)
                )
            if not same:
                sync_invoice(runtime, invoice.id, cid)
            result.invoices += 1
        notes = runtime.stripe.list_credit_notes(cid)
        if notes is None:
            result.credit_notes_supported = False
        else:
            _store_credit_notes(runtime, link, notes)
            result.credit_notes += len(notes)
    _set_cursor(
        runtime,
        "overview.credit_notes",
        "mirrored" if result.credit_notes_supported else "unsupported",
    )
    result.products, result.prices = refresh_catalog(runtime)
    write_account_metrics(runtime)
    return result


# --------------------------------------------------------------------------- CRM write-back


def _main_currency(row: CustomerRow) -> str | None:
    """The currency an account's CRM figures are written in: where its MRR is largest, else
    its net billing, else its open balance (a CRM field holds one amount)."""
    for amounts in (row.mrr, row.net_billing, row.open_balance):
        positive = {c: a for c, a in amounts.items() if a}
        if positive:
            return max(sorted(positive), key=lambda c: positive[c])
    return None


def write_account_metrics(runtime: Runtime) -> int:
    """Queue (batched, via the outbox) each account's MRR, net billing and open balance for
    its CRM record, when they differ from what was last queued. Returns the accounts queued."""
    queued = 0
    with runtime.db.session() as session:
        for row in compute(runtime, session).customers:
            currency = _main_currency(row)
            if currency is None:
                continue
            figures = (
                row.mrr.get(currency, 0),
                row.net_billing.get(currency, 0),
                row.open_balance.get(currency, 0),
            )
            last = session.get(AccountMetrics, row.crm_account_id)
            if last is not None and (
                last.currency,
                last.mrr,
                last.net_billing,
                last.open_balance,
            ) == (currency, *figures):
                continue
            if last is None:
                last = AccountMetrics(crm_account_id=row.crm_account_id)
                session.add(last)
            last.currency = currency
            last.mrr, last.net_billing, last.open_balance = figures
            last.written_at = runtime.clock()
            crm_outbound.update_account(
                runtime,
                session,
                row.crm_account_id,
                {
                    "mrr": Money(figures[0], currency),
                    "net_billing": Money(figures[1], currency),
                    "open_balance": Money(figures[2], currency),
                },
            )
            queued += 1
    return queued


def refresh_catalog_when_due(runtime: Runtime) -> int:
    """Clock job: re-read the catalogue once per reconciliation interval."""
    interval = timedelta(seconds=int(runtime.config.section("jobs")["reconcile_seconds"]))
    with runtime.db.session() as session:
        cursor = session.get(Cursor, CATALOG_CURSOR)
        last = cursor.updated_at if cursor is not None else None
    if last is not None and runtime.clock() - last < interval:
        return 0
    refresh_catalog(runtime)
    return 0  # the mirror feeds nothing downstream; never keeps a sync round busy
