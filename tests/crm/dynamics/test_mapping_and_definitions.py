"""The shipped mapping is valid, and the definitions script creates every db_ column it names."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from connector.crm.dynamics.definitions import OPTION_VALUE_PREFIX, operations
from connector.crm.dynamics.definitions.__main__ import apply, main
from tests.crm.dynamics.support import API, FakeTime, make_client, shipped_mapping

PUBLISHER_ID = "d21aab71-79e7-11dd-8874-00188b01e34f"


def created_columns() -> set[str]:
    """``table.column`` for every column, lookup and table the definitions create."""
    created: set[str] = set()
    for op in operations():
        body = op.body or {}
        if op.path.endswith("/Attributes"):
            table = op.path.split("'")[1]
            created.add(f"{table}.{str(body['SchemaName']).lower()}")
        elif op.path == "RelationshipDefinitions":
            created.add(f"{body['ReferencingEntity']}.{str(body['Lookup']['SchemaName']).lower()}")
        elif op.path == "EntityDefinitions":
            table = str(body["SchemaName"]).lower()
            for column in body["Attributes"]:
                created.add(f"{table}.{str(column['SchemaName']).lower()}")
    return created


def mapped_custom_columns() -> set[str]:
    mapping = shipped_mapping()
    found: set[str] = set()

    def add(table: Any, column: Any) -> None:
        if isinstance(column, str) and column.split(".")[0].startswith("db_"):
            found.add(f"{table}.{column.split('.')[0]}")

    for section in (mapping.deal, mapping.line_item, mapping.account, mapping.invoice):
        for column in section["fields_"].values():
            add(section["object"], column)
    for section in (mapping.deal, mapping.account):
        for column in section["writeback"].values():
            add(section["object"], column)
    add(mapping.deal["object"], mapping.deal["billing_contact"]["lookup_field"])
    add(mapping.invoice["object"], mapping.invoice["external_id"])
    assert mapping.product is not None
    add(mapping.product["object"], mapping.product["external_id"])
    for column in mapping.product["fields_"].values():
        add(mapping.product["object"], column)
    return found


def test_the_shipped_dynamics_mapping_is_valid() -> None:
    mapping = shipped_mapping()
    assert mapping.crm == "dynamics"
    assert mapping.deal["entity_set"] == "opportunities"
    assert mapping.invoice["external_id"] == "db_invoiceid"


def test_every_custom_column_the_mapping_names_is_created_by_the_definitions() -> None:
    missing = mapped_custom_columns() - created_columns()
    assert missing == set()


def test_the_pricing_schedule_choice_values_are_those_the_mapping_lists() -> None:
    op = next(o for o in operations() if o.description.endswith(".db_pricingschedule"))
    assert op.body is not None
    options = op.body["OptionSet"]["Options"]
    values = shipped_mapping().line_item["pricing_schedule_values"]
    for option in options:
        assert option["Value"] // 10000 == OPTION_VALUE_PREFIX
        label = option["Label"]["LocalizedLabels"][0]["Label"]
        assert values[str(option["Value"])] == values[label]


def test_print_lists_the_web_api_calls_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print"]) == 0
    calls = json.loads(capsys.readouterr().out)
    assert [c["path"] for c in calls[:3]] == ["publishers", "solutions", "EntityDefinitions"]
    key = next(c for c in calls if c["path"].endswith("/Keys") and "db_stripeinvoice" in c["path"])
    assert key["method"] == "POST"
    assert key["body"]["KeyAttributes"] == ["db_invoiceid"]
    assert key["headers"] == {"MSCRM.SolutionUniqueName": "dealbridge"}
    lookups = [c["body"] for c in calls if c["path"] == "RelationshipDefinitions"]
    assert {b["ReferencingEntityNavigationPropertyName"] for b in lookups} == {
        "db_accountid",
        "db_opportunityid",
        "db_billingcontactid",
    }
    assert calls[-1]["path"] == "PublishXml"


def test_print_includes_the_stripe_price_id_key_on_price_list_items(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--print"]) == 0
    calls = json.loads(capsys.readouterr().out)
    table = "EntityDefinitions(LogicalName='productpricelevel')"
    column = next(c for c in calls if c["path"] == f"{table}/Attributes")
    assert column["body"]["SchemaName"] == "db_StripePriceId"
    key = next(c for c in calls if c["path"] == f"{table}/Keys")
    assert key["body"]["KeyAttributes"] == ["db_stripepriceid"]
    assert "<entity>productpricelevel</entity>" in calls[-1]["body"]["ParameterXml"]


def test_apply_skips_what_exists_and_creates_the_rest(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    publisher, solution = operations()[:2]
    column = next(o for o in operations() if o.description == "column account.db_creditnote")
    entra.add(responses.GET, f"{API}/publishers", json={"value": [{"publisherid": PUBLISHER_ID}]})
    entra.add(responses.GET, f"{API}/solutions", json={"value": []})
    entra.add(responses.POST, f"{API}/solutions", status=204)
    entra.add(
        responses.GET,
        f"{API}/EntityDefinitions(LogicalName='account')/Attributes(LogicalName='db_creditnote')",
        status=404,
        json={"error": {"code": "0x80040217", "message": "Could not find attribute"}},
    )
    entra.add(
        responses.POST, f"{API}/EntityDefinitions(LogicalName='account')/Attributes", status=204
    )
    said: list[str] = []
    apply(make_client(fake_time), [publisher, solution, column], said.append)
    assert said == [
        "exists   publisher dealbridge (prefix db)",
        "created  solution dealbridge",
        "created  column account.db_creditnote",
    ]
    posted = [c for c in entra.calls if c.request.method == "POST" and API in c.request.url]
    assert json.loads(posted[0].request.body)["publisherid@odata.bind"] == (
        f"/publishers({PUBLISHER_ID})"
    )
    assert posted[1].request.headers["MSCRM.SolutionUniqueName"] == "dealbridge"
