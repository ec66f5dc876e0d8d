"""EntityDefinitions: reading the schema, and customizing it with a solution's Web API calls."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.crm.dynamics.auth import ClientSecretCredential, TokenSource
from connector.crm.dynamics.client import DataverseClient
from connector.crm.dynamics.definitions import operations
from connector.crm.dynamics.definitions.__main__ import apply
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.secrets import Secret
from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi, body


def _client(sandbox: DataverseSandbox) -> DataverseClient:
    session = HttpsRewriteSession(sandbox.url)
    tokens = TokenSource(
        environment_url=sandbox.environment_url,
        tenant_id=sandbox.tenant_id,
        client_id=sandbox.client_id,
        credential=ClientSecretCredential(Secret(sandbox.client_secret)),
        instance_discovery=False,
        http_client=session,
    )
    return DataverseClient(environment_url=sandbox.environment_url, tokens=tokens, session=session)


def test_the_definitions_script_deploys_dealbridges_solution_and_reruns_as_a_no_op() -> None:
    sandbox = DataverseSandbox().start()
    try:
        said: list[str] = []
        apply(_client(sandbox), operations(), echo=said.append)
        assert sum(line.startswith("created") for line in said) == len(operations())

        again: list[str] = []
        apply(_client(sandbox), operations(), echo=again.append)
        assert [line.split()[0] for line in again] == ["exists"] * (len(operations()) - 1) + [
            "created"  # publishing has no "exists" check: it is always sent
        ]
        key = sandbox.store.schema.tables["db_stripeinvoice"].keys
        assert [k.attributes for k in key] == [["db_invoiceid"]]
    finally:
        sandbox.stop()


def test_a_table_definition_answers_only_what_was_selected_and_expanded(api: WebApi) -> None:
    response = api.get(
        "EntityDefinitions(LogicalName='db_stripeinvoice')?$select=LogicalName,EntitySetName"
        "&$expand=Attributes($select=LogicalName),Keys($select=KeyAttributes),"
        "ManyToOneRelationships($select=ReferencingAttribute,ReferencedEntity,"
        "ReferencingEntityNavigationPropertyName)"
    )

    data = body(response)
    assert set(data) == {
        "@odata.context", "@odata.type", "MetadataId", "LogicalName", "EntitySetName",
        "Attributes", "Keys", "ManyToOneRelationships",
    }  # fmt: skip
    assert data["EntitySetName"] == "db_stripeinvoices"
    assert {"db_invoiceid", "db_amountdue", "db_accountid", "versionnumber"} <= {
        a["LogicalName"] for a in data["Attributes"]
    }
    assert set(data["Attributes"][0]) == {"@odata.type", "MetadataId", "LogicalName"}
    assert [k["KeyAttributes"] for k in data["Keys"]] == [["db_invoiceid"]]
    assert {
        (
            r["ReferencingAttribute"],
            r["ReferencedEntity"],
            r["ReferencingEntityNavigationPropertyName"],
        )
        for r in data["ManyToOneRelationships"]
    } >= {
        ("db_accountid", "account", "db_accountid"),
        # Added by Dataverse with the table's first Currency column: the row's currency.
        ("transactioncurrencyid", "transactioncurrency", "transactioncurrencyid"),
    }


def test_a_choice_columns_options_come_with_its_option_set(api: WebApi) -> None:
    response = api.get(
        "EntityDefinitions(LogicalName='opportunityproduct')/Attributes(LogicalName="
        "'db_pricingschedule')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet"
    )

    options = body(response)["OptionSet"]["Options"]
    labels = [o["Label"]["UserLocalizedLabel"]["Label"] for o in options]
    assert labels == ["One-Time", "Monthly", "Quarterly", "Semi-Annual", "Annual"]
    assert options[0]["Value"] == 418500000


def test_an_unknown_table_is_not_found(api: WebApi) -> None:
    response = api.get("EntityDefinitions(LogicalName='nosuchtable')")

    assert response.status_code == 404
    assert body(response)["error"]["message"] == (
        "Could not find entity with logical name 'nosuchtable'."
    )


@pytest.mark.parametrize("schema_name", ["NoPrefix", "zz_Unknown"])
def test_a_column_needs_an_existing_publishers_prefix(api: WebApi, schema_name: str) -> None:
    column = {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": schema_name,
        "MaxLength": 10,
    }

    response = api.post("EntityDefinitions(LogicalName='account')/Attributes", json=column)

    assert response.status_code == 400
    assert "customization prefix" in body(response)["error"]["message"]


def test_a_dropped_column_is_missing_from_the_definition_and_the_table(
    make_sandbox: Callable[..., DataverseSandbox],
) -> None:
    sandbox = make_sandbox()
    sandbox.drop_column("opportunity", "db_planstatus")
    api = WebApi(sandbox)

    names = {
        a["LogicalName"]
        for a in body(api.get("EntityDefinitions(LogicalName='opportunity')/Attributes"))["value"]
    }

    assert "db_planstatus" not in names and "db_planurl" in names
    assert api.get("opportunities?$select=db_planstatus").status_code == 400


def test_attributes_cast_to_a_derived_type_list_only_those_with_their_max_length(
    api: WebApi,
) -> None:
    response = api.get(
        "EntityDefinitions(LogicalName='account')/Attributes/"
        "Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength"
    )

    assert response.status_code == 200, response.text
    data = body(response)
    cast = "EntityDefinitions('account')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert f"$metadata#{cast}" in data["@odata.context"]
    lengths = {a["LogicalName"]: a["MaxLength"] for a in data["value"]}
    assert lengths["name"] == 160
    assert "creditonhold" not in lengths  # a Boolean column is no StringAttributeMetadata
