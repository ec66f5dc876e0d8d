"""The Entra ID tenant: msal's client-credentials flow offline, and the Web API's 401."""

from __future__ import annotations

import msal
import requests

from connector.crm.https_rewrite import HttpsRewriteSession
from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi, body
from tests.support import FrozenClock


def _msal(sandbox: DataverseSandbox, secret: str) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        sandbox.client_id,
        client_credential=secret,
        authority=sandbox.authority,
        http_client=HttpsRewriteSession(sandbox.url),
        instance_discovery=False,
    )


def test_an_msal_token_opens_the_web_api_at_the_environment_url(api: WebApi) -> None:
    response = api.get("accounts?$select=name,creditonhold&$filter=name eq 'Initech LLC'")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    data = body(response)
    assert data["@odata.context"].endswith("/$metadata#accounts(name,creditonhold)")
    [initech] = data["value"]
    assert initech["name"] == "Initech LLC" and initech["creditonhold"] is True
    assert initech["@odata.etag"].startswith('W/"')


def test_a_wrong_client_secret_is_refused_as_entra_refuses_it(sandbox: DataverseSandbox) -> None:
    result = _msal(sandbox, "not-the-secret").acquire_token_for_client(
        [f"{sandbox.environment_url}/.default"]
    )

    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert sandbox.tokens_issued == 0


def test_a_scope_for_another_resource_is_refused(sandbox: DataverseSandbox) -> None:
    result = _msal(sandbox, sandbox.client_secret).acquire_token_for_client(
        ["https://other.crm.dynamics.com/.default"]
    )

    assert result["error"] == "invalid_resource"
    assert "AADSTS500011" in result["error_description"]


def test_an_unknown_tenant_has_no_openid_configuration(sandbox: DataverseSandbox) -> None:
    response = requests.get(
        f"{sandbox.url}/00000000-1111-2222-3333-444444444444/v2.0/.well-known/openid-configuration",
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_a_request_without_a_token_is_401_naming_the_authority(sandbox: DataverseSandbox) -> None:
    response = requests.get(f"{sandbox.api_url}/accounts", timeout=10)

    assert response.status_code == 401
    assert response.content == b""
    challenge = response.headers["WWW-Authenticate"]
    assert f"authorization_uri={sandbox.authority}/oauth2/authorize" in challenge
    assert sandbox.environment_url in challenge


def test_a_token_expires_an_hour_after_it_was_issued(
    sandbox: DataverseSandbox, clock: FrozenClock
) -> None:
    token = _msal(sandbox, sandbox.client_secret).acquire_token_for_client(
        [f"{sandbox.environment_url}/.default"]
    )["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    assert requests.get(f"{sandbox.api_url}/WhoAmI", headers=headers, timeout=10).ok
    clock.advance(seconds=3600)
    assert requests.get(f"{sandbox.api_url}/WhoAmI", headers=headers, timeout=10).status_code == 401


def test_who_am_i_names_the_application_user(api: WebApi, sandbox: DataverseSandbox) -> None:
    data = body(api.get("WhoAmI"))

    assert data["UserId"] == sandbox.application_user_id
    assert data["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
