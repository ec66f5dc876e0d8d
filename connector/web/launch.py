"""Sign-in from Salesforce Canvas: the signed request, verified with the consumer secret.

Salesforce POSTs ``signed_request`` to the canvas URL: ``<signature>.<envelope>``, where
``envelope`` is the base64url-encoded JSON context and ``signature`` the base64url-encoded
HMAC-SHA256 of ``envelope`` keyed with the connected app's consumer secret
(``SALESFORCE_CLIENT_SECRET``). The user comes from ``context.user``; the role from
``web.canvas_roles``, a mapping of profile and permission set names (or ids) to roles, matched
against the user's ``profileId`` and any names a Canvas lifecycle handler passes in
``context.environment.parameters`` (``profileName``, ``permissionSets``); the highest match
wins, else ``web.canvas_default_role``.

Sign-in from Dynamics 365: ``POST /launch/entra`` with an Entra ID access token, verified
against the tenant's signing keys by ``connector.web.entra`` (see its docstring).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, make_response, redirect, request, url_for
from werkzeug.wrappers.response import Response as WerkzeugResponse

from connector.store.once import use_once
from connector.web.auth import ROLE_RANK, SESSION_COOKIE, Identity, issue_session_token
from connector.web.context import current_runtime
from connector.web.entra import (
    EntraTokenRefused,
    EntraUnavailable,
    entra_role,
    entra_user,
    keys_for,
    verify_access_token,
)
from connector.web.errors import ApiError

log = logging.getLogger(__name__)

#: How far ahead of our clock a sign-in may be dated (clocks differ a little).
CLOCK_SKEW_SECONDS = 300

blueprint = Blueprint("launch", __name__)


class BadSignedRequest(Exception):
    pass


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_canvas_request(secret: str, envelope: dict[str, Any]) -> str:
    """What Salesforce sends (used by tests and by admins checking a setup)."""
    encoded = base64.urlsafe_b64encode(json.dumps(envelope).encode()).decode()
    signature = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{base64.urlsafe_b64encode(signature).decode()}.{encoded}"


def verify_canvas_request(secret: str, signed_request: str) -> dict[str, Any]:
    """The envelope, if the signature is the consumer secret's; else ``BadSignedRequest``."""
    signature_part, dot, encoded = signed_request.strip().partition(".")
    if not dot or not signature_part or not encoded:
        raise BadSignedRequest("not a signed request")
    try:
        signature = _b64decode(signature_part)
        envelope = json.loads(_b64decode(encoded))
    except (binascii.Error, ValueError) as exc:
        raise BadSignedRequest("undecodable signed request") from exc
    expected = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise BadSignedRequest("signature mismatch")
    if not isinstance(envelope, dict) or str(envelope.get("algorithm", "")).upper() not in (
        "HMACSHA256",
        "",
    ):
        raise BadSignedRequest("unexpected algorithm")
    return envelope


def canvas_role(envelope: dict[str, Any], roles: dict[str, str], default: str) -> str:
    context = envelope.get("context") or {}
    user = context.get("user") or {}
    parameters = (context.get("environment") or {}).get("parameters") or {}
    names: list[str] = [str(user.get("profileId") or ""), str(parameters.get("profileName") or "")]
    permission_sets = parameters.get("permissionSets") or []
    if isinstance(permission_sets, str):
        permission_sets = [p.strip() for p in permission_sets.split(",")]
    names.extend(str(p) for p in permission_sets)
    matched = [roles[n] for n in names if n and n in roles and roles[n] in ROLE_RANK]
    return max(matched, key=lambda r: ROLE_RANK[r]) if matched else default


@blueprint.post("/launch/canvas")
def canvas() -> WerkzeugResponse:
    runtime = current_runtime()
    secrets = runtime.config.secrets
    if secrets.salesforce_client_secret is None or secrets.secret_key is None:
        raise ApiError(
            503,
            "not_configured",
            "Canvas sign-in needs SALESFORCE_CLIENT_SECRET and DEALBRIDGE_SECRET_KEY.",
        )
    try:
        envelope = verify_canvas_request(
            secrets.salesforce_client_secret.reveal(), request.form.get("signed_request", "")
        )
    except BadSignedRequest as exc:
        raise ApiError(
            401, "bad_signed_request", "This Canvas request could not be verified; open the app "
            "from Salesforce again (or check the connected app's consumer secret).",
        ) from exc  # fmt: skip
    context = envelope.get("context") or {}
    user = context.get("user") or {}
    who = str(user.get("email") or user.get("userName") or "")
    if not who:
        raise ApiError(401, "bad_signed_request", "The Canvas request names no user.")
    web = runtime.config.section("web")
    now = runtime.clock()
    try:
        issued = canvas_issued_at(envelope, now=now, max_age_seconds=web["canvas_max_age_seconds"])
    except BadSignedRequest as exc:
        raise ApiError(
            401, "stale_signed_request", f"This Canvas request {exc}; open the app from "
            "Salesforce again.",
        ) from exc  # fmt: skip
    expires = issued + timedelta(seconds=int(web["canvas_max_age_seconds"]))
    if not use_once(runtime.db, "canvas", request.form.get("signed_request", ""), now=now,
                    expires=expires):  # fmt: skip
        raise ApiError(
            401, "replayed_signed_request", "This Canvas request was already used to sign "
            "in; open the app from Salesforce again.",
        )  # fmt: skip
    role = canvas_role(envelope, dict(web["canvas_roles"]), web["canvas_default_role"])
    record = (context.get("environment") or {}).get("record") or {}
    record_type = (record.get("attributes") or {}).get("type")
    is_deal = record.get("Id") and record_type in ("Opportunity", "opportunity")
    deal = str(record["Id"]) if is_deal else None
    token = issue_session_token(
        secrets.secret_key.reveal(), Identity(user=who, role=role, via="launch", deal=deal)
    )
    return _signed_in(token, role, deal)


