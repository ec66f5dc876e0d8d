"""CRM products and prices as Stripe products and prices: matched, created once, reused.

A price is found by its ``lookup_key``, derived from everything that makes it distinct
(product, currency, amount, interval); Stripe prices are immutable, so a new amount is a
new price. Both are remembered in ``catalog_links``; creation uses idempotency keys from
the same derivation, so two activations racing create one product and one price.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from connector.billing.gateway import CouponTerms, StripeRejected
from connector.domain.money import format_money
from connector.domain.plan import BillingPlan, PlanLine
from connector.runtime import Runtime
from connector.store.models import CatalogLink, ProductMirror


class ArchivedProduct(Exception):
    """The line's Stripe product is archived: it takes no new subscriptions or invoices."""


def product_key(line: PlanLine) -> str:
    return line.product_id or (f"sku:{line.sku}" if line.sku else f"name:{line.product}")


def price_lookup_key(line: PlanLine, plan: BillingPlan) -> str:
    recurring = f"{plan.interval}:{plan.interval_count}" if line.kind == "recurring" else "one_time"
    amount = line.unit_amount if line.unit_amount_decimal is None else line.unit_amount_decimal
    basis = f"{product_key(line)}|{plan.currency}|{amount}|{recurring}"
    return "dealbridge_" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def coupon_id(line: PlanLine, plan: BillingPlan) -> str:
    """The id of the amount-off coupon for a line's discount: one per currency and amount."""
    basis = f"amount_off|{plan.currency}|{line.discount_amount}|forever"
    return _derived_id(basis)


def _derived_id(terms: str) -> str:
    """A coupon id derived from its terms: the same terms, the same coupon."""
    return "dealbridge_" + hashlib.sha256(terms.encode()).hexdigest()[:24]


def _coupon(runtime: Runtime, wanted: str, terms: CouponTerms) -> str:
    """The coupon ``wanted`` (an id derived from its terms), created once with ``terms``: a
    retry, or another plan with the same terms, reuses it, even one created by a racing
    worker (Stripe answers ``resource_already_exists``)."""
    key = f"coupon:{wanted}"
    known = _known(runtime, key)
    if known:
        return known
    try:
        found = runtime.stripe.create_coupon(
            {"id": wanted, **terms}, idempotency_key=f"dealbridge:{key}"
        ).id
    except StripeRejected as exc:
        if exc.code != "resource_already_exists":
            raise
        found = runtime.stripe.retrieve_coupon(wanted).id
    _remember(runtime, key, "coupon", found)
    return _known(runtime, key) or found


def ensure_coupon(runtime: Runtime, line: PlanLine, plan: BillingPlan) -> str | None:
    """The forever amount-off coupon billing a CRM line discount, created once; None when
    the line has no discount. Its id is derived from its terms, so a retry or a second plan
    with the same discount reuses it."""
    if not line.discount_amount:
        return None
    return _coupon(
        runtime,
        coupon_id(line, plan),
        {
            "amount_off": line.discount_amount,
            "currency": plan.currency,
            "duration": "forever",
            "name": f"Line discount {format_money(line.discount_amount, plan.currency)}",
            "metadata": {"created_by": "dealbridge"},
        },
    )


def percent_coupon_id(plan: BillingPlan) -> str:
    """The id of the percent-off coupon of a deal discount: one per percentage."""
    basis = f"percent_off|{plan.discount_percent}|forever"
    return _derived_id(basis)


def ensure_deal_coupon(runtime: Runtime, plan: BillingPlan) -> str | None:
    """The forever percent-off coupon billing the deal discount, created once; None when
    the plan has no deal discount. Like line coupons, its id is derived from its terms."""
    if plan.discount_percent is None:
        return None
    return _coupon(
        runtime,
        percent_coupon_id(plan),
        {
            "percent_off": str(plan.discount_percent),  # type: ignore[typeddict-item]
            "duration": "forever",
            "name": f"Deal discount {plan.discount_percent}%",
            "metadata": {"created_by": "dealbridge"},
        },
    )


def amount_coupon_id(plan: BillingPlan) -> str:
    """The id of the once amount-off coupon of a deal discount amount: one per currency and
    amount (a line's forever coupon of the same amount is a different coupon)."""
    basis = f"amount_off|{plan.currency}|{plan.discount_amount}|once"
    return _derived_id(basis)


def ensure_deal_amount_coupon(runtime: Runtime, plan: BillingPlan) -> str | None:
    """The amount-off coupon of duration ``once`` billing the deal's amount off the contract
    on its first invoice (``docs/billing-rules.md`` §2.9), created once; None without one."""
    if not plan.discount_amount:
        return None
    return _coupon(
        runtime,
        amount_coupon_id(plan),
        {
            "amount_off": plan.discount_amount,
            "currency": plan.currency,
            "duration": "once",
            "name": f"Deal discount {format_money(plan.discount_amount, plan.currency)}",
            "metadata": {"created_by": "dealbridge"},
        },
    )


