"""Describe: global and per-object, built from standard fields plus the shipped SFDX metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import connector

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
METADATA = Path(connector.__file__).resolve().parents[1] / "mappings" / "salesforce"
OBJECTS = METADATA / "force-app" / "main" / "default" / "objects"

SF_TYPES = {
    "Text": "string", "Url": "url", "Checkbox": "boolean", "Currency": "currency",
    "Number": "double", "Date": "date", "Picklist": "picklist",
    "MultiselectPicklist": "multipicklist", "LongTextArea": "textarea", "Lookup": "reference",
    "Percent": "percent",
}  # fmt: skip


def shipped_fields() -> list[tuple[str, str, str]]:
    """(object, field, metadata type) for every *.field-meta.xml in mappings/salesforce."""
    found = []
    for path in sorted(OBJECTS.glob("*/fields/*.field-meta.xml")):
        root = ET.parse(  # noqa: S314 - our own metadata files
            path
        ).getroot()
        found.append((path.parent.parent.name, root.findtext("md:fullName", namespaces=NS) or "",
                      root.findtext("md:type", namespaces=NS) or ""))  # fmt: skip
    return found


def test_every_field_in_the_sfdx_metadata_appears_in_describe_with_its_type(
    sf: Any,
) -> None:
    fields = shipped_fields()
    assert len(fields) == 47  # shipped today: collection, trial, discount percent and amount
    described = {}
    for sobject in {o for o, _f, _t in fields}:
        described[sobject] = {f["name"]: f for f in getattr(sf, sobject).describe()["fields"]}
    for sobject, name, sf_type in fields:
        assert name in described[sobject], f"{sobject}.{name}"
        assert described[sobject][name]["type"] == SF_TYPES[sf_type], f"{sobject}.{name}"
        assert described[sobject][name]["custom"] is True


def test_the_global_describe_lists_standard_and_custom_objects(sf: Any) -> None:
    objects = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert {"Account", "Contact", "Opportunity", "OpportunityLineItem", "Product2", "Pricebook2",
            "PricebookEntry", "OpportunityContactRole", "User"} <= set(objects)  # fmt: skip
    invoice = objects["Stripe_Invoice__c"]
    assert (invoice["label"], invoice["custom"], invoice["keyPrefix"]) == (
        "Stripe Invoice", True, "a0X",
    )  # fmt: skip


def test_field_describe_carries_the_metadata_attributes(sf: Any) -> None:
    fields = {f["name"]: f for f in sf.Stripe_Invoice__c.describe()["fields"]}
    key = fields["Stripe_Invoice_Id__c"]
    assert (key["externalId"], key["unique"], key["nillable"], key["length"]) == (
        True, True, False, 255,
    )  # fmt: skip
    assert fields["Name"]["label"] == "Invoice Number"
    amount = fields["Amount_Due__c"]
    assert (amount["type"], amount["precision"], amount["scale"]) == ("currency", 16, 2)
    status = fields["Status__c"]
    assert [v["value"] for v in status["picklistValues"]] == [
        "draft", "open", "paid", "void", "uncollectible", "deleted",
    ]  # fmt: skip


def test_lookups_describe_their_target_and_parent_relationship(sf: Any) -> None:
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    lookup = fields["Billing_Contact__c"]
    assert lookup["referenceTo"] == ["Contact"]
    assert lookup["relationshipName"] == "Billing_Contact__r"
    assert fields["AccountId"]["relationshipName"] == "Account"


def test_parents_list_their_child_relationships(sf: Any) -> None:
    children = {r["relationshipName"]: r for r in sf.Opportunity.describe()["childRelationships"]}
    assert children["OpportunityLineItems"]["childSObject"] == "OpportunityLineItem"
    assert children["OpportunityContactRoles"]["field"] == "OpportunityId"
    assert children["Stripe_Invoices__r"]["childSObject"] == "Stripe_Invoice__c"


def test_opportunity_has_the_multi_currency_iso_code_field(sf: Any) -> None:
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    codes = [v["value"] for v in fields["CurrencyIsoCode"]["picklistValues"]]
    assert {"USD", "EUR"} <= set(codes)


def test_checkbox_fields_default_to_false_and_are_not_nillable(sf: Any) -> None:
    hold = {f["name"]: f for f in sf.Account.describe()["fields"]}["Credit_Hold__c"]
    assert (hold["type"], hold["defaultValue"], hold["nillable"]) == ("boolean", False, False)


def test_a_shipped_permission_set_grants_every_optional_custom_field() -> None:
    root = ET.parse(  # noqa: S314 - our own metadata files
        METADATA / "force-app/main/default/permissionsets/"
        "Dealbridge_Integration.permissionset-meta.xml"
    ).getroot()
    granted = {
        p.findtext("md:field", namespaces=NS)
        for p in root.findall("md:fieldPermissions", namespaces=NS)
    }
    optional = {f"{o}.{f}" for o, f, _t in shipped_fields() if f != "Stripe_Invoice_Id__c"}
    assert granted == optional