def canvas_issued_at(envelope: dict[str, Any], *, now: datetime, max_age_seconds: int) -> datetime:
    """When the signed request's OAuth token was issued (``issuedAt``, seconds or
    milliseconds since the epoch), if within ``max_age_seconds`` of ``now``; else
    ``BadSignedRequest``. A request without it cannot be judged fresh and is refused."""
    issued = envelope.get("issuedAt")
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        raise BadSignedRequest("carries no issuedAt time")
    seconds = issued / 1000 if issued > 100_000_000_000 else issued  # milliseconds
    if not -1e11 < seconds < 1e11:
        raise BadSignedRequest("carries an impossible issuedAt time")
    at = datetime.fromtimestamp(seconds, UTC)
    if at < now - timedelta(seconds=max_age_seconds):
        raise BadSignedRequest(f"was issued more than {max_age_seconds} seconds ago")
    if at > now + timedelta(seconds=CLOCK_SKEW_SECONDS):
        raise BadSignedRequest("is dated in the future")
    return at


def _signed_in(token: str, role: str, deal_id: str | None) -> WerkzeugResponse:
    """Where a launch lands, with its session cookie: the deal's plan, else (for finance)
    the overview; anyone else must open dealbridge from a deal."""
    if deal_id:
        target = url_for("plans.deal_page", deal_id=deal_id, t=token)
    elif ROLE_RANK[role] >= ROLE_RANK["finance"]:
        target = url_for("overview.overview_page", t=token)
    else:
        raise ApiError(
            400, "no_record", "Open dealbridge from an opportunity to review its billing plan."
        )
    response = make_response(redirect(target, code=303))
    secure = request.is_secure
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, secure=secure, samesite="None" if secure else "Lax",
        max_age=current_runtime().config.section("web")["launch_link_ttl_seconds"],
    )  # fmt: skip
    return response


def _presented_token() -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return str(request.form.get("access_token", "")).strip()


@blueprint.post("/launch/entra")
def entra() -> WerkzeugResponse:
    runtime = current_runtime()
    secret_key = runtime.config.secrets.secret_key
    web = runtime.config.section("web")
    settings = web["entra"]
    if secret_key is None or not settings["tenant_id"]:
        raise ApiError(
            503,
            "not_configured",
            "Entra ID sign-in needs web.entra.tenant_id, web.entra.audience and "
            "DEALBRIDGE_SECRET_KEY.",
        )
    token = _presented_token()
    try:
        if not token:
            raise EntraTokenRefused("missing", "no access token was sent")
        claims = verify_access_token(token, settings, keys_for(current_app, settings))
        role = entra_role(claims, settings["roles"], settings["default_role"])
        who = entra_user(claims)
    except EntraUnavailable as exc:
        log.warning("Entra ID sign-in failed: %s", exc)
        raise ApiError(
            502, "entra_unavailable", "Microsoft Entra ID's signing keys could not be read; "
            "try again in a minute.",
        ) from exc  # fmt: skip
    except EntraTokenRefused as exc:
        log.info("Entra ID sign-in refused (%s): %s", exc.reason, exc)
        status = 403 if exc.reason == "no_role" else 401
        raise ApiError(
            status, "bad_entra_token", f"Your Microsoft sign-in could not be accepted: {exc}. "
            "Open dealbridge from Dynamics 365 again.", reason=exc.reason,
        ) from exc  # fmt: skip
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    if not use_once(runtime.db, "entra", token, now=runtime.clock(), expires=expires):
        raise ApiError(
            401, "bad_entra_token", "Your Microsoft sign-in was already used; open dealbridge "
            "from Dynamics 365 again.", reason="replayed",
        )  # fmt: skip
    deal = (request.form.get("deal") or request.args.get("deal") or "").strip() or None
    session = issue_session_token(
        secret_key.reveal(), Identity(user=who, role=role, via="launch", deal=deal)
    )
    return _signed_in(session, role, deal)