def forget(runtime: Runtime, stripe_id: str) -> None:
    """A product or price was archived: never reuse it for a new activation."""
    with runtime.db.session() as session:
        session.execute(delete(CatalogLink).where(CatalogLink.stripe_id == stripe_id))


def is_dealbridge_lookup_key(lookup_key: str | None) -> bool:
    """dealbridge's keys encode a price's terms, so they must never move to other terms."""
    return bool(lookup_key) and str(lookup_key).startswith("dealbridge_")


def _remember(runtime: Runtime, key: str, kind: str, stripe_id: str) -> None:
    try:
        with runtime.db.session() as session:
            session.add(CatalogLink(key=key, kind=kind, stripe_id=stripe_id))
    except IntegrityError:
        pass  # another worker remembered the same object


def _known(runtime: Runtime, key: str) -> str | None:
    with runtime.db.session() as session:
        link = session.get(CatalogLink, key)
        return link.stripe_id if link else None


def ensure_product(runtime: Runtime, line: PlanLine) -> str:
    key = f"product:{product_key(line)}"
    known = _known(runtime, key)
    if known:
        return known
    metadata = {"created_by": "dealbridge"}
    if line.product_id:
        metadata["crm_product_id"] = line.product_id
    if line.sku:
        metadata["sku"] = line.sku
    product = runtime.stripe.create_product(
        {"name": line.product, "metadata": metadata},
        idempotency_key="dealbridge:" + hashlib.sha256(key.encode()).hexdigest()[:40],
    )
    _remember(runtime, key, "product", product.id)
    return _known(runtime, key) or product.id


def _refuse_archived_product(runtime: Runtime, line: PlanLine) -> None:
    """An archived product is not sold again: say so before anything is created in Stripe,
    rather than quietly billing it (or making a second product of the same name)."""
    product_id = _known(runtime, f"product:{product_key(line)}")
    if product_id is None:
        return
    with runtime.db.session() as session:
        mirror = session.get(ProductMirror, product_id)
        if mirror is None or mirror.active:
            return
        name = mirror.name
    # The mirror may be older than an unarchiving in Stripe: ask (outside the store's
    # transaction) before refusing.
    if runtime.stripe.retrieve_product(product_id).active:
        with runtime.db.session() as session:
            found = session.get(ProductMirror, product_id)
            if found is not None:
                found.active = True
        return
    raise ArchivedProduct(
        f"the Stripe product {name!r} ({product_id}) for {line.product!r} is "
        "archived, so it is not sold again; unarchive it in Stripe, or bill this line "
        "with another product"
    )


def ensure_price(runtime: Runtime, line: PlanLine, plan: BillingPlan) -> str:
    _refuse_archived_product(runtime, line)
    lookup_key = price_lookup_key(line, plan)
    key = f"price:{lookup_key}"
    known = _known(runtime, key)
    if known:
        return known
    existing = runtime.stripe.find_price_by_lookup_key(lookup_key)
    if existing is not None and existing.active:
        _remember(runtime, key, "price", existing.id)
        return existing.id
    # An archived price with these terms is never reused. Its replacement is a new write,
    # so its idempotency key names the price it replaces: Stripe would otherwise replay the
    # original (archived) price, while a retry of this same creation stays idempotent.
    replacing = f":replaces:{existing.id}" if existing is not None else ""
    product_id = ensure_product(runtime, line)
    params: dict[str, object] = {
        "product": product_id,
        "currency": plan.currency,
        "lookup_key": lookup_key,
        # The key may still sit on an archived price with the same terms: take it over.
        "transfer_lookup_key": True,
        "metadata": {"created_by": "dealbridge"},
    }
    if line.unit_amount_decimal is not None:
        params["unit_amount_decimal"] = line.unit_amount_decimal
    else:
        params["unit_amount"] = line.unit_amount
    if line.kind == "recurring":
        assert plan.interval is not None and plan.interval_count is not None
        params["recurring"] = {"interval": plan.interval, "interval_count": plan.interval_count}
    price = runtime.stripe.create_price(
        params,  # type: ignore[arg-type]
        idempotency_key=f"dealbridge:price:{lookup_key}{replacing}",
    )
    _remember(runtime, key, "price", price.id)
    return _known(runtime, key) or price.id


def stripe_items(
    runtime: Runtime, plan: BillingPlan, extra: tuple[PlanLine, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stripe items for the plan's lines (recurring, one-time), each line discount as an
    amount-off coupon on its line; ``extra`` one-time lines (catch-up) go last. A plan billed
    once has only one-time items."""
    recurring: list[dict[str, Any]] = []
    one_time: list[dict[str, Any]] = []
    for line in (*plan.lines, *extra):
        entry: dict[str, Any] = {
            "price": ensure_price(runtime, line, plan),
            "quantity": line.quantity,
        }
        coupon = ensure_coupon(runtime, line, plan)
        if coupon is not None:
            entry["discounts"] = [{"coupon": coupon}]
        billed_on_schedule = plan.invoice_type == "recurring" and line.kind == "recurring"
        (recurring if billed_on_schedule else one_time).append(entry)
    return recurring, one_time
