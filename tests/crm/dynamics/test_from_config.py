"""Building the adapter from configuration, through the factory, with either credential."""

from __future__ import annotations

import pytest

from connector.config import config_for_tests
from connector.crm.base import CrmAdapter
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.auth import CertificateCredential, ClientSecretCredential
from connector.crm.factory import build_crm_adapter
from connector.secrets import Secret
from tests.crm.dynamics.support import CLIENT_ID, ENV_URL, TENANT, shipped_mapping

SECTION = {
    "crm": {
        "kind": "dynamics",
        "dynamics": {"environment_url": ENV_URL, "tenant_id": TENANT, "client_id": CLIENT_ID},
    }
}


def test_the_factory_builds_the_dynamics_adapter_with_a_client_secret() -> None:
    config = config_for_tests(
        SECTION,
        dynamics_client_secret=Secret("client-secret-value"),
        dynamics_webhook_key=Secret("whk"),
    )
    adapter = build_crm_adapter(config, shipped_mapping())
    assert isinstance(adapter, DynamicsAdapter)
    assert isinstance(adapter, CrmAdapter)
    assert adapter.kind == "dynamics"
    assert adapter.client.base_url == f"{ENV_URL}/api/data/v9.2"
    assert adapter.tokens.scopes == [f"{ENV_URL}/.default"]
    assert adapter.tokens.authority == f"https://login.microsoftonline.com/{TENANT}"
    assert isinstance(adapter.tokens._credential, ClientSecretCredential)


def test_a_certificate_thumbprint_and_key_sign_in_with_the_certificate() -> None:
    section = {
        "crm": {
            **SECTION["crm"],
            "dynamics": {**SECTION["crm"]["dynamics"], "certificate_thumbprint": "A1B2C3D4"},
        }
    }
    config = config_for_tests(
        section,
        dynamics_certificate_key=Secret("-----BEGIN PRIVATE KEY-----\n..."),
        dynamics_client_secret=Secret("client-secret-value"),
    )
    adapter = DynamicsAdapter.from_config(config, shipped_mapping())
    credential = adapter.tokens._credential
    assert isinstance(credential, CertificateCredential)
    assert credential.for_msal()["thumbprint"] == "A1B2C3D4"


def test_without_any_credential_from_config_says_which_secret_to_set() -> None:
    config = config_for_tests(SECTION)
    with pytest.raises(ValueError, match="DYNAMICS_CLIENT_SECRET"):
        DynamicsAdapter.from_config(config, shipped_mapping())
