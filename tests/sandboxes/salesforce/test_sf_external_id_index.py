"""External-id and unique lookups stay right as records change, are deleted and roll back.

The store finds records by external id (upserts) and checks unique fields through an index
kept in step with every write; these pin down the cases an index can get wrong.
"""

from __future__ import annotations

from typing import Any

from simple_salesforce.exceptions import SalesforceMalformedRequest

INVOICE = "Stripe_Invoice__c"


def invoice(external_id: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": INVOICE}, "Stripe_Invoice_Id__c": external_id, **fields}


def collection(sf: Any, method: str, records: list[dict[str, Any]]) -> Any:
    return sf.restful(
        "composite/sobjects", method=method, json={"allOrNone": True, "records": records}
    )


def upsert(sf: Any, external_id: str) -> Any:
    return sf.restful(
        f"sobjects/{INVOICE}/Stripe_Invoice_Id__c/{external_id}",
        method="PATCH",
        json={"Status__c": "open"},
    )


def count(sf: Any) -> int:
    return int(sf.query(f"SELECT COUNT() FROM {INVOICE}")["totalSize"])  # noqa: S608


def test_upsert_finds_a_record_by_the_external_id_an_update_gave_it(sf: Any) -> None:
    record_id = sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_old"})["id"]
    sf.Stripe_Invoice__c.update(record_id, {"Stripe_Invoice_Id__c": "in_new"})

    found = upsert(sf, "in_new")
    assert (found["id"], found["created"]) == (record_id, False)
    assert upsert(sf, "in_old")["created"] is True
    assert count(sf) == 2


def test_external_id_lookup_ignores_case_as_salesforce_does(sf: Any) -> None:
    record_id = sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_MiXeD"})["id"]

    assert upsert(sf, "IN_mixed")["id"] == record_id
    assert count(sf) == 1


def test_a_deleted_records_external_id_is_free_again(sf: Any) -> None:
    record_id = sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_gone"})["id"]
    sf.Stripe_Invoice__c.delete(record_id)

    assert upsert(sf, "in_gone")["created"] is True
    assert sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_gone2"})["success"]


def test_a_rolled_back_create_leaves_its_unique_value_free(sf: Any) -> None:
    results = collection(sf, "POST", [invoice("in_1"), invoice("in_1")])  # duplicate: all fail
    assert [r["success"] for r in results] == [False, False]

    assert sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_1"})["success"]
    assert count(sf) == 1


def test_a_rolled_back_update_keeps_the_record_under_its_old_external_id(sf: Any) -> None:
    kept = sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_a"})["id"]
    other = sf.Stripe_Invoice__c.create({"Stripe_Invoice_Id__c": "in_b"})["id"]
    renamed = {"attributes": {"type": INVOICE}, "Id": kept, "Stripe_Invoice_Id__c": "in_c"}
    clash = {"attributes": {"type": INVOICE}, "Id": other, "Stripe_Invoice_Id__c": "in_c"}

    results = collection(sf, "PATCH", [renamed, clash])

    assert [r["success"] for r in results] == [False, False]
    assert upsert(sf, "in_a") == {"id": kept, "success": True, "errors": [], "created": False}
    assert upsert(sf, "in_c")["created"] is True  # in_c was never kept by the rolled-back group
    try:
        sf.Stripe_Invoice__c.update(other, {"Stripe_Invoice_Id__c": "in_a"})
    except SalesforceMalformedRequest as exc:
        assert exc.content[0]["errorCode"] == "DUPLICATE_VALUE"
    else:
        raise AssertionError("in_a is still held by the first record")
