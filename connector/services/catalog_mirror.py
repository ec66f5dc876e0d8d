"""The catalogue mirror: every Stripe product and price, re-read from Stripe.

Activation reads it to refuse an archived product, the overview counts from it, the
catalogue page lists it. A clock job re-reads it once per reconciliation interval, and a
person's change (``catalog_changes``) re-reads it at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from connector.runtime import Runtime
from connector.store.cursors import cursor_moved_at, save_cursor
from connector.store.models import PriceMirror, ProductMirror

#: The cursor whose time says when the catalogue was last re-read.
CATALOG_CURSOR = "overview.catalog_refreshed_at"


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
        save_cursor(session, CATALOG_CURSOR, now.isoformat(), now)
    return len(products), len(prices)


def refresh_catalog_when_due(runtime: Runtime) -> int:
    """Clock job: re-read the catalogue once per reconciliation interval."""
    interval = timedelta(seconds=int(runtime.config.section("jobs")["reconcile_seconds"]))
    with runtime.db.session() as session:
        last = cursor_moved_at(session, CATALOG_CURSOR)
    if last is not None and runtime.clock() - last < interval:
        return 0
    refresh_catalog(runtime)
    return 0  # the mirror feeds nothing downstream; never keeps a sync round busy
