"""The OAuth 2.0 web-server flow: authorize, exchange the code once, ask who the user is."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from sandboxes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_USERNAME,
    SalesforceSandbox,
)

CALLBACK = "https://dealbridge.example/auth/salesforce/callback"


def _authorize(sandbox: SalesforceSandbox, **params: str) -> requests.Response:
    query = {"response_type": "code", "client_id": DEMO_CLIENT_ID, "redirect_uri": CALLBACK,
             "state": "s-123", **params}  # fmt: skip
    return requests.get(
        f"{sandbox.url}/services/oauth2/authorize", params=query, allow_redirects=False, timeout=10
    )


def _exchange(sandbox: SalesforceSandbox, code: str, redirect_uri: str = CALLBACK) -> Any:
    return requests.post(
        f"{sandbox.url}/services/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": DEMO_CLIENT_ID,
              "client_secret": DEMO_CLIENT_SECRET, "redirect_uri": redirect_uri},
        timeout=10,
    )  # fmt: skip


def _code(response: requests.Response) -> str:
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == ["s-123"]
    return query["code"][0]


def test_authorize_redirects_back_with_a_code_and_the_state(sandbox: SalesforceSandbox) -> None:
    response = _authorize(sandbox)
    assert response.status_code == 302
    assert _code(response)


def test_the_code_buys_a_token_whose_identity_url_names_the_user(
    sandbox: SalesforceSandbox,
) -> None:
    token = _exchange(sandbox, _code(_authorize(sandbox)))
    assert token.status_code == 200
    body = token.json()
    who = requests.get(
        body["id"], headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10
    )
    assert who.status_code == 200
    assert who.json()["username"] == DEMO_USERNAME


def test_a_code_is_exchanged_once(sandbox: SalesforceSandbox) -> None:
    code = _code(_authorize(sandbox))
    assert _exchange(sandbox, code).status_code == 200
    again = _exchange(sandbox, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_a_code_is_refused_with_another_redirect_uri(sandbox: SalesforceSandbox) -> None:
    code = _code(_authorize(sandbox))
    assert _exchange(sandbox, code, "https://evil.example/cb").json()["error"] == "invalid_grant"


def test_an_unknown_client_gets_an_error_not_a_redirect(sandbox: SalesforceSandbox) -> None:
    response = _authorize(sandbox, client_id="someone-else")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_id"


def test_the_identity_url_refuses_a_bad_token(sandbox: SalesforceSandbox) -> None:
    token = _exchange(sandbox, _code(_authorize(sandbox))).json()
    who = requests.get(token["id"], headers={"Authorization": "Bearer nope"}, timeout=10)
    assert who.status_code == 403
