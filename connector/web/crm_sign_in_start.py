"""The first half of signing in through the CRM: a person opens a deal's page (the plan URL
written to the CRM) without a session, and is sent to the CRM's identity service instead of
getting a 401. The callbacks (``crm_signin.py``) finish it.

* Salesforce: the connected app's OAuth web-server flow (``crm/salesforce/oauth.py``). The
  signed ``state`` names the deal; it is used once.
* Dynamics 365: Microsoft Entra ID's auth code flow through msal
  (``crm/dynamics/signin.py``). msal's flow (state, nonce, PKCE verifier) must be kept for
  this browser until Entra posts the answer back, as msal's web-app samples keep it in the
  session: here in a signed cookie named after the state (so two tabs signing in at once do
  not overwrite each other's), only sent to the callback, ``SameSite=None; Secure`` on https
  because the answer is a cross-site ``form_post``, and ``Lax`` on plain http (the local
  demo, where the sandbox is the same site). The cookie also binds the answer to the browser
  that started the sign-in, so a code obtained by someone else cannot sign this browser in.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from flask import redirect, request
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers.response import Response as WerkzeugResponse

from connector.crm.dynamics.signin import EntraSignIn, SignInUnavailable
from connector.crm.salesforce import oauth
from connector.store.models import Plan
from connector.web.context import current_runtime
from connector.web.errors import ApiError, wants_json

#: How long a person may take to sign in at the CRM and come back.
SIGN_IN_STATE_SECONDS = 600
SIGN_IN_CALLBACK = "/auth/salesforce/callback"
ENTRA_CALLBACK = "/auth/entra/callback"


def deal_of_request(kwargs: dict[str, Any]) -> str | None:
    """The deal a view works on, from its ``deal_id`` or its ``plan_id``; "" for views
    about no single deal (the overview, customers, the catalog)."""
    if "deal_id" in kwargs:
        return str(kwargs["deal_id"])
    if "plan_id" in kwargs:
        runtime = current_runtime()
        with runtime.db.session() as session:
            row = session.get(Plan, str(kwargs["plan_id"]))
            return row.deal_id if row is not None else None
    return ""


def sign_in_state_serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="dealbridge.crm-sign-in")


def entra_flow_serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="dealbridge.entra-sign-in")


def entra_flow_cookie(state: str) -> str:
    """The cookie holding the flow whose ``state`` this is."""
    return (
        "dealbridge_entra_"
        + hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    )


def crm_sign_in(kwargs: dict[str, Any]) -> WerkzeugResponse | None:
    """The redirect to the CRM's sign-in for a person who opened a deal's page without a
    session. None when that is not possible (an API call, a page about no single deal, the
    CRM's sign-in not configured): the caller answers 401 as before."""
    if request.method != "GET" or wants_json():
        return None
    runtime = current_runtime()
    secrets = runtime.config.secrets
    if secrets.secret_key is None:
        return None
    if runtime.config.crm_kind == "dynamics":
        entra = EntraSignIn.from_config(runtime.config)
        if entra is None:
            return None
        deal = deal_of_request(kwargs)
        return _to_entra(entra, deal, secrets.secret_key.reveal()) if deal else None
    if not secrets.salesforce_client_id or secrets.salesforce_client_secret is None:
        return None
    deal = deal_of_request(kwargs)
    if not deal:
        return None
    state = sign_in_state_serializer(secrets.secret_key.reveal()).dumps(
        {"deal": deal, "nonce": uuid.uuid4().hex}
    )
    target = oauth.authorize_url(
        oauth.sign_in_base(runtime.config.section("crm")["salesforce"]),
        secrets.salesforce_client_id,
        runtime.config.base_url + SIGN_IN_CALLBACK,
        state,
    )
    return redirect(target, code=302)


def _to_entra(entra: EntraSignIn, deal: str, secret: str) -> WerkzeugResponse:
    try:
        address, flow = entra.start(current_runtime().config.base_url + ENTRA_CALLBACK)
    except SignInUnavailable as exc:
        raise ApiError(
            502, "entra_unavailable", "Microsoft Entra ID could not be reached to sign you in; "
            "try again in a minute.",
        ) from exc  # fmt: skip
    response = redirect(address, code=302)
    secure = request.is_secure
    response.set_cookie(
        entra_flow_cookie(str(flow["state"])),
        entra_flow_serializer(secret).dumps({"deal": deal, "flow": flow}),
        max_age=SIGN_IN_STATE_SECONDS, path=ENTRA_CALLBACK, httponly=True, secure=secure,
        samesite="None" if secure else "Lax",
    )  # fmt: skip
    return response
