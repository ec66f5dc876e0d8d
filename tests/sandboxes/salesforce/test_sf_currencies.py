"""A multi-currency org: CurrencyType rows are the org's currencies, and adding one makes it a
currency records can be in."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.demo import SAMPLE_ORG
from sandboxes.salesforce import SalesforceSandbox
from tests.sandboxes.salesforce.conftest import login

JPY = {"IsoCode": "JPY", "ConversionRate": 151.5, "DecimalPlaces": 0, "IsActive": True}


def _currency_values(sf: Salesforce, sobject: str) -> dict[str, bool]:
    describe = getattr(sf, sobject).describe()
    field = next(f for f in describe["fields"] if f["name"] == "CurrencyIsoCode")
    return {v["value"]: v["active"] for v in field["picklistValues"]}


def test_the_org_starts_with_usd_as_corporate_currency_and_eur_and_gbp(sf: Salesforce) -> None:
    rows = sf.query("SELECT IsoCode, IsCorporate, DecimalPlaces FROM CurrencyType")["records"]

    assert sorted((r["IsoCode"], r["IsCorporate"]) for r in rows) == [
        ("EUR", False), ("GBP", False), ("USD", True),
    ]  # fmt: skip
    assert _currency_values(sf, "Opportunity") == {"EUR": True, "GBP": True, "USD": True}


def test_a_yen_currency_added_to_the_sample_org_takes_records_in_yen(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sandbox = make_sandbox(seed=SAMPLE_ORG)
    sf = login(sandbox)
    created = sf.CurrencyType.create(JPY)
    assert created["id"].startswith("01L")

    account = sf.Account.create({"Name": "Kaisha KK", "CurrencyIsoCode": "JPY"})["id"]
    deal = sf.Opportunity.create(
        {"Name": "Kaisha - Platform", "AccountId": account, "StageName": "Prospecting",
         "CloseDate": "2026-12-01", "CurrencyIsoCode": "JPY", "Amount": 1200000}
    )["id"]  # fmt: skip

    record: dict[str, Any] = sf.Opportunity.get(deal)
    assert (record["CurrencyIsoCode"], record["Amount"]) == ("JPY", 1200000.0)
    assert _currency_values(sf, "Account")["JPY"] is True
    [yen] = sf.query(
        "SELECT DecimalPlaces, ConversionRate FROM CurrencyType WHERE IsoCode = 'JPY'"
    )["records"]
    assert (yen["DecimalPlaces"], Decimal(str(yen["ConversionRate"]))) == (0, Decimal("151.5"))


def test_an_inactive_currency_is_refused_until_it_is_activated(sf: Salesforce) -> None:
    currency = sf.CurrencyType.create({**JPY, "IsActive": False})["id"]
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_OR_NULL_FOR_RESTRICTED"):
        sf.Account.create({"Name": "Kaisha KK", "CurrencyIsoCode": "JPY"})

    sf.CurrencyType.update(currency, {"IsActive": True})

    assert sf.Account.create({"Name": "Kaisha KK", "CurrencyIsoCode": "JPY"})["success"]


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({**JPY, "IsoCode": "USD"}, "DUPLICATE_VALUE"),
        ({**JPY, "IsoCode": "XYZ"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"IsoCode": "JPY", "IsActive": True}, "REQUIRED_FIELD_MISSING"),
        ({**JPY, "IsCorporate": True}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
    ],
    ids=["an existing code", "not ISO 4217", "no rate or decimals", "a new corporate currency"],
)
def test_currency_rows_are_checked(sf: Salesforce, values: dict[str, Any], code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest, match=code):
        sf.CurrencyType.create(values)


def test_a_currency_cannot_be_deleted(sf: Salesforce) -> None:
    currency = sf.CurrencyType.create(JPY)["id"]

    with pytest.raises(SalesforceMalformedRequest, match="INVALID_TYPE_FOR_OPERATION"):
        sf.CurrencyType.delete(currency)
