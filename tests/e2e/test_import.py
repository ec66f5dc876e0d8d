"""`dealbridge import stripe` end to end: an existing Stripe account brought under dealbridge.

The Stripe sandbox is filled through stripe-python as a company's history would be:
customers naming their CRM account in metadata, customers whose email is a seed contact's
in another case, customers nobody can match, products, prices and invoices.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from connector.services import importer
from connector.services.import_run import ImportOptions, ImportReport
from connector.store.models import (
    AuditEntry,
    Cursor,
    CustomerLink,
    InvoiceMirror,
)
from tests.e2e.conftest import World


class Interrupt(Exception):
    pass


def _fill_stripe(world: World) -> dict[str, Any]:
    stripe = world.stripe_client()
    acme = world.crm.ref("acme")
    by_metadata = stripe.v1.customers.create(
        params={"name": "Acme (billing)", "metadata": {"crm_account_id": acme}}
    )
    by_email = stripe.v1.customers.create(
        params={"name": "Greta", "email": "greta.hoffmann@GLOBEX.example"}
    )
    stale = stripe.v1.customers.create(
        params={"name": "Gone Inc", "metadata": {"crm_account_id": "001000000000000AAA"}}
    )
    nobody = stripe.v1.customers.create(
        params={"name": "Wayne Corp", "email": "bruce@wayne.example"}
    )
    platform = stripe.v1.products.create(params={"name": "Platform", "metadata": {"sku": "PLT"}})
    seats = stripe.v1.products.create(params={"name": "Seats"})
    monthly = stripe.v1.prices.create(
        params={"product": platform.id, "currency": "usd", "unit_amount": 120050,
                "recurring": {"interval": "month"}}
    )  # fmt: skip
    # In USD, the currency of the Dynamics world's price list (one currency per list).
    seat = stripe.v1.prices.create(
        params={"product": seats.id, "currency": "usd", "unit_amount": 900}
    )
    invoices = []
    for customer, amount in ((by_metadata, 5000), (by_metadata, 7000), (by_email, 1234)):
        stripe.v1.invoice_items.create(
            params={"customer": customer.id, "amount": amount, "currency": "usd"}
        )
        invoice = stripe.v1.invoices.create(
            params={"customer": customer.id, "pending_invoice_items_behavior": "include",
                    "collection_method": "send_invoice", "days_until_due": 30}
        )  # fmt: skip
        invoices.append(stripe.v1.invoices.finalize_invoice(invoice.id).id)
    return {
        "by_metadata": by_metadata.id,
        "by_email": by_email.id,
        "stale": stale.id,
        "nobody": nobody.id,
        "products": {platform.id, seats.id},
        "prices": {monthly.id: Decimal("1200.50"), seat.id: Decimal("9.00")},
        "invoices": set(invoices),
    }


def _links(world: World) -> dict[str, str]:
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        rows = session.execute(select(CustomerLink.stripe_customer_id, CustomerLink.crm_account_id))
        return {customer: account for customer, account in rows}


def _run(world: World, **options: Any) -> ImportReport:
    assert world.runtime is not None
    progress = options.pop("progress", None)
    return importer.import_stripe(world.runtime, ImportOptions(**options), progress=progress)


def _assert_imported_once(world: World, filled: dict[str, Any]) -> None:
    links = _links(world)
    assert links == {
        filled["by_metadata"]: world.crm.ref("acme"),
        filled["by_email"]: world.crm.ref("globex"),
    }
    accounts = {a["id"]: a for a in world.crm.accounts()}
    assert accounts[world.crm.ref("acme")]["stripe_customer_id"] == filled["by_metadata"]
    assert accounts[world.crm.ref("globex")]["stripe_customer_id"] == filled["by_email"]
    products = Counter(
        p["stripe_product_id"] for p in world.crm.products() if p["stripe_product_id"]
    )
    assert products == Counter(filled["products"])
    entries = world.crm.price_entries()
    assert {e["stripe_price_id"]: e["unit_price"] for e in entries} == filled["prices"]
    assert len(entries) == len(filled["prices"])
    invoices = Counter(i["stripe_invoice_id"] for i in world.crm.invoices())
    assert invoices == Counter(filled["invoices"])
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        mirrored = set(session.scalars(select(InvoiceMirror.id)))
    assert mirrored == filled["invoices"]


def test_customers_are_linked_by_metadata_then_email_and_the_rest_listed(world: World) -> None:
    filled = _fill_stripe(world)

    report = _run(world)

    assert report.linked == {"metadata": 1, "email": 1}
    assert {u.customer_id for u in report.unmatched} == {filled["stale"], filled["nobody"]}
    stale = next(u for u in report.unmatched if u.customer_id == filled["stale"])
    assert "does not exist in the CRM" in stale.reason
    _assert_imported_once(world, filled)
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        listed = set(
            session.scalars(
                select(AuditEntry.subject_id).where(
                    AuditEntry.action == "import.customer_unmatched"
                )
            )
        )
        assert listed == {filled["stale"], filled["nobody"]}
        assert session.scalar(select(func.count()).select_from(Cursor)) == 0


def _crm_requests(world: World) -> list[tuple[str, str]]:
    """Every HTTP request the import made to the CRM's API since the last reset, as
    (method, path), logins left out: the Salesforce sandbox's counts, or the requests that
    reached the Dataverse sandbox's Web API over the wire (a ``$batch`` is one request,
    whatever it holds)."""
    if world.crm.kind == "fake":  # the fake CRM of tests/services/scenarios: its calls
        fake = world.fake_crm  # type: ignore[attr-defined]
        writes = ("update", "upsert", "create")
        return [("POST" if c.startswith(writes) else "GET", c) for c in fake.calls]
    if world.crm.kind == "salesforce":
        return [
            key
            for key, n in world.salesforce_sandbox.request_counts().items()
            for _ in range(n)
            if "oauth2" not in key[1] and "Soap" not in key[1]
        ]
    return list(world.dataverse.request_log())  # type: ignore[attr-defined]


def _reset_crm_requests(world: World) -> None:
    if world.crm.kind == "fake":
        world.fake_crm.calls.clear()  # type: ignore[attr-defined]
    elif world.crm.kind == "salesforce":
        world.salesforce_sandbox.reset_request_counts()
    else:
        world.dataverse.reset_request_log()  # type: ignore[attr-defined]


# Bulk API 2.0 is Salesforce's own; Dataverse has no bulk API and batches with $batch
# (its own test below), so this scenario applies to Salesforce only.
@pytest.mark.crm("salesforce", reason="Bulk API 2.0 exists only in Salesforce")
def test_writes_above_the_bulk_threshold_go_through_bulk_api_2(world: World) -> None:
    assert world.runtime is not None
    world.runtime.crm.bulk_threshold = 1  # type: ignore[attr-defined]  # crm.salesforce.bulk_threshold
    filled = _fill_stripe(world)
    world.salesforce_sandbox.reset_request_counts()
    _run(world)
    counts = world.salesforce_sandbox.request_counts()
    jobs = counts.get(("POST", "/services/data/v{version}/jobs/ingest"), 0)
    # Account write-back, products, price entries, invoices. The accounts' balances come with
    # their figures once each account's currency is read (account metrics), never in the
    # invoices' currency before it is known.
    assert jobs == 4
    assert counts.get(("PATCH", "/services/data/v{version}/composite/sobjects"), 0) == 0
    entries = world.crm.price_entries()
    assert {e["stripe_price_id"]: e["unit_price"] for e in entries} == filled["prices"]
    accounts = {a["id"]: a for a in world.crm.accounts()}
    assert accounts[world.crm.ref("acme")]["stripe_customer_id"] == filled["by_metadata"]
    assert Counter(i["stripe_invoice_id"] for i in world.crm.invoices()) == Counter(
        filled["invoices"]
    )


# The Dataverse counterpart of the bulk path: every write of the import is a $batch.
@pytest.mark.crm("dynamics", reason="$batch is the Dataverse Web API's bulk path")
def test_every_dataverse_write_of_the_import_goes_in_a_batch(world: World) -> None:
    filled = _fill_stripe(world)
    _reset_crm_requests(world)

    _run(world)

    writes = [(m, p) for m, p in _crm_requests(world) if m != "GET"]
    # account write-back, products, price list items, invoices: a $batch each (open balances
    # come with the accounts' figures, once each account's currency is read)
    assert writes == [("POST", "$batch")] * 4
    assert Counter(i["stripe_invoice_id"] for i in world.crm.invoices()) == Counter(
        filled["invoices"]
    )
