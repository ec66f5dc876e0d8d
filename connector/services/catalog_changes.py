"""Catalogue changes a person makes: archive a product or a price, change a price.

Archiving never deletes: existing subscriptions keep billing, activation stops selling it.
Stripe prices are immutable, so changing one creates a new price and archives the old.
"""

from __future__ import annotations

from typing import Any

from connector.runtime import Runtime
from connector.services import catalog
from connector.services.catalog_mirror import refresh_catalog
from connector.services.lifecycle_operations import (
    LifecycleError,
    call_stripe,
    finish,
    new_operation,
    operation_key,
)
from connector.store.models import PriceMirror, ProductMirror


def archive_product(runtime: Runtime, product_id: str, *, actor: str) -> None:
    """Archive (never delete): no new subscriptions; existing ones keep billing."""
    op_id = new_operation(runtime, "archive_product", "", None, product_id, actor, {})
    product = call_stripe(
        lambda: runtime.stripe.archive_product(product_id, operation_key(op_id, "archive")),
        "archive the product",
    )
    with runtime.db.session() as session:
        # Activation reads the mirror to refuse new subscriptions of an archived product.
        row = session.get(ProductMirror, product_id)
        if row is None:
            session.add(ProductMirror(id=product_id, name=str(product.name), active=False))
        else:
            row.active = False
    finish(
        runtime, op_id, "completed", action="product.archived", subject_type="product",
        subject_id=product_id,
    )  # fmt: skip


def archive_price(runtime: Runtime, price_id: str, *, actor: str) -> None:
    op_id = new_operation(runtime, "archive_price", "", None, price_id, actor, {})
    call_stripe(
        lambda: runtime.stripe.archive_price(price_id, operation_key(op_id, "archive")),
        "archive the price",
    )
    with runtime.db.session() as session:
        row = session.get(PriceMirror, price_id)
        if row is not None:
            row.active = False
    catalog.forget(runtime, price_id)
    finish(
        runtime, op_id, "completed", action="price.archived", subject_type="price",
        subject_id=price_id,
    )  # fmt: skip


def change_price(
    runtime: Runtime,
    price_id: str,
    *,
    unit_amount: int | None,
    interval: str | None,
    interval_count: int | None,
    actor: str,
) -> str:
    """Stripe prices are immutable: a new price with the change, then the old one archived.
    Subscriptions on the old price keep it. Returns the new price's id."""
    if unit_amount is not None and unit_amount < 0:
        raise LifecycleError("unit_amount must be 0 or more (in the currency's smallest unit).")
    old = call_stripe(lambda: runtime.stripe.retrieve_price(price_id), "read the price")
    product: Any = old.product
    params: dict[str, Any] = {
        "currency": old.currency,
        "product": product if isinstance(product, str) else product.id,
        "unit_amount": old.unit_amount if unit_amount is None else unit_amount,
        "metadata": {
            **(old.metadata.to_dict() if old.metadata else {}),
            "dealbridge_replaces": price_id,
        },
    }
    if old.recurring is not None or interval is not None:
        if interval is not None and interval not in ("day", "week", "month", "year"):
            raise LifecycleError("interval must be day, week, month or year.")
        params["recurring"] = {
            "interval": interval or (old.recurring.interval if old.recurring else "month"),
            "interval_count": interval_count
            or (old.recurring.interval_count if old.recurring else 1),
        }
    if old.lookup_key and not catalog.is_dealbridge_lookup_key(old.lookup_key):
        # A key of the user's own names "this product's price": it follows the change.
        # dealbridge's keys name exact terms, so the new terms get their own key later.
        params["lookup_key"] = old.lookup_key
        params["transfer_lookup_key"] = True
    op_id = new_operation(runtime, "change_price", "", None, price_id, actor, {"new": params})
    new = call_stripe(
        lambda: runtime.stripe.create_price(params, operation_key(op_id, "price")),  # type: ignore[arg-type]
        "create the new price",
    )
    call_stripe(
        lambda: runtime.stripe.archive_price(price_id, operation_key(op_id, "archive")),
        "archive the old price",
    )
    catalog.forget(runtime, price_id)
    refresh_catalog(runtime)
    finish(
        runtime, op_id, "completed", action="price.changed", subject_type="price",
        subject_id=price_id, new_price_id=new.id,
    )  # fmt: skip
    return str(new.id)
