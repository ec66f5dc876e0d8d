"""The end of signing in through the CRM (``crm_sign_in_start.py`` is the beginning).

``GET /auth/salesforce/callback``: the end of signing in through Salesforce.

``auth.crm_sign_in_url`` sends a person who opened a plan's URL without a session to
Salesforce's authorize endpoint, with a signed, single-use ``state`` naming the deal. Here
the code is exchanged (``crm/salesforce/oauth.py``), the person named by Salesforce gets a
session scoped to that deal, with ``web.canvas_default_role`` (the identity service says
who, not which profile), and lands on the deal's plan.

``/auth/entra/callback``: the end of signing in through Microsoft Entra ID (Dynamics 365).
Entra posts the answer (``form_post``; errors come the same way, and a GET is read alike).
The flow is read back from the cookie named after the answer's ``state`` (none: this browser
did not start that sign-in, or took over ``SIGN_IN_STATE_SECONDS``); the state is used once;
msal redeems the code and the ID token is checked (``crm/dynamics/signin.py``). The person
is the ID token's ``preferred_username`` (else ``upn``, else ``oid``) and the role comes from
its ``roles`` claim through ``web.entra.roles`` / ``web.entra.default_role``, as for
``/launch/entra``: no mapped role and no default is a 403. The session reaches that deal only.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, request
from itsdangerous import BadSignature, SignatureExpired
from werkzeug.wrappers.response import Response as WerkzeugResponse

from connector.crm.dynamics.signin import (
    EntraSignIn,
    SignInRefused,
    SignInUnavailable,
)
from connector.crm.dynamics.signin import SignInFailed as EntraSignInFailed
from connector.crm.salesforce import oauth
from connector.crm.salesforce.oauth import SignInFailed, signed_in_user
from connector.store.once import use_once
from connector.web.auth import Identity, issue_session_token
from connector.web.context import current_runtime
from connector.web.crm_sign_in_start import (
    ENTRA_CALLBACK,
    SIGN_IN_CALLBACK,
    SIGN_IN_STATE_SECONDS,
    entra_flow_cookie,
    entra_flow_serializer,
    sign_in_state_serializer,
)
from connector.web.entra import EntraTokenRefused, entra_role, entra_user
from connector.web.errors import ApiError
from connector.web.launch import _signed_in

log = logging.getLogger(__name__)

blueprint = Blueprint("crm_signin", __name__)

AGAIN = "Open the plan from Salesforce again."


@blueprint.get(SIGN_IN_CALLBACK)
def salesforce_callback() -> WerkzeugResponse:
    runtime = current_runtime()
    secrets = runtime.config.secrets
    if (
        secrets.secret_key is None
        or not secrets.salesforce_client_id
        or secrets.salesforce_client_secret is None
    ):
        raise ApiError(
            503, "not_configured", "Signing in through Salesforce needs SALESFORCE_CLIENT_ID, "
            "SALESFORCE_CLIENT_SECRET and DEALBRIDGE_SECRET_KEY.",
        )  # fmt: skip
    if request.args.get("error"):
        raise ApiError(
            401, "crm_sign_in_refused",
            f"Salesforce did not sign you in ({request.args.get('error')}). {AGAIN}",
        )  # fmt: skip
    state_text, code = request.args.get("state", ""), request.args.get("code", "")
    try:
        state = sign_in_state_serializer(secrets.secret_key.reveal()).loads(
            state_text, max_age=SIGN_IN_STATE_SECONDS
        )
    except (BadSignature, SignatureExpired) as exc:
        raise ApiError(
            401, "bad_sign_in_state", f"This sign-in link is not valid. {AGAIN}"
        ) from exc
    deal = state.get("deal") if isinstance(state, dict) else None
    if not isinstance(deal, str) or not deal or not code:
        raise ApiError(401, "bad_sign_in_state", f"This sign-in link is not valid. {AGAIN}")
    now = runtime.clock()
    if not use_once(runtime.db, "crm-sign-in", state_text, now=now,
                    expires=now + timedelta(seconds=SIGN_IN_STATE_SECONDS)):  # fmt: skip
        raise ApiError(401, "bad_sign_in_state", f"This sign-in was already used. {AGAIN}")
    try:
        who = signed_in_user(
            oauth.sign_in_base(runtime.config.section("crm")["salesforce"]),
            secrets.salesforce_client_id,
            secrets.salesforce_client_secret.reveal(),
            runtime.config.base_url + SIGN_IN_CALLBACK,
            code,
        )
    except SignInFailed as exc:
        log.warning("Salesforce sign-in failed: %s", exc)
        raise ApiError(401, "crm_sign_in_failed", f"{exc}. {AGAIN}") from exc
    user = str(who.get("email") or who.get("username"))
    role = str(runtime.config.section("web")["canvas_default_role"])
    token = issue_session_token(
        secrets.secret_key.reveal(), Identity(user=user, role=role, via="launch", deal=deal)
    )
    log.info("%s signed in through Salesforce for deal %s", user, deal)
    return _signed_in(token, role, deal)


AGAIN_FROM_DYNAMICS = "Open the plan from Dynamics 365 again."


@blueprint.route(ENTRA_CALLBACK, methods=["GET", "POST"])
def entra_callback() -> WerkzeugResponse:
    runtime = current_runtime()
    secret_key = runtime.config.secrets.secret_key
    entra = EntraSignIn.from_config(runtime.config)
    if secret_key is None or entra is None:
        raise ApiError(
            503, "not_configured", "Signing in through Microsoft Entra ID needs crm.kind "
            "dynamics, crm.dynamics.tenant_id and client_id, DYNAMICS_CLIENT_SECRET (or the "
            "certificate) and DEALBRIDGE_SECRET_KEY.",
        )  # fmt: skip
    answer = {k: v for k, v in request.values.items() if isinstance(v, str)}
    state_text = answer.get("state", "")
    cookie = request.cookies.get(entra_flow_cookie(state_text)) if state_text else None
    try:
        started = entra_flow_serializer(secret_key.reveal()).loads(
            cookie or "", max_age=SIGN_IN_STATE_SECONDS
        )
    except (BadSignature, SignatureExpired) as exc:
        raise ApiError(
            401, "bad_sign_in_state", "This sign-in did not start in this browser, or took "
            f"longer than {SIGN_IN_STATE_SECONDS // 60} minutes. {AGAIN_FROM_DYNAMICS}",
        ) from exc  # fmt: skip
    deal = started.get("deal") if isinstance(started, dict) else None
    flow = started.get("flow") if isinstance(started, dict) else None
    if not isinstance(deal, str) or not deal or not isinstance(flow, dict):
        raise ApiError(
            401, "bad_sign_in_state", f"This sign-in link is not valid. {AGAIN_FROM_DYNAMICS}"
        )  # fmt: skip
    now = runtime.clock()
    if not use_once(runtime.db, "entra-sign-in", state_text, now=now,
                    expires=now + timedelta(seconds=SIGN_IN_STATE_SECONDS)):  # fmt: skip
        raise ApiError(
            401, "bad_sign_in_state", f"This sign-in was already used. {AGAIN_FROM_DYNAMICS}"
        )  # fmt: skip
    settings = runtime.config.section("web")["entra"]
    try:
        claims = entra.finish(
            flow, answer, now=now, leeway_seconds=int(settings["leeway_seconds"]),
            max_age_seconds=SIGN_IN_STATE_SECONDS,
        )  # fmt: skip
        role = entra_role(claims, settings["roles"], settings["default_role"])
        user = entra_user(claims)
    except SignInUnavailable as exc:
        log.warning("Entra ID sign-in failed: %s", exc)
        raise ApiError(502, "entra_unavailable", f"{exc}. Try again in a minute.") from exc
    except SignInRefused as exc:
        log.info("Entra ID sign-in refused: %s", exc)
        raise ApiError(401, "crm_sign_in_refused", f"{exc}. {AGAIN_FROM_DYNAMICS}") from exc
    except EntraSignInFailed as exc:
        log.warning("Entra ID sign-in failed: %s", exc)
        raise ApiError(401, "crm_sign_in_failed", f"{exc}. {AGAIN_FROM_DYNAMICS}") from exc
    except EntraTokenRefused as exc:
        log.info("Entra ID sign-in refused (%s): %s", exc.reason, exc)
        raise ApiError(
            403 if exc.reason == "no_role" else 401, "crm_sign_in_refused",
            f"You are signed in to Microsoft, but {exc}.", reason=exc.reason,
        ) from exc  # fmt: skip
    token = issue_session_token(
        secret_key.reveal(), Identity(user=user, role=role, via="launch", deal=deal)
    )
    log.info("%s signed in through Microsoft Entra ID for deal %s", user, deal)
    response = _signed_in(token, role, deal)
    response.delete_cookie(entra_flow_cookie(state_text), path=ENTRA_CALLBACK)
    return response
