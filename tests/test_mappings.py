"""Mappings are validated at start-up; every problem names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connector.mappings import MappingError, load_mapping

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_salesforce_mapping_is_valid() -> None:
    mapping = load_mapping(REPO / "mappings" / "salesforce.yaml", "salesforce")
    assert mapping.deal_fields["contract_start"] == "Contract_Start_Date__c"
    assert mapping.invoice["external_id"] == "Stripe_Invoice_Id__c"


def test_unknown_and_missing_keys_are_all_reported(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "mappings" / "salesforce.yaml").read_text())
    del data["deal"]["fields"]["contract_start"]
    data["account"]["fields"]["favourite_colour"] = "Colour__c"
    data["line_item"]["pricing_schedule_values"]["Weekly"] = "weekly"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MappingError) as caught:
        load_mapping(path, "salesforce")
    text = str(caught.value)
    assert f"{path}: deal.fields.contract_start: required" in text
    assert f"{path}: account.fields.favourite_colour: unknown key" in text
    assert "line_item.pricing_schedule_values.Weekly" in text
    assert len(caught.value.problems) == 3


def test_a_mapping_for_the_other_crm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping(REPO / "mappings" / "salesforce.yaml", "dynamics")
    assert "crm.kind is 'dynamics'" in str(caught.value)
