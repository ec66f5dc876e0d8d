"""Seed data: the shipped sample org, symbolic refs, relative dates, loading from files."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.demo import SAMPLE_ORG
from sandboxes.salesforce import SalesforceSandbox
from sandboxes.salesforce.seed import SeedError
from tests.support import FrozenClock

from .conftest import login


@pytest.fixture
def sample(make_sandbox: Callable[..., SalesforceSandbox]) -> SalesforceSandbox:
    return make_sandbox(seed=SAMPLE_ORG)


def closed_won(sf: Any) -> dict[str, dict[str, Any]]:
    records = sf.query_all(
        "SELECT Name, CurrencyIsoCode, Contract_Start_Date__c, Contract_Term_Months__c, "
        "Payment_Method__c, Payment_Terms__c, Billing_Contact__r.Email, "
        "Account.Billing_Contact__r.Email, Account.Credit_Hold__c, "
        "(SELECT Contact.Email FROM OpportunityContactRoles WHERE Role = 'Billing Contact'), "
        "(SELECT Pricing_Schedule__c FROM OpportunityLineItems) "
        "FROM Opportunity WHERE IsWon = true"
    )["records"]
    return {r["Name"]: r for r in records}


def test_refs_resolve_to_ids_of_the_right_object(sample: SalesforceSandbox) -> None:
    refs = sample.ids_by_ref()
    assert refs["acme"].startswith("001")
    assert refs["acme_platform"].startswith("006")
    assert refs["platform_usd"].startswith("01u")
    assert refs["standard_pricebook"].startswith("01s")


def test_contract_start_dates_are_relative_to_today(sample: SalesforceSandbox) -> None:
    starts = {r["Name"]: r["Contract_Start_Date__c"] for r in sample.records("Opportunity")}
    assert starts["Acme Robotics - Platform 2027"] == "2026-11-21"
    assert starts["Globex - Enterprise Licence"] == "2026-12-05"
    assert starts["Umbrella Health - Platform and Support"] == "2026-12-21"


def test_a_month_back_from_the_31st_lands_on_the_last_day_of_the_shorter_month(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sandbox = make_sandbox(
        now=FrozenClock(datetime(2027, 3, 31, 12, tzinfo=UTC)),
        seed={"records": {"Opportunity": [
            {"Name": "D", "StageName": "Closed Won", "CloseDate": "today-1m",
             "Contract_Start_Date__c": "today+1y"},
        ]}},
    )  # fmt: skip
    record = sandbox.records("Opportunity")[0]
    assert (record["CloseDate"], record["Contract_Start_Date__c"]) == ("2027-02-28", "2028-03-31")


def test_the_sample_org_has_closed_won_deals_of_12_24_and_36_months_in_usd_and_eur(
    sample: SalesforceSandbox,
) -> None:
    deals = closed_won(login(sample))
    assert {r["Contract_Term_Months__c"] for r in deals.values()} == {12, 24, 36}
    assert {r["CurrencyIsoCode"] for r in deals.values()} == {"USD", "EUR"}


def test_the_sample_org_covers_every_payment_method_and_terms_variant(
    sample: SalesforceSandbox,
) -> None:
    deals = closed_won(login(sample))
    assert {r["Payment_Method__c"] for r in deals.values()} == {
        "ACH;Credit Card", "Credit Card", "ACH", None,
    }  # fmt: skip
    assert {r["Payment_Terms__c"] for r in deals.values()} == {"Net 30", "Due on receipt", None}


def test_the_sample_org_has_each_way_of_naming_a_billing_contact(
    sample: SalesforceSandbox,
) -> None:
    deals = closed_won(login(sample))
    by_lookup = deals["Umbrella Health - Platform and Support"]
    by_role = deals["Globex - Enterprise Licence"]
    by_account = deals["Acme Robotics - Platform 2027"]
    assert by_lookup["Billing_Contact__r"]["Email"] == "alice.ABERNATHY@umbrella-health.example"
    assert by_role["Billing_Contact__r"] is None
    assert by_role["OpportunityContactRoles"]["records"][0]["Contact"]["Email"] == (
        "Greta.Hoffmann@Globex.example"
    )
    assert by_account["Billing_Contact__r"] is None
    assert by_account["OpportunityContactRoles"] is None
    assert by_account["Account"]["Billing_Contact__r"]["Email"] == "AP.Team@AcmeRobotics.example"


def test_the_sample_org_has_an_account_on_credit_hold_and_one_with_a_credit_limit(
    sample: SalesforceSandbox,
) -> None:
    accounts = {a["Name"]: a for a in sample.records("Account")}
    assert accounts["Initech LLC"]["Credit_Hold__c"] is True
    assert accounts["Initech LLC"]["Credit_Hold_Source__c"] == "Person"
    assert accounts["Umbrella Health Ltd"]["Credit_Limit__c"] == 10000
    assert all(a["BillingCity"] for a in accounts.values())


def test_the_sample_org_line_items_use_every_pricing_schedule(sample: SalesforceSandbox) -> None:
    schedules = {i["Pricing_Schedule__c"] for i in sample.records("OpportunityLineItem")}
    assert schedules == {"One-Time", "Monthly", "Quarterly", "Semi-Annual", "Annual"}


def test_the_sample_org_has_open_opportunities_too(sample: SalesforceSandbox) -> None:
    stages = {o["StageName"] for o in sample.records("Opportunity")}
    assert stages - {"Closed Won"} >= {"Negotiation/Review", "Proposal/Price Quote"}


def test_a_seed_can_be_loaded_from_a_json_file(sandbox: SalesforceSandbox, tmp_path: Path) -> None:
    path = tmp_path / "org.json"
    path.write_text(json.dumps({"records": {"Account": [{"ref": "x", "Name": "From JSON"}]}}))
    refs = sandbox.load_seed(str(path))
    assert [a["Name"] for a in sandbox.records("Account")] == ["From JSON"]
    assert refs["x"] == sandbox.records("Account")[0]["Id"]


def test_an_unknown_ref_is_a_seed_error(sandbox: SalesforceSandbox) -> None:
    with pytest.raises(SeedError, match="unknown ref 'nobody'"):
        sandbox.load_seed({"records": {"Contact": [{"LastName": "X",
                                                    "AccountId": {"ref": "nobody"}}]}})  # fmt: skip


def test_a_record_salesforce_would_reject_is_a_seed_error(sandbox: SalesforceSandbox) -> None:
    with pytest.raises(SeedError, match="REQUIRED_FIELD_MISSING"):
        sandbox.load_seed({"records": {"Account": [{"Phone": "555"}]}})


def test_without_a_seed_the_org_only_has_the_standard_price_book(
    sandbox: SalesforceSandbox,
) -> None:
    assert sandbox.records("Account") == []
    assert [p["Name"] for p in sandbox.records("Pricebook2")] == ["Standard Price Book"]
