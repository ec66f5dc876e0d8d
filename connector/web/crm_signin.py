"""``GET /auth/salesforce/callback``: the end of signing in through Salesforce.

``auth.crm_sign_in_url`` sends a person who opened a plan's URL without a session to
Salesforce's authorize endpoint, with a signed, single-use ``state`` naming the deal. Here
the code is exchanged (``crm/salesforce/oauth.py``), the person named by Salesforce gets a
session scoped to that deal, with ``web.canvas_default_role`` (the identity service says
who, not which profile), and lands on the deal's plan.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, request
from itsdangerous import BadSignature, SignatureExpired
from werkzeug.wrappers.response import Response as WerkzeugResponse

from connector.crm.salesforce.oauth import SignInFailed, signed_in_user
from connector.store.once import use_once
from connector.web.auth import (
    SIGN_IN_CALLBACK,
    SIGN_IN_STATE_SECONDS,
    Identity,
    issue_session_token,
    sign_in_state_serializer,
)
from connector.web.context import current_runtime
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
            runtime.config.section("crm")["salesforce"]["login_url"],
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
