"""sObject rows: create, retrieve, update, delete, upsert, ids, validation errors."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from connector.crm.https_rewrite import HttpsRewriteSession
from sandboxes.salesforce import SalesforceSandbox

SALESFORCE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def case_safe_suffix(id15: str) -> str:
    """Salesforce's documented algorithm, written out independently of the sandbox."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        value = sum(1 << i for i, c in enumerate(chunk) if c.isupper())
        suffix += alphabet[value]
    return suffix


def error_of(failure: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content = failure.value.content
    assert isinstance(content, list)
    return dict(content[0])


def make_product_with_price(sf: Any, price: str = "100.00") -> tuple[str, str]:
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    product = sf.Product2.create({"Name": "Platform", "IsActive": True})["id"]
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": price, "IsActive": True}
    )["id"]
    return product, entry


def test_create_answers_id_success_and_no_errors(sf: Any) -> None:
    result = sf.Account.create({"Name": "Acme"})
    assert result == {"id": result["id"], "success": True, "errors": []}


@pytest.mark.parametrize(
    ("sobject", "body", "prefix"),
    [
        ("Account", {"Name": "A"}, "001"),
        ("Product2", {"Name": "P"}, "01t"),
        ("Pricebook2", {"Name": "Partner prices"}, "01s"),
        ("Stripe_Invoice__c", {"Stripe_Invoice_Id__c": "in_1"}, "a0X"),
    ],
)
def test_new_ids_have_the_object_key_prefix_and_the_case_safe_checksum(
    sf: Any, sobject: str, body: dict[str, Any], prefix: str
) -> None:
    record_id = getattr(sf, sobject).create(body)["id"]
    assert len(record_id) == 18
    assert record_id.startswith(prefix)
    assert record_id[15:] == case_safe_suffix(record_id[:15])


def test_related_objects_get_their_own_key_prefixes(sf: Any) -> None:
    account = sf.Account.create({"Name": "Acme"})["id"]
    contact = sf.Contact.create({"LastName": "Doe", "AccountId": account})["id"]
    opportunity = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    _product, entry = make_product_with_price(sf)
    item = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 1, "UnitPrice": 5}
    )["id"]
    role = sf.OpportunityContactRole.create({"OpportunityId": opportunity, "ContactId": contact})
    assert [contact[:3], opportunity[:3], entry[:3], item[:3], role["id"][:3]] == [
        "003", "006", "01u", "00k", "00K",
    ]  # fmt: skip


def test_a_15_character_id_is_accepted_where_an_id_is_expected(sf: Any) -> None:
    record_id = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Account.update(record_id[:15], {"Name": "Acme Corp"}) == 204
    assert sf.Account.get(record_id[:15])["Id"] == record_id


def test_retrieve_returns_attributes_every_field_and_audit_timestamps(sf: Any) -> None:
    record_id = sf.Account.create({"Name": "Acme"})["id"]
    record = sf.Account.get(record_id)
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v59.0/sobjects/Account/{record_id}",
    }
    assert record["IsDeleted"] is False
    assert record["Credit_Hold__c"] is False
    assert record["CurrencyIsoCode"] == "USD"
    for stamp in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert SALESFORCE_DATETIME.match(record[stamp])
    assert record["CreatedDate"] == "2026-11-21T05:50:16.000+0000"


def test_retrieve_with_fields_returns_only_those_fields(sf: Any) -> None:
    record_id = sf.Account.create({"Name": "Acme", "Phone": "555"})["id"]
    record = sf.Account.get(record_id, params={"fields": "Name,Phone"})
    assert list(record) == ["attributes", "Name", "Phone"]


def test_update_answers_204_and_changes_the_record(sf: Any, clock: Any) -> None:
    record_id = sf.Account.create({"Name": "Acme"})["id"]
    clock.advance(minutes=5)
    assert sf.Account.update(record_id, {"Credit_Hold__c": True}) == 204
    record = sf.Account.get(record_id)
    assert record["Credit_Hold__c"] is True
    assert record["LastModifiedDate"] == "2026-11-21T05:55:16.000+0000"
    assert record["CreatedDate"] == "2026-11-21T05:50:16.000+0000"


def test_delete_answers_204_and_the_record_is_gone(sf: Any) -> None:
    record_id = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Account.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(record_id)


def test_deleting_an_account_deletes_its_contacts(sf: Any) -> None:
    account = sf.Account.create({"Name": "Acme"})["id"]
    sf.Contact.create({"LastName": "Doe", "AccountId": account})
    sf.Account.delete(account)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_an_unknown_id_is_not_found(sf: Any) -> None:
    with pytest.raises(SalesforceResourceNotFound) as failure:
        sf.Account.get("001000000000000AAA")
    assert error_of(failure)["errorCode"] == "NOT_FOUND"


def test_a_malformed_id_is_not_found(sf: Any) -> None:
    with pytest.raises(SalesforceResourceNotFound) as failure:
        sf.Account.update("not-an-id", {"Name": "x"})
    assert error_of(failure)["errorCode"] == "NOT_FOUND"


def test_upsert_by_external_id_creates_then_updates(sf: Any) -> None:
    assert sf.Product2.upsert("Stripe_Product_Id__c/prod_1", {"Name": "Platform"}) == 201
    assert sf.Product2.upsert("Stripe_Product_Id__c/prod_1", {"Name": "Platform+"}) == 200
    records = sf.query("SELECT Name, Stripe_Product_Id__c FROM Product2")["records"]
    assert [(r["Name"], r["Stripe_Product_Id__c"]) for r in records] == [("Platform+", "prod_1")]


