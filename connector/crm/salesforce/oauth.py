"""Signing a person in through Salesforce: the OAuth 2.0 web-server flow of the connected app.

dealbridge already holds the connected app's consumer key and secret
(``SALESFORCE_CLIENT_ID`` / ``SALESFORCE_CLIENT_SECRET``, the same app Canvas uses). A person
who opens a plan's URL from Salesforce without a dealbridge session is sent to the org's
authorize endpoint (``sign_in_base``: its My Domain, else ``login_url``); Salesforce (where
they are signed in) sends them back with a code, which is exchanged at
``/services/oauth2/token`` for a token whose identity URL (``id``) says who they are. Only
the identity is kept; the token is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests

TIMEOUT_SECONDS = 10


class SignInFailed(Exception):
    """Salesforce did not confirm who the person is; the message says why."""


def sign_in_base(section: Mapping[str, Any]) -> str:
    """Where people sign in: the org's My Domain (``crm.salesforce.instance_url``) when it is
    configured, as Salesforce recommends for the web-server flow, else ``login_url``. A
    person's browser goes there, so it must be the org they are signed in to (and, with the
    local sandbox, the sandbox itself rather than login.salesforce.com)."""
    instance_url = section.get("instance_url")
    return str(instance_url or section["login_url"])


def authorize_url(login_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": "id",
        }
    )
    return f"{login_url.rstrip('/')}/services/oauth2/authorize?{query}"


def signed_in_user(
    login_url: str, client_id: str, client_secret: str, redirect_uri: str, code: str
) -> dict[str, Any]:
    """Exchange the code and read the identity URL: ``username``, ``email``, ``user_id``."""
    try:
        token = requests.post(
            f"{login_url.rstrip('/')}/services/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
            },
            timeout=TIMEOUT_SECONDS,
        )
        body = token.json() if token.content else {}
        if token.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise SignInFailed(
                f"Salesforce refused the sign-in code ({error or token.status_code})"
            )
        id_url, access_token = body.get("id"), body.get("access_token")
        if not isinstance(id_url, str) or not isinstance(access_token, str):
            raise SignInFailed("Salesforce's token answer names no identity")
        who = requests.get(
            id_url, headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT_SECONDS
        )
        identity = who.json() if who.status_code == 200 else None
    except (requests.RequestException, ValueError) as exc:
        raise SignInFailed(
            f"Salesforce could not be reached to confirm the sign-in: {exc}"
        ) from exc
    if not isinstance(identity, dict) or not (identity.get("email") or identity.get("username")):
        raise SignInFailed("Salesforce did not say who signed in")
    return identity
