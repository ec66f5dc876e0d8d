"""SOQL through /query, /queryAll and queryMore, as simple-salesforce drives them."""
# ruff: noqa: S608 - SOQL text is the subject under test, not injected input

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandboxes.salesforce import SalesforceSandbox

from .conftest import login

ORG: dict[str, Any] = {
    "records": {
        "Account": [
            {"ref": "acme", "Name": "Acme Corp", "BillingCity": "Berlin", "Credit_Limit__c": 5000,
             "NumberOfEmployees": 120},
            {"ref": "globex", "Name": "Globex", "BillingCity": "Paris", "NumberOfEmployees": 40},
            {"ref": "initech", "Name": "Initech", "Credit_Hold__c": True},
            {"ref": "obrien", "Name": "O'Brien & Sons", "BillingCity": "Dublin"},
        ],
        "Contact": [
            {"ref": "wile", "FirstName": "Wile", "LastName": "Coyote",
             "Email": "Wile.Coyote@Acme.example", "AccountId": {"ref": "acme"}},
            {"ref": "hank", "FirstName": "Hank", "LastName": "Scorpio",
             "Email": "hank@globex.example", "AccountId": {"ref": "globex"}},
        ],
        "Product2": [
            {"ref": "platform", "Name": "Platform", "IsActive": True},
        ],
        "PricebookEntry": [
            {"ref": "platform_usd", "Pricebook2Id": {"ref": "standard_pricebook"},
             "Product2Id": {"ref": "platform"}, "UnitPrice": "100.00", "IsActive": True},
        ],
        "Opportunity": [
            {"ref": "acme_deal", "Name": "Acme platform", "AccountId": {"ref": "acme"},
             "StageName": "Closed Won", "CloseDate": "2026-11-20",
             "Contract_Start_Date__c": "2026-12-01", "Payment_Method__c": "ACH;Credit Card",
             "Billing_Contact__c": {"ref": "wile"}},
            {"ref": "globex_deal", "Name": "Globex pilot", "AccountId": {"ref": "globex"},
             "StageName": "Prospecting", "CloseDate": "2027-01-15",
             "Payment_Method__c": "Credit Card"},
            {"ref": "orphan_deal", "Name": "No account", "StageName": "Qualification",
             "CloseDate": "2026-10-01"},
        ],
        "OpportunityLineItem": [
            {"OpportunityId": {"ref": "acme_deal"}, "PricebookEntryId": {"ref": "platform_usd"},
             "Quantity": 2, "UnitPrice": "100.00", "Pricing_Schedule__c": "Monthly"},
            {"OpportunityId": {"ref": "acme_deal"}, "PricebookEntryId": {"ref": "platform_usd"},
             "Quantity": 1, "UnitPrice": "1200.00", "Pricing_Schedule__c": "Annual"},
        ],
        "OpportunityContactRole": [
            {"OpportunityId": {"ref": "globex_deal"}, "ContactId": {"ref": "hank"},
             "Role": "Billing Contact"},
        ],
        "Stripe_Invoice__c": [
            {"Stripe_Invoice_Id__c": "in_1", "Account__c": {"ref": "acme"}, "Status__c": "paid"},
        ],
    }
}  # fmt: skip


@pytest.fixture
def org(make_sandbox: Callable[..., SalesforceSandbox]) -> SalesforceSandbox:
    return make_sandbox(seed=ORG)


@pytest.fixture
def sf(org: SalesforceSandbox) -> Any:
    return login(org)


def names(sf: Any, soql: str) -> list[str]:
    return [r["Name"] for r in sf.query_all(soql)["records"]]


