"""Import phase ``products``: Stripe products become CRM products, then Stripe prices become
price book entries, each an upsert by its Stripe id."""

from __future__ import annotations

from typing import Any

from connector.crm.base import PriceEntryRecord, ProductRecord, WriteResult
from connector.services.import_run import ImportRun
from connector.store.models import CatalogLink


def import_catalog(run: ImportRun) -> None:
    for chunk, exhausted in run.chunks("products", "products"):
        records = [
            ProductRecord(
                stripe_product_id=p["id"],
                name=p["name"],
                sku=(p.get("metadata") or {}).get("sku"),
                active=bool(p.get("active")),
                description=p.get("description"),
            )
            for p in chunk
            if not p.get("deleted")
        ]
        if run.options.dry_run:
            run.report.planned += [f"would upsert product {r.stripe_product_id}" for r in records]
            run.report.products += len(records)
            run.progress("products", len(chunk))
            continue
        results = run.checked(run.runtime.crm.upsert_products(records))
        run.report.products += sum(1 for r in results if r.ok)

        def write(session: Any, results: list[WriteResult] = results) -> None:
            for result in results:
                if result.ok and result.crm_id:
                    key = f"product:{result.crm_id}"
                    if session.get(CatalogLink, key) is None:
                        session.add(CatalogLink(key=key, kind="product", stripe_id=result.key))

        run.commit_chunk("products", chunk, exhausted, write)
        run.progress("products", len(chunk))
    if "products" not in run.report.finished and not run.options.dry_run:
        return  # prices wait for every product
    for chunk, exhausted in run.chunks("prices", "prices"):
        entries = [
            PriceEntryRecord(
                stripe_price_id=p["id"],
                stripe_product_id=p["product"]
                if isinstance(p["product"], str)
                else p["product"]["id"],
                currency=p["currency"],
                unit_amount=p.get("unit_amount"),
                active=bool(p.get("active")),
                recurring_interval=(p.get("recurring") or {}).get("interval"),
                nickname=p.get("nickname"),
            )
            for p in chunk
        ]
        if run.options.dry_run:
            run.report.planned += [f"would upsert price {e.stripe_price_id}" for e in entries]
            run.report.prices += len(entries)
            run.progress("prices", len(chunk))
            continue
        results = run.checked(run.runtime.crm.upsert_price_entries(entries))
        run.report.prices += sum(1 for r in results if r.ok)
        run.commit_chunk("prices", chunk, exhausted, lambda _session: None)
        run.progress("prices", len(chunk))
    if "prices" in run.report.finished and "products" in run.report.finished:
        run.report.finished.remove("prices")
    elif "products" in run.report.finished:
        run.report.finished.remove("products")  # interrupted among the prices
