"""sObject Collections and Composite, through simple-salesforce's restful()."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}


def accounts(*names: str) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Account"}, "Name": name} for name in names]


def create(sf: Any, records: list[dict[str, Any]], all_or_none: bool = False) -> Any:
    return sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": all_or_none, "records": records}
    )


def count(sf: Any, sobject: str) -> int:
    return int(sf.query(f"SELECT COUNT() FROM {sobject}")["totalSize"])  # noqa: S608


def test_collection_create_answers_one_result_per_record_in_request_order(sf: Any) -> None:
    contact = {"attributes": {"type": "Contact"}, "LastName": "Doe"}
    results = create(sf, [*accounts("A", "B"), contact])
    assert [r["success"] for r in results] == [True, True, True]
    assert [r["id"][:3] for r in results] == ["001", "001", "003"]
    assert all(r["errors"] == [] for r in results)


def test_a_failing_record_does_not_stop_the_others_without_all_or_none(sf: Any) -> None:
    results = create(sf, [*accounts("A"), {"attributes": {"type": "Account"}}, *accounts("C")])
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Name]",
                "fields": ["Name"],
            }
        ],
    }
    assert count(sf, "Account") == 2


def test_all_or_none_rolls_everything_back_when_one_record_fails(sf: Any) -> None:
    results = create(
        sf, [*accounts("A"), {"attributes": {"type": "Account"}}, *accounts("C")], all_or_none=True
    )
    assert results[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[2] == {"success": False, "errors": [ROLLED_BACK]}
    assert count(sf, "Account") == 0


def test_more_than_200_records_is_refused_as_exceeded_id_limit(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        create(sf, accounts(*(f"A{n}" for n in range(201))))
    content: Any = failure.value.content
    assert content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert count(sf, "Account") == 0


def test_exactly_200_records_are_accepted(sf: Any) -> None:
    assert len(create(sf, accounts(*(f"A{n}" for n in range(200))))) == 200


def test_collection_update_changes_each_record(sf: Any) -> None:
    ids = [r["id"] for r in create(sf, accounts("A", "B"))]
    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "Id": i, "Phone": "555"}
                          for i in ids]},
    )  # fmt: skip
    assert results == [{"id": i, "success": True, "errors": []} for i in ids]
    assert sf.query("SELECT COUNT() FROM Account WHERE Phone = '555'")["totalSize"] == 2


def test_collection_update_without_an_id_fails_that_record(sf: Any) -> None:
    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "Phone": "555"}]},
    )
    assert results[0]["success"] is False
    assert results[0]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"


def test_collection_upsert_reports_created_per_record(sf: Any) -> None:
    sf.Product2.create({"Name": "Old", "Stripe_Product_Id__c": "prod_1"})
    results = sf.restful(
        "composite/sobjects/Product2/Stripe_Product_Id__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Product2"}, "Stripe_Product_Id__c": "prod_1",
                 "Name": "Updated"},
                {"attributes": {"type": "Product2"}, "Stripe_Product_Id__c": "prod_2",
                 "Name": "New"},
            ],
        },
    )  # fmt: skip
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True)]
    names = sf.query("SELECT Name FROM Product2 ORDER BY Stripe_Product_Id__c")["records"]
    assert [r["Name"] for r in names] == ["Updated", "New"]


def test_collection_delete_removes_the_listed_ids(sf: Any) -> None:
    ids = [r["id"] for r in create(sf, accounts("A", "B", "C"))]
    results = sf.restful("composite/sobjects", method="DELETE",
                         params={"ids": ",".join(ids[:2])})  # fmt: skip
    assert results == [{"id": i, "success": True, "errors": []} for i in ids[:2]]
    assert count(sf, "Account") == 1


def test_collection_delete_with_all_or_none_keeps_everything_if_one_id_fails(sf: Any) -> None:
    ids = [r["id"] for r in create(sf, accounts("A"))]
    results = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{ids[0]},001000000000000AAA", "allOrNone": "true"},
    )
    assert results[0] == {"id": ids[0], "success": False, "errors": [ROLLED_BACK]}
    assert results[1]["success"] is False
    assert count(sf, "Account") == 1


# ------------------------------------------------------------------- composite


def test_composite_runs_subrequests_in_order_with_references(sf: Any) -> None:
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "acct", "body": {"Name": "Acme"}},
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact",
                 "referenceId": "contact",
                 "body": {"LastName": "Doe", "AccountId": "@{acct.id}"}},
                {"method": "GET", "url": "/services/data/v59.0/sobjects/Account/@{acct.id}"
                 "?fields=Name", "referenceId": "read"},
                {"method": "GET", "referenceId": "q",
                 "url": "/services/data/v59.0/query?q=SELECT+Account.Name+FROM+Contact"},
            ],
        },
    )  # fmt: skip
    responses = result["compositeResponse"]
    assert [r["httpStatusCode"] for r in responses] == [201, 201, 200, 200]
    assert [r["referenceId"] for r in responses] == ["acct", "contact", "read", "q"]
    assert responses[0]["httpHeaders"]["Location"].endswith(responses[0]["body"]["id"])
    assert responses[2]["body"]["Name"] == "Acme"
    assert responses[3]["body"]["records"][0]["Account"]["Name"] == "Acme"


def test_a_failed_composite_subrequest_rolls_back_all_with_all_or_none(sf: Any) -> None:
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "ok", "body": {"Name": "Acme"}},
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "bad", "body": {"Nope__c": 1}},
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "never", "body": {"Name": "Later"}},
            ],
        },
    )  # fmt: skip
    responses = result["compositeResponse"]
    assert [r["httpStatusCode"] for r in responses] == [400, 400, 400]
    assert responses[1]["body"][0]["errorCode"] == "INVALID_FIELD"
    assert responses[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert responses[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert count(sf, "Account") == 0


def test_without_all_or_none_only_subrequests_referencing_a_failure_fail(sf: Any) -> None:
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "bad", "body": {}},
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact",
                 "referenceId": "child", "body": {"LastName": "Doe", "AccountId": "@{bad.id}"}},
                {"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                 "referenceId": "other", "body": {"Name": "Other"}},
            ],
        },
    )  # fmt: skip
    codes = [r["httpStatusCode"] for r in result["compositeResponse"]]
    assert codes == [400, 400, 201]
    assert result["compositeResponse"][1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert count(sf, "Account") == 1


def test_composite_refuses_more_than_25_subrequests(sf: Any) -> None:
    subrequests = [
        {"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": f"r{n}"}
        for n in range(26)
    ]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite", method="POST", json={"compositeRequest": subrequests})


def test_collection_retrieve_returns_records_in_id_order_with_null_for_missing(sf: Any) -> None:
    ids = [r["id"] for r in create(sf, accounts("A", "B"))]
    records = sf.restful(
        "composite/sobjects/Account",
        params={"ids": f"{ids[1]},001000000000000AAA,{ids[0]}", "fields": "Name"},
    )
    assert [r and r["Name"] for r in records] == ["B", None, "A"]