def error_of(failure: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content: Any = failure.value.content
    return dict(content[0])


# ------------------------------------------------------------------ select list


def test_a_query_returns_the_selected_fields_with_attributes_and_api_casing(sf: Any) -> None:
    result = sf.query("select id, name from account where name = 'Acme Corp'")
    assert result["totalSize"] == 1 and result["done"] is True
    record = result["records"][0]
    assert list(record) == ["attributes", "Id", "Name"]
    assert record["attributes"]["type"] == "Account"
    assert record["attributes"]["url"] == f"/services/data/v59.0/sobjects/Account/{record['Id']}"


def test_parent_fields_come_back_as_nested_records(sf: Any) -> None:
    record = sf.query(
        "SELECT Name, Account.Name, Account.BillingCity FROM Opportunity "
        "WHERE Name = 'Acme platform'"
    )["records"][0]
    assert record["Account"]["attributes"]["type"] == "Account"
    assert (record["Account"]["Name"], record["Account"]["BillingCity"]) == ("Acme Corp", "Berlin")


def test_a_parent_two_levels_up_is_nested_twice(sf: Any) -> None:
    record = sf.query("SELECT Account.Owner.Name FROM Opportunity WHERE Name = 'Acme platform'")[
        "records"
    ][0]
    assert record["Account"]["Owner"]["Name"] == "Dealbridge Integration"
    assert record["Account"]["Owner"]["attributes"]["type"] == "User"


def test_an_empty_lookup_gives_a_null_parent(sf: Any) -> None:
    record = sf.query("SELECT Account.Name FROM Opportunity WHERE Name = 'No account'")["records"][
        0
    ]
    assert record["Account"] is None


def test_a_custom_lookup_is_traversed_through_its_r_relationship(sf: Any) -> None:
    record = sf.query(
        "SELECT Billing_Contact__r.Email FROM Opportunity WHERE Name = 'Acme platform'"
    )["records"][0]
    assert record["Billing_Contact__r"]["Email"] == "Wile.Coyote@Acme.example"


def test_child_subqueries_come_back_as_nested_query_results(sf: Any) -> None:
    record = sf.query(
        "SELECT Name, (SELECT Quantity, Pricing_Schedule__c FROM OpportunityLineItems "
        "ORDER BY Quantity) FROM Opportunity WHERE Name = 'Acme platform'"
    )["records"][0]
    items = record["OpportunityLineItems"]
    assert (items["totalSize"], items["done"]) == (2, True)
    assert [(i["Quantity"], i["Pricing_Schedule__c"]) for i in items["records"]] == [
        (1, "Annual"),
        (2, "Monthly"),
    ]
    assert items["records"][0]["attributes"]["type"] == "OpportunityLineItem"


def test_an_empty_child_subquery_is_null(sf: Any) -> None:
    record = sf.query(
        "SELECT (SELECT Id FROM OpportunityLineItems) FROM Opportunity WHERE Name = 'Globex pilot'"
    )["records"][0]
    assert record["OpportunityLineItems"] is None


def test_contact_roles_subquery_can_filter_on_the_role(sf: Any) -> None:
    record = sf.query(
        "SELECT (SELECT Contact.Email FROM OpportunityContactRoles WHERE Role = 'Billing Contact')"
        " FROM Opportunity WHERE Name = 'Globex pilot'"
    )["records"][0]
    roles = record["OpportunityContactRoles"]["records"]
    assert [r["Contact"]["Email"] for r in roles] == ["hank@globex.example"]


def test_a_custom_child_relationship_is_queried_by_its_r_name(sf: Any) -> None:
    record = sf.query(
        "SELECT (SELECT Stripe_Invoice_Id__c FROM Stripe_Invoices__r) FROM Account "
        "WHERE Name = 'Acme Corp'"
    )["records"][0]
    assert record["Stripe_Invoices__r"]["records"][0]["Stripe_Invoice_Id__c"] == "in_1"


def test_count_returns_the_total_size_and_no_records(sf: Any) -> None:
    assert sf.query("SELECT COUNT() FROM Account WHERE BillingCity != null") == {
        "totalSize": 3,
        "done": True,
        "records": [],
    }


# ----------------------------------------------------------------------- where


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'acme corp'", ["Acme Corp"]),
        ("Name != 'Acme Corp'", ["Globex", "Initech", "O'Brien & Sons"]),
        ("NumberOfEmployees > 40", ["Acme Corp"]),
        ("NumberOfEmployees >= 40", ["Acme Corp", "Globex"]),
        ("NumberOfEmployees < 120", ["Globex"]),
        ("NumberOfEmployees <= 120", ["Acme Corp", "Globex"]),
        ("BillingCity IN ('Berlin', 'Dublin')", ["Acme Corp", "O'Brien & Sons"]),
        ("BillingCity NOT IN ('Berlin', 'Dublin')", ["Globex", "Initech"]),
        ("Name LIKE 'G%'", ["Globex"]),
        ("Name LIKE '_nitech'", ["Initech"]),
        ("BillingCity = null", ["Initech"]),
        ("Credit_Hold__c = true", ["Initech"]),
        ("Credit_Limit__c = 5000.00", ["Acme Corp"]),
        ("Name = 'O\\'Brien & Sons'", ["O'Brien & Sons"]),
        ("(BillingCity = 'Paris' OR BillingCity = 'Berlin') AND NumberOfEmployees > 50",
         ["Acme Corp"]),
        ("NOT Name LIKE '%o%'", ["Initech"]),
        ("NOT (BillingCity = 'Paris' OR BillingCity = null)", ["Acme Corp", "O'Brien & Sons"]),
    ],
)  # fmt: skip
def test_where_clauses_filter_like_salesforce(sf: Any, where: str, expected: list[str]) -> None:
    assert sorted(names(sf, f"SELECT Name FROM Account WHERE {where}")) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CloseDate = 2026-11-20", ["Acme platform"]),
        ("CloseDate > 2026-11-20", ["Globex pilot"]),
        ("CloseDate < TODAY", ["Acme platform", "No account"]),
        ("CloseDate = LAST_N_DAYS:7", ["Acme platform"]),
        ("CreatedDate = TODAY", ["Acme platform", "Globex pilot", "No account"]),
        ("CreatedDate >= 2026-11-21T05:50:16Z", ["Acme platform", "Globex pilot", "No account"]),
        ("CreatedDate > 2026-11-21T05:50:16+00:00", []),
        ("CreatedDate < 2026-11-21T06:00:00.000+0000",
         ["Acme platform", "Globex pilot", "No account"]),
        ("Payment_Method__c INCLUDES ('ACH')", ["Acme platform"]),
        ("Payment_Method__c EXCLUDES ('ACH')", ["Globex pilot", "No account"]),
        ("Account.BillingCity = 'Paris'", ["Globex pilot"]),
        ("AccountId IN (SELECT Id FROM Account WHERE Credit_Limit__c > 0)", ["Acme platform"]),
    ],
)  # fmt: skip
def test_date_datetime_multipicklist_parent_and_semi_join_filters(
    sf: Any, where: str, expected: list[str]
) -> None:
    assert sorted(names(sf, f"SELECT Name FROM Opportunity WHERE {where}")) == expected


