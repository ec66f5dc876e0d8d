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

from connector.secrets import Secret
from connector.services import importer, subscribers
from connector.services.import_run import ImportOptions, ImportReport
from connector.store.models import (
    AuditEntry,
    Cursor,
    CustomerLink,
    InvoiceMirror,
    OutboxMessage,
)
from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock


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


def test_running_the_import_twice_changes_nothing_the_second_time(world: World) -> None:
    filled = _fill_stripe(world)
    _run(world)

    again = _run(world)

    assert again.linked == {}
    assert again.already_linked == 2
    _assert_imported_once(world, filled)


@pytest.mark.parametrize("stop_after", [1, 3, 5])
def test_an_interrupted_import_resumes_and_imports_everything_exactly_once(
    world: World, stop_after: int
) -> None:
    filled = _fill_stripe(world)
    handled = 0

    def interrupt(_phase: str, count: int) -> None:
        nonlocal handled
        handled += count
        if handled >= stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(world, chunk_size=1, progress=interrupt)
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Cursor)) >= 1

    _run(world, chunk_size=1)

    _assert_imported_once(world, filled)


def _crm_requests(world: World) -> list[tuple[str, str]]:
    """Every HTTP request the import made to the CRM's API since the last reset, as
    (method, path), logins left out: the Salesforce sandbox's counts, or the requests that
    reached the Dataverse sandbox's Web API over the wire (a ``$batch`` is one request,
    whatever it holds)."""
    if world.crm.kind == "salesforce":
        return [
            key
            for key, n in world.salesforce_sandbox.request_counts().items()
            for _ in range(n)
            if "oauth2" not in key[1] and "Soap" not in key[1]
        ]
    return list(world.dataverse.request_log())  # type: ignore[attr-defined]


def _reset_crm_requests(world: World) -> None:
    if world.crm.kind == "salesforce":
        world.salesforce_sandbox.reset_request_counts()
    else:
        world.dataverse.reset_request_log()  # type: ignore[attr-defined]


def test_a_dry_run_reports_what_it_would_do_and_changes_nothing(world: World) -> None:
    filled = _fill_stripe(world)
    _reset_crm_requests(world)
    world.stripe_sandbox.reset_request_counts()

    report = _run(world, dry_run=True)

    assert f"would link {filled['by_metadata']} → account {world.crm.ref('acme')} (metadata)" in (
        report.planned
    )
    assert sum(line.startswith("would upsert price") for line in report.planned) == 2
    assert [(m, p) for m, p in _crm_requests(world) if m != "GET"] == []
    assert all(method == "GET" for method, _ in world.stripe_sandbox.request_counts())
    assert _links(world) == {}
    assert world.crm.invoices() == []
    assert not any(p["stripe_product_id"] for p in world.crm.products())
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert session.scalar(select(func.count()).select_from(Cursor)) == 0


def test_the_invoices_are_listed_once_for_the_whole_account_not_per_customer(
    world: World,
) -> None:
    _fill_stripe(world)
    _run(world, phases=("customers",))
    world.stripe_sandbox.reset_request_counts()

    _run(world, phases=("invoices",))

    # Three invoices of two linked customers: one page of the account's invoices.
    assert world.stripe_count("GET", "/v1/invoices") == 1


def test_backfilled_invoices_are_not_announced_to_subscribers(world: World) -> None:
    _fill_stripe(world)
    assert world.runtime is not None

    _run(world)

    with world.runtime.db.session() as session:
        queued = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.kind == subscribers.DELIVER)
        )
    assert queued == 0


def test_backfilled_invoices_are_announced_when_asked(
    database_url: str, clock: FrozenClock
) -> None:
    base = type(make_world(database_url, clock))

    class WithSubscriber(base):  # type: ignore[valid-type, misc]
        def _crm_secrets(self) -> dict[str, Any]:
            return {**super()._crm_secrets(), "subscriber_secrets": {"erp": Secret("s" * 32)}}

    world = WithSubscriber(
        str(database_url),
        clock=clock,
        sections={
            "outbound": {
                "allowed_schemes": ["http"],
                "allow_private_addresses": True,
                "subscribers": [{"name": "erp", "url": "http://127.0.0.1:9/hook",
                                 "events": ["invoice.status_changed"]}],
            }
        },
    ).start()  # fmt: skip
    try:
        filled = _fill_stripe(world)
        assert world.runtime is not None
        _run(world, phases=("customers", "invoices"), announce_invoices=True)
        with world.runtime.db.session() as session:
            announced = {
                m.payload["event"]["data"]["invoice_id"]
                for m in session.scalars(
                    select(OutboxMessage).where(OutboxMessage.kind == subscribers.DELIVER)
                )
            }
        assert announced == filled["invoices"]
    finally:
        world.stop()


def test_unmatched_customers_become_accounts_when_asked_and_only_once(world: World) -> None:
    filled = _fill_stripe(world)

    _run(world, phases=("customers",), create_missing_accounts=True)
    _run(world, phases=("customers",), create_missing_accounts=True)

    created = [a for a in world.crm.accounts() if a["stripe_customer_id"] == filled["nobody"]]
    assert [a["name"] for a in created] == ["Wayne Corp"]
    assert _links(world)[filled["nobody"]] == created[0]["id"]


def test_customers_match_an_account_by_name_when_that_rule_is_configured(
    database_url: str, clock: FrozenClock
) -> None:
    world = make_world(database_url, clock, **{"import": {"match_rule": "name"}}).start()
    try:
        customer = world.stripe_client().v1.customers.create(params={"name": "initech llc"})
        report = _run(world, phases=("customers",))
        assert report.linked == {"name": 1}
        assert _links(world) == {customer.id: world.crm.ref("initech")}
    finally:
        world.stop()


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
    assert jobs == 5  # account write-back, products, price entries, invoices, balances
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
    # account write-back, products, price list items, invoices, open balances: a $batch each
    assert writes == [("POST", "$batch")] * 5
    assert Counter(i["stripe_invoice_id"] for i in world.crm.invoices()) == Counter(
        filled["invoices"]
    )
