"""check_schema: every mapped table, column, lookup and alternate key against EntityDefinitions."""

from __future__ import annotations

import json
from typing import Any

import responses

from tests.crm.dynamics.support import (
    API,
    FakeTime,
    api_requests,
    fixture_json,
    make_adapter,
    odata,
    query_of,
)

TABLES = (
    "opportunity",
    "opportunityproduct",
    "account",
    "contact",
    "db_stripeinvoice",
    "product",
    "transactioncurrency",
)


def definition_url(table: str) -> str:
    return f"{API}/EntityDefinitions(LogicalName='{table}')"


def serve_definitions(rsps: responses.RequestsMock, **replaced: dict[str, Any]) -> None:
    for table in TABLES:
        if table in replaced:
            rsps.add(responses.GET, definition_url(table), **replaced[table])
        else:
            rsps.add(
                responses.GET,
                definition_url(table),
                **odata(f"entity_definition__{table}.json"),
            )


def without(table: str, *columns: str, keys: bool = False) -> dict[str, Any]:
    data = fixture_json(f"entity_definition__{table}.json")
    data["Attributes"] = [a for a in data["Attributes"] if a["LogicalName"] not in columns]
    if keys:
        data["Keys"] = []
    return {"json": data}


def test_the_shipped_mapping_matches_tables_made_by_the_definitions_script(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_definitions(entra)
    assert make_adapter(fake_time).check_schema() == []


def test_each_table_is_read_once_with_its_columns_lookups_and_keys(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_definitions(entra)
    make_adapter(fake_time).check_schema()
    calls = api_requests(entra)
    assert len(calls) == len(TABLES)
    query = query_of(calls[0])
    assert query["$select"] == ["LogicalName,EntitySetName"]
    assert query["$expand"][0].startswith("Attributes($select=LogicalName,AttributeType),")
    assert "Keys($select=KeyAttributes)" in query["$expand"][0]


def test_missing_columns_and_keys_are_reported_one_per_line_by_mapping_key(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_definitions(
        entra,
        opportunity=without("opportunity", "db_contractstart", "db_planurl"),
        db_stripeinvoice=without("db_stripeinvoice", "db_paiddate", keys=True),
    )
    problems = make_adapter(fake_time).check_schema()
    assert [p.split(":", 1)[0] for p in problems] == [
        "deal.fields.contract_start",
        "deal.writeback.plan_url",
        "invoice.external_id",
        "invoice.fields.paid_date",
    ]
    assert "column 'db_contractstart' does not exist on table 'opportunity'" in problems[0]
    assert "no alternate key on 'db_invoiceid'" in problems[2]


def test_a_missing_table_is_reported_against_its_section(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_definitions(
        entra,
        db_stripeinvoice={"status": 404, **odata("error__entity_definition_not_found.json")},
    )
    problems = make_adapter(fake_time).check_schema()
    assert len(problems) == 1
    assert problems[0].startswith("invoice.object: table 'db_stripeinvoice' does not exist")


def test_a_lookup_whose_navigation_property_differs_names_the_option_to_set(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    data = fixture_json("entity_definition__opportunity.json")
    for relation in data["ManyToOneRelationships"]:
        if relation["ReferencingAttribute"] == "db_billingcontactid":
            relation["ReferencingEntityNavigationPropertyName"] = "db_BillingContactId"
    serve_definitions(entra, opportunity={"body": json.dumps(data)})
    problems = make_adapter(fake_time).check_schema()
    assert problems == [
        "deal.billing_contact.lookup_field: the lookup 'db_billingcontactid' has the navigation "
        "property 'db_BillingContactId', not 'db_billingcontactid'; set "
        "options.navigation_properties.opportunity.db_billingcontactid: db_BillingContactId"
    ]
