"""Reading deals and accounts into canonical records, with real-shaped Dataverse payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses

from connector.crm.base import CrmNotFound, Money
from connector.domain.deal import InvalidDeal, parse_deal
from tests.crm.dynamics.support import (
    ACCOUNT_ID,
    API,
    ENV_URL,
    OPPORTUNITY_ID,
    FakeTime,
    api_requests,
    fixture_json,
    fixture_text,
    make_adapter,
    odata,
    query_of,
)

DEAL_URL = f"{API}/opportunities({OPPORTUNITY_ID})"
LINES_URL = f"{DEAL_URL}/product_opportunities"
OPEN_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def serve_won_deal(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, DEAL_URL, **odata("opportunity_won__with_expansions.json"))
    rsps.add(responses.GET, LINES_URL, **odata("opportunity_products__page1.json"))
    rsps.add(responses.GET, LINES_URL, **odata("opportunity_products__page2.json"))


def test_a_won_deal_is_read_into_canonical_deal_json(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_won_deal(entra)
    deal = make_adapter(fake_time).get_deal(OPPORTUNITY_ID)
    assert deal.id == OPPORTUNITY_ID
    assert deal.account_id == ACCOUNT_ID
    assert deal.closed is True
    assert deal.modified == datetime(2026, 11, 20, 10, 11, 12, tzinfo=UTC)
    assert deal.data == {
        "id": OPPORTUNITY_ID,
        "name": "Northwind renewal 2027",
        "currency": "usd",
        "contract_start": "2027-02-01",
        "contract_months": 12,
        "payment_terms": "Net 30",
        "payment_method": "ACH; Credit Card",
        # The recorded opportunity predates automatic charging, trials and deal discounts.
        "payment_collection": None,
        "trial_days": None,
        "discount_percent": None,
        "discount_amount": None,
        "type": None,  # the recorded opportunity has no deal type: new business
        "change_type": None,
        "billing_contact": {
            "name": "Nancy Davolio",
            "email": "nancy.davolio@northwind.example",
        },
        "account": {
            "id": ACCOUNT_ID,
            "name": "Northwind Traders",
            "address": {
                "line1": "2 Harbour Road",
                "line2": None,
                "city": "Seattle",
                "state": "WA",
                "postal_code": "98101",
                "country": "US",
            },
        },
        "line_items": [
            {
                "product": "Platform license",
                "sku": "PLAT-1",
                "quantity": 10,
                "unit_amount": 120000,
                "discount_amount": 120000,  # manualdiscountamount: off the whole line
                "pricing_schedule": "monthly",
                "product_id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
            },
            {
                "product": "Onboarding workshop",
                "sku": None,
                "quantity": 1,
                "unit_amount": 250000,
                "discount_amount": 0,
                "pricing_schedule": "one_time",
                "product_id": None,
            },
        ],
    }


def test_the_read_deal_passes_the_domains_parse_deal(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_won_deal(entra)
    deal = parse_deal(make_adapter(fake_time).get_deal(OPPORTUNITY_ID).data)
    assert deal.currency == "usd"
    assert deal.payment_method == "ACH; Credit Card"
    assert [item.unit_amount for item in deal.line_items] == [120000, 250000]
    assert [item.discount_amount for item in deal.line_items] == [120000, None]
    assert deal.billing_contact is not None
    assert deal.billing_contact.email == "nancy.davolio@northwind.example"


def test_the_deal_is_read_with_select_and_expand_in_one_request(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_won_deal(entra)
    make_adapter(fake_time).get_deal(OPPORTUNITY_ID)
    first = api_requests(entra)[0]
    query = query_of(first)
    select = query["$select"][0].split(",")
    assert {"db_contractstart", "statecode", "_parentaccountid_value"} <= set(select)
    expand = query["$expand"][0]
    assert "transactioncurrencyid($select=isocurrencycode)" in expand
    assert "db_billingcontactid($select=fullname,emailaddress1)" in expand
    assert "$expand=primarycontactid($select=fullname,emailaddress1)" in expand
    assert (
        'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
        in (first.request.headers["Prefer"])
    )


def test_line_items_follow_the_next_link_until_the_last_page(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_won_deal(entra)
    make_adapter(fake_time).get_deal(OPPORTUNITY_ID)
    line_calls = [c for c in api_requests(entra) if "/product_opportunities" in c.request.url]
    assert len(line_calls) == 2
    next_link = fixture_json("opportunity_products__page1.json")["@odata.nextLink"]
    assert line_calls[1].request.url == next_link
    assert "odata.maxpagesize=500" in line_calls[1].request.headers["Prefer"]


def test_without_a_billing_contact_the_accounts_primary_contact_is_used(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    url = f"{API}/opportunities({OPEN_ID})"
    entra.add(responses.GET, url, **odata("opportunity_open__no_billing_contact.json"))
    entra.add(responses.GET, f"{url}/product_opportunities", json={"value": []})
    deal = make_adapter(fake_time).get_deal(OPEN_ID)
    assert deal.data["billing_contact"] == {
        "name": "Yvonne McKay",
        "email": "yvonne.mckay@contoso.example",
    }
    assert deal.closed is False


def test_invalid_values_are_returned_raw_for_the_domain_to_report(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    url = f"{API}/opportunities({OPEN_ID})"
    entra.add(responses.GET, url, **odata("opportunity_open__no_billing_contact.json"))
    entra.add(
        responses.GET,
        f"{url}/product_opportunities",
        **odata("opportunity_products__unknown_schedule.json"),
    )
    data = make_adapter(fake_time).get_deal(OPEN_ID).data
    assert data["contract_start"] is None
    assert data["contract_months"] == 0
    assert data["account"]["address"] is None
    item = data["line_items"][0]
    assert item["pricing_schedule"] == "Biennial"
    assert str(item["quantity"]) == "2.50000"
    assert item["unit_amount"] == 9999
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(data)
    fields = {problem.field for problem in caught.value.problems}
    assert fields == {
        "contract_start",
        "contract_months",
        "line_items[0].quantity",
        "line_items[0].pricing_schedule",
    }


@pytest.mark.parametrize(
    ("column", "currency", "read"),
    [
        ("500.0000", "USD", 50_000),
        ("5000.0000", "JPY", 5_000),
        ("0.0000", "USD", 0),
        ("500.005", "USD", "500.005"),  # not whole cents: raw, for the domain to name
    ],
)
def test_the_opportunity_discount_amount_is_read_as_minor_units_of_its_currency(
    entra: responses.RequestsMock, fake_time: FakeTime, column: str, currency: str, read: object
) -> None:
    body = fixture_text("opportunity_won__with_expansions.json")
    record = json.loads(body)
    assert "discountamount" not in record  # recorded before deal discount amounts
    code = record["transactioncurrencyid"]["isocurrencycode"]
    body = body.replace(f'"isocurrencycode": "{code}"', f'"isocurrencycode": "{currency}"')
    body = body.replace("{\n", '{\n  "discountamount": ' + column + ",\n", 1)
    entra.add(
        responses.GET, DEAL_URL, body=body, content_type="application/json; odata.metadata=minimal"
    )
    entra.add(responses.GET, LINES_URL, **odata("opportunity_products__page1.json"))
    entra.add(responses.GET, LINES_URL, **odata("opportunity_products__page2.json"))
    data = make_adapter(fake_time).get_deal(OPPORTUNITY_ID).data
    assert data["discount_amount"] == read
    if read == "500.005":
        with pytest.raises(InvalidDeal, match="discount_amount"):
            parse_deal(data)


def test_a_deal_id_that_is_not_a_guid_is_not_found_without_a_request(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    with pytest.raises(CrmNotFound):
        make_adapter(fake_time).get_deal("006000000000001")
    assert api_requests(entra) == []


def test_an_account_is_read_with_credit_hold_limit_and_stripe_customer(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(
        responses.GET,
        f"{API}/accounts({ACCOUNT_ID})",
        **odata("account__on_credit_hold.json"),
    )
    account = make_adapter(fake_time).get_account(ACCOUNT_ID)
    assert account.name == "Northwind Traders"
    assert account.credit_hold is True
    assert account.credit_limit == Money(5_000_000, "usd")
    assert account.credit_hold_source == "person"
    assert account.stripe_customer_id == "cus_R2d2C3po4Bb8"
    assert account.address is not None and account.address.city == "Seattle"
    assert account.modified == datetime(2026, 11, 19, 16, 30, 5, tzinfo=UTC)


def test_an_account_without_a_limit_has_no_credit_limit(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    other = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
    entra.add(responses.GET, f"{API}/accounts({other})", **odata("account__no_limit.json"))
    account = make_adapter(fake_time).get_account(other)
    assert account.credit_limit is None
    assert account.credit_hold is False
    assert account.credit_hold_source is None
    assert account.address is None


def test_accounts_are_found_through_contacts_and_primary_contacts_by_email(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, f"{API}/contacts", **odata("contacts__by_email.json"))
    entra.add(
        responses.GET,
        f"{API}/accounts",
        **odata("accounts__by_primary_contact_email.json"),
    )
    found = make_adapter(fake_time).find_accounts_by_contact_email(
        "Nancy.O'Brien@Northwind.example"
    )
    assert found == [ACCOUNT_ID, "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"]
    contacts, accounts = api_requests(entra)
    assert query_of(contacts)["$filter"] == ["emailaddress1 eq 'Nancy.O''Brien@Northwind.example'"]
    assert query_of(accounts)["$filter"] == [
        "primarycontactid/emailaddress1 eq 'Nancy.O''Brien@Northwind.example'"
    ]


def test_record_urls_open_the_record_in_the_dynamics_app(fake_time: FakeTime) -> None:
    adapter = make_adapter(fake_time)
    assert adapter.record_url("deal", OPPORTUNITY_ID) == (
        f"{ENV_URL}/main.aspx?etn=opportunity&pagetype=entityrecord&id={OPPORTUNITY_ID}"
    )
    assert adapter.record_url("account", ACCOUNT_ID) == (
        f"{ENV_URL}/main.aspx?etn=account&pagetype=entityrecord&id={ACCOUNT_ID}"
    )
    assert adapter.record_url("invoice", ACCOUNT_ID) is None
    assert adapter.record_url("deal", "not-a-guid") is None


def test_the_deal_json_holds_only_plain_json_values(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    """The canonical deal is stored as JSON: Dataverse's decimal quantities (``10.00000``)
    must not reach it as ``Decimal``."""
    serve_won_deal(entra)
    data = make_adapter(fake_time).get_deal(OPPORTUNITY_ID).data
    assert json.loads(json.dumps(data)) == data
    assert [type(item["quantity"]) for item in data["line_items"]] == [int, int]
