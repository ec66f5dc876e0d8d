"""What `dealbridge import stripe` asks of Salesforce, through the real adapter and
simple-salesforce against the Salesforce sandbox: the account directory, new accounts and
standard price book entries (sObject Collections, and Bulk API 2.0 above the threshold)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.base import PriceEntryRecord
from connector.demo import salesforce_sandbox
from connector.domain.deal import Address
from sandboxes.salesforce import SalesforceSandbox
from tests.crm.salesforce.conftest import login, make_adapter

INGEST = ("POST", "/services/data/v{version}/jobs/ingest")
COLLECTIONS = ("POST", "/services/data/v{version}/composite/sobjects")


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    sandbox = salesforce_sandbox(
        seed=None, query_batch_size=2
    ).start()  # queryMore after every 2 rows
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return login(sandbox)


def account(sf: Salesforce, name: str, **fields: Any) -> str:
    return str(sf.Account.create({"Name": name, **fields})["id"])


def contact(sf: Salesforce, account_id: str | None, email: str) -> None:
    fields: dict[str, Any] = {"LastName": email.split("@")[0], "Email": email}
    if account_id:
        fields["AccountId"] = account_id
    sf.Contact.create(fields)


def product(sf: Salesforce, stripe_id: str) -> str:
    return str(sf.Product2.create({"Name": stripe_id, "Stripe_Product_Id__c": stripe_id})["id"])


def entries(sandbox: SalesforceSandbox) -> dict[str, dict[str, Any]]:
    return {
        r["Stripe_Price_Id__c"]: r
        for r in sandbox.records("PricebookEntry")
        if r.get("Stripe_Price_Id__c")
    }


def price(price_id: str, product_id: str = "prod_Plat", amount: int | None = 120050) -> Any:
    return PriceEntryRecord(price_id, product_id, "usd", amount, True, "month")


# --------------------------------------------------------------------------- directory


def test_the_account_directory_pages_through_accounts_and_contacts_with_query_more(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    ids = [account(sf, f"Account {n}") for n in range(5)]
    for n, account_id in enumerate(ids):
        contact(sf, account_id, f"billing{n}@example.com")
    sandbox.reset_request_counts()

    directory = make_adapter(sandbox).account_directory()

    assert directory.ids == frozenset(ids)
    assert sorted(directory.by_email) == [f"billing{n}@example.com" for n in range(5)]
    more = sum(n for (m, p), n in sandbox.request_counts().items() if "query/" in p)
    assert more == 4  # 5 accounts and 5 contacts, 2 a page: 2 queryMore calls each


def test_the_directory_casefolds_names_and_emails_and_knows_stripe_ids(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    acme = account(sf, "Acme Corp", Stripe_Customer_Id__c="cus_Acme")
    twin = account(sf, "ACME corp ")
    contact(sf, acme, "Ap@Acme.example")
    contact(sf, twin, "ap@acme.EXAMPLE")
    contact(sf, None, "orphan@example.com")

    directory = make_adapter(sandbox).account_directory()

    assert directory.by_stripe_customer == {"cus_Acme": acme}
    assert sorted(directory.by_name["acme corp"]) == sorted([acme, twin])
    assert sorted(directory.by_email["ap@acme.example"]) == sorted([acme, twin])
    assert "orphan@example.com" not in directory.by_email


# --------------------------------------------------------------------------- create account


def test_a_created_account_carries_name_address_and_stripe_customer_id(
    sandbox: SalesforceSandbox,
) -> None:
    account_id = make_adapter(sandbox).create_account(
        "Wayne Corp",
        "bruce@wayne.example",
        Address(line1="1007 Mountain Drive", line2="East Wing", city="Gotham", country="US"),
        stripe_customer_id="cus_Wayne",
    )

    [row] = [r for r in sandbox.records("Account") if r["Id"] == account_id]
    assert row["Name"] == "Wayne Corp"
    assert row["BillingStreet"] == "1007 Mountain Drive\nEast Wing"
    assert (row["BillingCity"], row["BillingCountry"]) == ("Gotham", "US")
    assert row["Stripe_Customer_Id__c"] == "cus_Wayne"
    [person] = sandbox.records("Contact")
    assert (person["Email"], person["AccountId"]) == ("bruce@wayne.example", account_id)


def test_an_account_created_for_a_customer_is_found_by_its_stripe_id_afterwards(
    sandbox: SalesforceSandbox,
) -> None:
    # The contract: create_account writes the Stripe customer id at once, so a rerun's
    # directory finds the account instead of creating a second one.
    adapter = make_adapter(sandbox)
    account_id = adapter.create_account("Wayne Corp", None, None, stripe_customer_id="cus_Wayne")

    directory = adapter.account_directory()

    assert directory.by_stripe_customer["cus_Wayne"] == account_id


# --------------------------------------------------------------------------- price book entries


def test_prices_become_standard_price_book_entries_keyed_by_stripe_price_id(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    plat = product(sf, "prod_Plat")

    [result] = make_adapter(sandbox).upsert_price_entries([price("price_Monthly")])

    assert result.ok
    entry = entries(sandbox)["price_Monthly"]
    assert entry["UnitPrice"] == Decimal("1200.50")
    assert entry["Product2Id"] == plat
    assert entry["Pricebook2Id"] == sandbox.ids_by_ref()["standard_pricebook"]
    assert entry["IsActive"] is True


def test_a_known_price_is_updated_in_place_not_inserted_again(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    product(sf, "prod_Plat")
    adapter = make_adapter(sandbox)
    adapter.upsert_price_entries([price("price_Monthly")])

    [result] = adapter.upsert_price_entries(
        [PriceEntryRecord("price_Monthly", "prod_Plat", "usd", 120050, False)]
    )

    assert result.ok
    assert len(entries(sandbox)) == 1
    assert entries(sandbox)["price_Monthly"]["IsActive"] is False


def test_a_refused_price_is_reported_and_the_others_are_written(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    product(sf, "prod_Plat")
    product(sf, "prod_Seats")

    results = make_adapter(sandbox).upsert_price_entries(
        [
            price("price_Monthly"),
            price("price_Ghost", "prod_NeverImported"),
            price("price_Seat", "prod_Seats", 900),
            price("price_Yearly"),  # a second USD price of prod_Plat
        ]
    )

    assert [(r.key, r.ok) for r in results] == [
        ("price_Monthly", True),
        ("price_Ghost", False),
        ("price_Seat", True),
        ("price_Yearly", False),
    ]
    assert "prod_NeverImported" in (results[1].error or "")
    assert "one entry per product and currency" in (results[3].error or "")
    assert sorted(entries(sandbox)) == ["price_Monthly", "price_Seat"]


def test_above_the_bulk_threshold_entries_go_through_bulk_api_2(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    product(sf, "prod_Plat")
    product(sf, "prod_Seats")
    sandbox.reset_request_counts()

    results = make_adapter(sandbox, bulk_threshold=1).upsert_price_entries(
        [price("price_Monthly"), price("price_Seat", "prod_Seats", 900)]
    )

    assert all(r.ok for r in results)
    counts = sandbox.request_counts()
    assert counts.get(INGEST) == 1
    assert counts.get(COLLECTIONS, 0) == 0
    assert entries(sandbox)["price_Seat"]["UnitPrice"] == Decimal("9.00")
