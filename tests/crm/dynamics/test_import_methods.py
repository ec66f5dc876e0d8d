"""What `dealbridge import stripe` asks of Dataverse: the account directory, new accounts and
price list items, against Web API payloads kept as named fixtures."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import responses

from connector.crm.base import PriceEntryRecord
from connector.domain.deal import Address
from tests.crm.dynamics.support import (
    API,
    FakeTime,
    api_requests,
    fixture_json,
    make_adapter,
    query_of,
    shipped_mapping,
)
from tests.crm.dynamics.support import odata as served
from tests.crm.dynamics.test_writing import BATCH, sent_parts, serve_batch

NORTHWIND = "a1d4c5b6-7e8f-4a1b-9c2d-3e4f5a6b7c8d"
CONTOSO = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
CONTOSO_TWIN = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
NEW_ACCOUNT = "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a"
PRICE_LIST = "4c3b2a19-0f8e-4d7c-b6a5-948372615a0b"
UNIT_GROUP = "8e7d6c5b-4a39-4281-9f0e-d1c2b3a4f5e6"
UNIT = "2a3b4c5d-6e7f-4809-a1b2-c3d4e5f6a7b8"


def catalog_adapter(fake_time: FakeTime, **options: Any) -> Any:
    mapping = shipped_mapping()
    catalog = {
        "price_list_id": PRICE_LIST,
        "price_list_currency": "USD",
        "product_unit_group_id": UNIT_GROUP,
        "product_default_unit_id": UNIT,
        **options,
    }
    return make_adapter(
        fake_time, dataclasses.replace(mapping, options={**mapping.options, **catalog})
    )


def serve_directory(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{API}/accounts", **served("accounts__directory_page1.json"))
    rsps.add(responses.GET, f"{API}/accounts", **served("accounts__directory_page2.json"))
    rsps.add(responses.GET, f"{API}/contacts", **served("contacts__with_email.json"))


# --------------------------------------------------------------------------- directory


def test_the_account_directory_follows_the_next_link_through_every_page(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_directory(entra)

    directory = make_adapter(fake_time).account_directory()

    calls = api_requests(entra)
    assert [c.request.url for c in calls[:2]][1] == (
        fixture_json("accounts__directory_page1.json")["@odata.nextLink"]
    )
    assert directory.ids == frozenset({NORTHWIND, CONTOSO, CONTOSO_TWIN})
    assert query_of(calls[0])["$select"] == ["accountid,name,db_stripecustomerid"]
    assert "odata.maxpagesize=500" in calls[0].request.headers["Prefer"]


def test_the_directory_keys_names_and_emails_casefolded_and_knows_stripe_ids(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_directory(entra)

    directory = make_adapter(fake_time).account_directory()

    assert directory.by_stripe_customer == {"cus_Northwind01": NORTHWIND}
    assert directory.by_name["contoso pharmaceuticals"] == [CONTOSO, CONTOSO_TWIN]
    assert directory.by_email["nancy.davolio@northwind.example"] == [NORTHWIND]
    assert directory.by_email["billing@contoso.example"] == [CONTOSO, CONTOSO_TWIN]


def test_contacts_whose_parent_is_not_a_known_account_are_left_out_of_the_directory(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_directory(entra)

    directory = make_adapter(fake_time).account_directory()

    assert "janet@leverling.example" not in directory.by_email  # parent is a contact
    contacts = api_requests(entra)[2]
    assert query_of(contacts)["$filter"] == ["emailaddress1 ne null"]


# --------------------------------------------------------------------------- create account


def serve_created(rsps: responses.RequestsMock) -> None:
    entity = f"{API}/accounts({NEW_ACCOUNT})"
    rsps.add(
        responses.POST,
        f"{API}/accounts",
        status=204,
        headers={"OData-EntityId": entity, "OData-Version": "4.0"},
    )
    rsps.add(
        responses.POST,
        f"{API}/contacts",
        status=204,
        headers={
            "OData-EntityId": f"{API}/contacts(3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7)",
            "OData-Version": "4.0",
        },
    )


def test_a_created_account_carries_name_address_and_stripe_customer_id(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_created(entra)

    account_id = make_adapter(fake_time).create_account(
        "Wayne Corp",
        None,
        Address(line1="1007 Mountain Drive", city="Gotham", postal_code="10001", country="US"),
        stripe_customer_id="cus_Wayne",
    )

    assert account_id == NEW_ACCOUNT  # from the OData-EntityId header
    [create] = api_requests(entra)
    assert json.loads(create.request.body) == {
        "name": "Wayne Corp",
        "address1_line1": "1007 Mountain Drive",
        "address1_city": "Gotham",
        "address1_postalcode": "10001",
        "address1_country": "US",
        "db_stripecustomerid": "cus_Wayne",
    }


def test_a_created_account_with_an_email_gets_a_contact_bound_to_it(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_created(entra)

    make_adapter(fake_time).create_account("Wayne Corp", "bruce@wayne.example", None)

    _, contact = api_requests(entra)
    assert contact.request.url == f"{API}/contacts"
    assert json.loads(contact.request.body) == {
        "lastname": "Wayne Corp",
        "emailaddress1": "bruce@wayne.example",
        "parentcustomerid_account@odata.bind": f"/accounts({NEW_ACCOUNT})",
    }


# --------------------------------------------------------------------------- price list items


def price(price_id: str, product_id: str = "prod_Plat1", **changes: Any) -> PriceEntryRecord:
    values: dict[str, Any] = {
        "stripe_price_id": price_id,
        "stripe_product_id": product_id,
        "currency": "usd",
        "unit_amount": 120050,
        "active": True,
        "recurring_interval": "month",
    }
    values.update(changes)
    return PriceEntryRecord(**values)


def test_a_price_is_upserted_by_its_stripe_price_id_key_with_lookups_bound(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")

    catalog_adapter(fake_time).upsert_price_entries([price("price_1PlatMonthly")])

    batch = api_requests(entra)[0]
    [(line, _, body)] = sent_parts(batch)
    assert b'"amount":1200.50' in batch.request.body  # the decimal, digit for digit
    assert line == f"PATCH {API}/productpricelevels(db_stripepriceid='price_1PlatMonthly') HTTP/1.1"
    assert body == {
        "amount": Decimal("1200.50"),
        "pricelevelid@odata.bind": f"/pricelevels({PRICE_LIST})",
        "productid@odata.bind": "/products(db_stripeproductid='prod_Plat1')",
        "uomid@odata.bind": f"/uoms({UNIT})",
    }


def test_price_list_items_are_written_in_batches_of_batch_size(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    serve_batch(entra, "batch_response__all_ok.txt")
    adapter = catalog_adapter(fake_time)
    adapter.batch_size = 2

    results = adapter.upsert_price_entries([price("price_A"), price("price_B"), price("price_C")])

    batches = [c for c in api_requests(entra) if c.request.url == BATCH]
    assert [len(sent_parts(b)) for b in batches] == [2, 1]
    assert [r.key for r in results] == ["price_A", "price_B", "price_C"]
    assert all(r.ok for r in results)


def test_a_price_item_dataverse_refuses_is_reported_and_the_others_are_kept(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__price_items_one_failed.txt")

    results = catalog_adapter(fake_time).upsert_price_entries(
        [price("price_A"), price("price_B", "prod_NotImported"), price("price_C")]
    )

    assert [(r.key, r.ok) for r in results] == [
        ("price_A", True),
        ("price_B", False),
        ("price_C", True),
    ]
    assert results[1].error == (
        "A record with the specified key values does not exist in product entity (0x80040217)"
    )
    assert not results[1].retryable
    assert results[2].crm_id == "1f2e3d4c-5b6a-4978-9a8b-7c6d5e4f3a2b"


def test_a_price_in_another_currency_than_the_price_list_is_refused_without_a_request(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    [result] = catalog_adapter(fake_time).upsert_price_entries(
        [price("price_Eur", currency="eur", unit_amount=900)]
    )

    assert not result.ok
    assert result.error == "the price list is in USD, not EUR"
    assert api_requests(entra) == []


def test_a_price_without_a_fixed_amount_is_refused_without_a_request(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    [result] = catalog_adapter(fake_time).upsert_price_entries(
        [price("price_Tiered", unit_amount=None)]
    )

    assert (result.ok, result.error) == (False, "the price has no fixed unit amount")
    assert api_requests(entra) == []


def test_without_a_price_list_configured_every_price_is_refused_by_name(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    [result] = make_adapter(fake_time).upsert_price_entries([price("price_A")])

    assert not result.ok
    assert "options.price_list_id" in (result.error or "")
    assert api_requests(entra) == []