def test_upsert_response_tells_whether_the_record_was_created(sf: Any) -> None:
    created = sf.Product2.upsert("Stripe_Product_Id__c/prod_2", {"Name": "P"}, raw_response=True)
    updated = sf.Product2.upsert("Stripe_Product_Id__c/prod_2", {"Name": "Q"}, raw_response=True)
    assert created.json()["created"] is True
    assert updated.json() == {"id": created.json()["id"], "success": True, "errors": [],
                              "created": False}  # fmt: skip


def test_upsert_on_a_field_that_is_not_an_external_id_is_not_found(sf: Any) -> None:
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.upsert("Phone/555", {"Name": "x"})


def test_get_by_external_id_returns_the_record(sf: Any) -> None:
    sf.Stripe_Invoice__c.upsert("Stripe_Invoice_Id__c/in_123", {"Number__c": "INV-1"})
    record = sf.Stripe_Invoice__c.get_by_custom_id("Stripe_Invoice_Id__c", "in_123")
    assert record["Number__c"] == "INV-1"
    assert record["Name"] == record["Id"]


def test_an_unknown_field_is_invalid_field(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Account.create({"Name": "Acme", "Colour__c": "red"})
    assert error_of(failure) == {
        "message": "No such column 'Colour__c' on sobject of type Account",
        "errorCode": "INVALID_FIELD",
    }


def test_a_missing_required_field_is_required_field_missing(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Opportunity.create({"Name": "Deal"})
    assert error_of(failure) == {
        "message": "Required fields are missing: [StageName, CloseDate]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["StageName", "CloseDate"],
    }


def test_a_value_of_the_wrong_json_type_is_a_json_parser_error(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Account.create({"Name": "Acme", "Credit_Hold__c": "maybe"})
    assert error_of(failure)["errorCode"] == "JSON_PARSER_ERROR"


def test_a_boolean_for_a_number_field_is_invalid_type_on_field_in_record(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Account.create({"Name": "Acme", "Credit_Limit__c": True})
    assert error_of(failure)["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"


def test_a_date_in_the_wrong_format_is_a_json_parser_error(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Opportunity.create(
            {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "21/11/2026"}
        )
    assert error_of(failure)["errorCode"] == "JSON_PARSER_ERROR"


def test_a_value_outside_a_restricted_picklist_is_rejected(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Account.create({"Name": "Acme", "Credit_Hold_Source__c": "Robot"})
    assert error_of(failure)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_a_duplicate_value_on_a_unique_external_id_is_duplicate_value(sf: Any) -> None:
    sf.Product2.create({"Name": "A", "Stripe_Product_Id__c": "prod_X"})
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Product2.create({"Name": "B", "Stripe_Product_Id__c": "PROD_x"})
    assert error_of(failure)["errorCode"] == "DUPLICATE_VALUE"


def test_writing_a_read_only_field_is_refused(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Account.create({"Name": "Acme", "CreatedDate": "2020-01-01T00:00:00Z"})
    assert error_of(failure)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_a_lookup_to_a_missing_record_is_an_invalid_cross_reference(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Contact.create({"LastName": "Doe", "AccountId": "001000000000000AAA"})
    assert error_of(failure)["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_currency_values_round_trip_as_exact_decimals(sandbox: SalesforceSandbox) -> None:
    sf: Any = Salesforce(
        session_id=Salesforce(
            username="demo@dealbridge.example",
            password="demo-password",
            security_token="",
            session=HttpsRewriteSession(sandbox.url),
        ).session_id,
        instance_url=sandbox.url,
        session=HttpsRewriteSession(sandbox.url),
        parse_float=Decimal,
    )
    sf.Account.create({"Name": "Acme", "Credit_Limit__c": "1200.50", "MRR__c": 0.1})
    record = sf.query("SELECT Credit_Limit__c, MRR__c FROM Account")["records"][0]
    assert record["Credit_Limit__c"] == Decimal("1200.5")
    assert record["MRR__c"] == Decimal("0.1")


def test_multi_select_picklist_values_are_stored_semicolon_separated(sf: Any) -> None:
    record_id = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Closed Won", "CloseDate": "2026-11-21",
         "Payment_Method__c": "ACH;Credit Card"}
    )["id"]  # fmt: skip
    assert sf.Opportunity.get(record_id)["Payment_Method__c"] == "ACH;Credit Card"


def test_a_line_item_without_unit_or_total_price_is_a_field_integrity_exception(
    sf: Any,
) -> None:
    opportunity = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    _product, entry = make_product_with_price(sf)
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.OpportunityLineItem.create(
            {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 1}
        )
    assert error_of(failure)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_line_items_roll_up_into_the_opportunity_amount(sf: Any) -> None:
    opportunity = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    _product, entry = make_product_with_price(sf, "100.00")
    sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 3,
         "UnitPrice": "100.00", "Pricing_Schedule__c": "Monthly"}
    )  # fmt: skip
    sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 1,
         "UnitPrice": "49.50"}
    )  # fmt: skip
    assert sf.Opportunity.get(opportunity)["Amount"] == 349.5


def test_stage_closed_won_marks_the_opportunity_closed_and_won(sf: Any) -> None:
    record_id = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Closed Won", "CloseDate": "2026-11-21"}
    )["id"]
    record = sf.Opportunity.get(record_id)
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (True, True, 100)


def test_a_parent_can_be_referenced_by_its_external_id_in_the_body(sf: Any) -> None:
    opportunity = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    _product, entry = make_product_with_price(sf)
    sf.PricebookEntry.update(entry, {"Stripe_Price_Id__c": "price_1"})
    sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntry": {"Stripe_Price_Id__c": "price_1"},
         "Quantity": 1, "UnitPrice": 10}
    )  # fmt: skip
    item = sf.query("SELECT PricebookEntryId FROM OpportunityLineItem")["records"][0]
    assert item["PricebookEntryId"] == entry