def test_ids_in_filters_may_be_15_or_18_characters(sf: Any, org: SalesforceSandbox) -> None:
    acme = org.ids_by_ref()["acme"]
    assert names(sf, f"SELECT Name FROM Account WHERE Id = '{acme[:15]}'") == ["Acme Corp"]
    assert names(sf, f"SELECT Name FROM Account WHERE Id IN ('{acme}')") == ["Acme Corp"]


# ------------------------------------------------------------- order and limit


def test_order_by_several_fields_with_nulls_placement(sf: Any) -> None:
    assert names(sf, "SELECT Name FROM Account ORDER BY BillingCity DESC NULLS LAST, Name") == [
        "Globex", "O'Brien & Sons", "Acme Corp", "Initech",
    ]  # fmt: skip
    assert names(sf, "SELECT Name FROM Account ORDER BY BillingCity ASC NULLS FIRST") == [
        "Initech", "Acme Corp", "O'Brien & Sons", "Globex",
    ]  # fmt: skip


def test_limit_and_offset_page_through_ordered_results(sf: Any) -> None:
    assert names(sf, "SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1") == [
        "Globex",
        "Initech",
    ]


# ---------------------------------------------------------------------- errors


def test_a_malformed_query_is_malformed_query_pointing_at_the_problem(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FRM Account")
    error = error_of(failure)
    assert error["errorCode"] == "MALFORMED_QUERY"
    assert error["message"] == (
        "\nSELECT Id FRM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FRM'"
    )


def test_mixing_and_with_or_without_parentheses_is_malformed(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'")
    assert error_of(failure)["errorCode"] == "MALFORMED_QUERY"


def test_an_unknown_field_is_invalid_field(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Colour__c FROM Account")
    error = error_of(failure)
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Colour__c' on entity 'Account'" in error["message"]


def test_an_unknown_object_is_invalid_type(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Invoice__c")
    assert error_of(failure)["errorCode"] == "INVALID_TYPE"


def test_a_quoted_value_for_a_date_field_is_rejected(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Opportunity WHERE CloseDate = '2026-11-20'")
    error = error_of(failure)
    assert error["errorCode"] == "INVALID_FIELD"
    assert "must be of type date and should not be enclosed in quotes" in error["message"]


def test_an_invalid_id_literal_is_rejected(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Account WHERE Id = 'nope'")
    assert error_of(failure)["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"


# -------------------------------------------------------------- deleted rows


def test_deleted_records_are_only_returned_by_query_all(sf: Any, org: SalesforceSandbox) -> None:
    sf.Account.delete(org.ids_by_ref()["initech"])
    assert "Initech" not in names(sf, "SELECT Name FROM Account")
    deleted = sf.query_all("SELECT Name, IsDeleted FROM Account WHERE IsDeleted = true",
                           include_deleted=True)["records"]  # fmt: skip
    assert [(r["Name"], r["IsDeleted"]) for r in deleted] == [("Initech", True)]


# ------------------------------------------------------------------ queryMore

MANY: dict[str, Any] = {"records": {"Account": [{"Name": f"Account {n:04d}"} for n in range(2001)]}}


def test_results_over_2000_records_are_paged_with_a_next_records_url(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sf = login(make_sandbox(seed=MANY))
    first = sf.query("SELECT Name FROM Account ORDER BY Name")
    assert (first["totalSize"], first["done"], len(first["records"])) == (2001, False, 2000)
    assert re.fullmatch(r"/services/data/v59\.0/query/01g[A-Za-z0-9]{15,18}-2000",
                        first["nextRecordsUrl"])  # fmt: skip
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (rest["done"], [r["Name"] for r in rest["records"]]) == (True, ["Account 2000"])
    assert "nextRecordsUrl" not in rest


def test_query_all_follows_every_page(make_sandbox: Callable[..., SalesforceSandbox]) -> None:
    sandbox = make_sandbox(seed=MANY, query_batch_size=500)
    sf = login(sandbox)
    sandbox.reset_request_counts()
    result = sf.query_all("SELECT Name FROM Account")
    assert result["totalSize"] == 2001
    assert len({r["Name"] for r in result["records"]}) == 2001
    counts = sandbox.request_counts()
    assert counts[("GET", "/services/data/v{version}/query")] == 1
    assert counts[("GET", "/services/data/v{version}/query/{locator}")] == 4


def test_the_batch_size_query_option_header_sets_the_page_size(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sf = login(make_sandbox(seed=MANY))
    pages = sf.query("SELECT Name FROM Account", headers={"Sforce-Query-Options": "batchSize=300"})
    assert len(pages["records"]) == 300
    assert pages["nextRecordsUrl"].endswith("-300")


def test_query_all_iter_yields_records_lazily_across_pages(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sf = login(make_sandbox(seed=MANY, query_batch_size=1000))
    iterator = sf.query_all_iter("SELECT Name FROM Account ORDER BY Name")
    assert next(iterator)["Name"] == "Account 0000"
    assert sum(1 for _ in iterator) == 2000


def test_an_unknown_query_locator_is_invalid_query_locator(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query_more("01g5g00000AbCdEAAA-2000")
    assert error_of(failure)["errorCode"] == "INVALID_QUERY_LOCATOR"
