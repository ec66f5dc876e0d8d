"""The deal discount amount (``Deal_Discount_Amount__c``, Currency) read by the real adapter
through simple-salesforce from the Salesforce sandbox, as minor units of the deal's currency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.https_rewrite import HttpsRewriteSession
from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.domain.deal import InvalidDeal, parse_deal
from connector.mappings import load_mapping
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)
from tests.crm.salesforce.conftest import REPO, login


def make_adapter(sandbox: SalesforceSandbox) -> SalesforceAdapter:
    """As ``from_config`` makes it: JSON numbers read as Decimals, never floats."""

    def connect() -> Salesforce:
        return Salesforce(
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
            security_token=DEMO_SECURITY_TOKEN,
            session=HttpsRewriteSession(sandbox.url),
            parse_float=Decimal,
        )

    mapping = load_mapping(REPO / "mappings" / "salesforce.yaml", "salesforce")
    return SalesforceAdapter(mapping, connect, sleeper=lambda _s: None)


def _won(sandbox: SalesforceSandbox, **fields: object) -> str:
    sf = login(sandbox)
    account_id = sf.Account.create({"Name": "Acme Inc"})["id"]
    return str(
        sf.Opportunity.create(
            {"Name": "Acme", "AccountId": account_id, "StageName": "Closed Won",
             "CloseDate": "2026-11-21", "Contract_Start_Date__c": "2026-12-01",
             "Contract_Term_Months__c": 12, **fields}
        )["id"]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "read"), [(500, 50_000), (1234.56, 123_456), (None, None), (0, 0)]
)
def test_the_amount_off_the_contract_is_read_in_cents(
    empty_org: SalesforceSandbox, value: object, read: object
) -> None:
    deal_id = _won(empty_org, Deal_Discount_Amount__c=value)
    data = make_adapter(empty_org).get_deal(deal_id).data
    assert data["discount_amount"] == read


def test_an_amount_and_a_percent_on_one_deal_are_refused_by_name(
    empty_org: SalesforceSandbox,
) -> None:
    deal_id = _won(empty_org, Deal_Discount_Amount__c=500, Deal_Discount__c=10)
    data = make_adapter(empty_org).get_deal(deal_id).data
    assert (data["discount_amount"], Decimal(data["discount_percent"])) == (50_000, 10)
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(data)
    assert "discount_amount" in {p.field for p in caught.value.problems}
