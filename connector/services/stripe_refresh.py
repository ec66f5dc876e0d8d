"""Re-read the mirrors from Stripe (the overview's ``?refresh=1``): every linked customer's
subscriptions, invoices, credit notes and refunds, and the catalogue.

Whatever differs from the mirror goes through the same sync as a webhook, so the CRM hears
of it too; then the accounts' figures are queued for the CRM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connector.billing.objects import plain
from connector.runtime import Runtime
from connector.services.account_metrics import write_account_metrics
from connector.services.catalog_mirror import refresh_catalog
from connector.services.credit_notes import mirror_credit_note, mirror_refund
from connector.services.invoice_sync import amount_credited, sync_invoice
from connector.services.overview import CREDIT_NOTES_CURSOR
from connector.services.subscription_sync import (
    CUSTOMER_DISCOUNT,
    EARLIER,
    customer_apart,
    sync_subscription,
)
from connector.store.cursors import save_cursor
from connector.store.models import CustomerLink, InvoiceMirror, SubscriptionMirror


@dataclass
class RefreshResult:
    subscriptions: int = 0
    invoices: int = 0
    credit_notes: int = 0
    refunds: int = 0
    products: int = 0
    prices: int = 0
    credit_notes_supported: bool = True


def _store_credit_notes(runtime: Runtime, link: CustomerLink, notes: list[Any]) -> None:
    now = runtime.clock()
    with runtime.db.session() as session:
        for note in notes:
            mirror_credit_note(session, link.crm_account_id, plain(note), now)


def _store_refunds(runtime: Runtime, link: CustomerLink) -> int:
    refunds = [plain(r) for r in runtime.stripe.iter_customer_refunds(link.stripe_customer_id)]
    now = runtime.clock()
    with runtime.db.session() as session:
        for refund in refunds:
            mirror_refund(session, link.crm_account_id, link.stripe_customer_id, refund, now)
    return len(refunds)


def _as_listed(data: Any) -> Any:
    """A mirrored subscription as a listing shows it: a listing cannot expand prices' tiers
    or item discounts' coupons (past four levels), which the mirror fills in."""
    if not isinstance(data, dict):
        return data
    copy = customer_apart(json.loads(json.dumps(data)))
    copy.pop(EARLIER, None)  # dealbridge's own record of earlier states
    own = copy.get(CUSTOMER_DISCOUNT)
    source = own.get("source") if isinstance(own, dict) else None
    if isinstance(source, dict) and isinstance(source.get("coupon"), dict):
        source["coupon"] = source["coupon"].get("id")
    for item in (copy.get("items") or {}).get("data") or []:
        (item.get("price") or {}).pop("tiers", None)
        for discount in item.get("discounts") or []:
            source = discount.get("source") if isinstance(discount, dict) else None
            if isinstance(source, dict) and isinstance(source.get("coupon"), dict):
                source["coupon"] = source["coupon"].get("id")
    return copy


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
                same = mirror is not None and _as_listed(mirror.data) == _as_listed(data)
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
                    and row.amount_credited == amount_credited(plain(invoice))
                    and (row.effective_at is not None or invoice.status == "draft")
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
        result.refunds += _store_refunds(runtime, link)
    with runtime.db.session() as session:
        supported = "mirrored" if result.credit_notes_supported else "unsupported"
        save_cursor(session, CREDIT_NOTES_CURSOR, supported, runtime.clock())
    result.products, result.prices = refresh_catalog(runtime)
    write_account_metrics(runtime)
    return result
