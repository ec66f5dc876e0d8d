"""The Entra tenant signs people in: the authorize endpoint, the authorization_code grant
with PKCE, single-use codes, and v2.0 ID tokens as Microsoft documents them, driven by msal
as a web app drives it."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
import msal
import pytest
import requests

from connector.crm.https_rewrite import HttpsRewriteSession
from sandboxes.dataverse import DEMO_USERS, DataverseSandbox
from tests.support import FrozenClock
from tests.support.html_forms import forms_of

CALLBACK = "https://dealbridge.example/auth/entra/callback"
REP = DEMO_USERS[0]


@pytest.fixture
def signing_in(sandbox: DataverseSandbox) -> DataverseSandbox:
    sandbox.allow_redirect_uri(CALLBACK)
    sandbox.sign_in_browser_as(REP.username)
    return sandbox


def _msal(sandbox: DataverseSandbox) -> Any:
    return msal.ConfidentialClientApplication(
        sandbox.client_id,
        client_credential=sandbox.client_secret,
        authority=sandbox.authority,
        http_client=HttpsRewriteSession(sandbox.url),
        instance_discovery=False,
    )


def _authorize(sandbox: DataverseSandbox, address: str) -> requests.Response:
    return requests.get(
        HttpsRewriteSession(sandbox.url).rewrite(address), allow_redirects=False, timeout=10
    )


def _answer(page: requests.Response) -> dict[str, str]:
    """The fields the form_post page posts back to the app."""
    assert page.status_code == 200, page.text
    [form] = forms_of(page.text)
    assert (form.method, form.action) == ("POST", CALLBACK)
    return form.fields


def _flow(app: Any) -> dict[str, Any]:
    return dict(app.initiate_auth_code_flow([], redirect_uri=CALLBACK, response_mode="form_post"))


def _token(sandbox: DataverseSandbox, **form: str) -> requests.Response:
    return requests.post(
        f"{sandbox.url}/{sandbox.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "redirect_uri": CALLBACK,
            **form,
        },
        timeout=10,
    )


def _code(sandbox: DataverseSandbox, challenge: str) -> str:
    page = _authorize(
        sandbox,
        f"{sandbox.url}/{sandbox.tenant_id}/oauth2/v2.0/authorize?client_id={sandbox.client_id}"
        f"&response_type=code&redirect_uri={CALLBACK}&scope=openid+profile&state=s1"
        f"&code_challenge={challenge}&code_challenge_method=S256&response_mode=form_post",
    )
    return _answer(page)["code"]


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def test_msal_signs_a_user_in_and_gets_a_v2_id_token_as_microsoft_documents_it(
    signing_in: DataverseSandbox, clock: FrozenClock
) -> None:
    app = _msal(signing_in)
    flow = _flow(app)
    result = app.acquire_token_by_auth_code_flow(
        flow, _answer(_authorize(signing_in, flow["auth_uri"]))
    )

    assert "error" not in result, result
    claims = result["id_token_claims"]
    now = int(clock().timestamp())
    assert claims["aud"] == signing_in.client_id
    assert claims["iss"] == f"https://login.microsoftonline.com/{signing_in.tenant_id}/v2.0"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now, now + 3600)
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # as sent
    assert (claims["tid"], claims["oid"], claims["ver"]) == (
        signing_in.tenant_id,
        REP.object_id,
        "2.0",
    )
    assert (claims["preferred_username"], claims["name"]) == (REP.username, REP.name)
    assert claims["roles"] == list(REP.roles)
    header = jwt.get_unverified_header(result["id_token"])
    keys = requests.get(f"{signing_in.url}/common/discovery/v2.0/keys", timeout=10).json()
    [key] = [k for k in keys["keys"] if k["kid"] == header["kid"]]
    at_the_sandbox_clock = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    verified = jwt.decode(
        result["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"],
        audience=signing_in.client_id, options=at_the_sandbox_clock,
    )  # fmt: skip
    assert verified == claims


def test_a_redirect_uri_not_registered_gets_entras_error_page_not_a_redirect(
    signing_in: DataverseSandbox,
) -> None:
    app = _msal(signing_in)
    flow = app.initiate_auth_code_flow(
        [], redirect_uri="https://evil.example/callback", response_mode="form_post"
    )
    page = _authorize(signing_in, flow["auth_uri"])

    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "AADSTS50011" in page.text


def test_a_code_is_redeemed_once(signing_in: DataverseSandbox) -> None:
    code = _code(signing_in, _s256("v" * 43))
    assert _token(signing_in, code=code, code_verifier="v" * 43).status_code == 200

    again = _token(signing_in, code=code, code_verifier="v" * 43)

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert again.json()["error_codes"] == [54005]


def test_a_code_verifier_that_does_not_match_the_challenge_is_refused(
    signing_in: DataverseSandbox,
) -> None:
    code = _code(signing_in, _s256("v" * 43))

    refused = _token(signing_in, code=code, code_verifier="w" * 43)

    assert refused.json()["error_codes"] == [501481]
    assert "id_token" not in refused.json()


def test_the_redirect_uri_must_be_the_one_the_code_was_issued_for(
    signing_in: DataverseSandbox,
) -> None:
    signing_in.allow_redirect_uri("https://dealbridge.example/other")
    code = _code(signing_in, _s256("v" * 43))

    refused = _token(
        signing_in,
        code=code,
        code_verifier="v" * 43,
        redirect_uri="https://dealbridge.example/other",
    )

    assert refused.status_code == 400
    assert "AADSTS50011" in refused.json()["error_description"]


def test_a_code_expires_after_ten_minutes(signing_in: DataverseSandbox, clock: FrozenClock) -> None:
    code = _code(signing_in, _s256("v" * 43))
    clock.advance(seconds=601)

    assert _token(signing_in, code=code, code_verifier="v" * 43).json()["error_codes"] == [70008]


def test_without_single_sign_on_the_page_lists_the_demo_users_and_can_be_cancelled(
    signing_in: DataverseSandbox,
) -> None:
    signing_in.sign_in_browser_as(None)
    app = _msal(signing_in)
    flow = _flow(app)
    page = _authorize(signing_in, flow["auth_uri"])

    assert page.status_code == 200
    assert all(user.username in page.text for user in DEMO_USERS)
    cancel = next(f for f in forms_of(page.text) if f.id == "cancel")
    assert cancel.fields["error"] == "access_denied"
    assert cancel.fields["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, cancel.fields)
    assert result["error"] == "access_denied"


def test_a_user_token_does_not_open_the_web_api(signing_in: DataverseSandbox) -> None:
    code = _code(signing_in, _s256("v" * 43))
    tokens = _token(signing_in, code=code, code_verifier="v" * 43).json()

    response = requests.get(
        f"{signing_in.api_url}/accounts",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )

    assert response.status_code == 401
