"""Who is calling, and may they? API tokens, signed launch links, and roles.

The review page lives in an iframe inside the CRM, where third-party cookies are often
blocked, so identity travels as a short-lived signed token (``t``) in the page's links and
forms, issued when the CRM launches the page with a signed link. A cookie carries the same
token where the browser allows it. Machine clients use ``Authorization: Bearer <token>``
with a role. Roles are enforced here, on the server, for every endpoint.

Launch link (built by the CRM, e.g. an Apex ``Crypto.generateMac`` or a Dynamics plugin):
``/launch?deal=<id>&user=<email>&role=<role>&exp=<unix>&sig=<hex>`` where ``sig`` is
HMAC-SHA256 over ``deal|user|role|exp`` with ``DEALBRIDGE_SECRET_KEY`` (with an optional
``&nonce=<text>``, over ``deal|user|role|exp|nonce``). ``exp`` may lie at most
``web.launch_link_ttl_seconds`` ahead, and a link opens one session: only the browser it
signed in may open it again. The session reaches the link's deal only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from connector.web.context import current_runtime
from connector.web.crm_sign_in_start import crm_sign_in, deal_of_request
from connector.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

ROLE_RANK = {"sales_rep": 1, "finance": 2, "admin": 3}
SESSION_COOKIE = "dealbridge_session"


@dataclass(frozen=True)
class Identity:
    user: str
    role: str
    via: str  # token | launch | session
    #: The deal a CRM launch opened the session for: it reaches that deal's plan only.
    #: None for API tokens and for launches without a record (finance's overview).
    deal: str | None = None

    def has(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]


def launch_signature(
    secret: str, deal: str, user: str, role: str, exp: int, nonce: str = ""
) -> str:
    """HMAC-SHA256 over ``deal|user|role|exp`` (or ``deal|user|role|exp|nonce`` when the
    link carries a ``nonce``, so two links made in one second differ)."""
    message = f"{deal}|{user}|{role}|{exp}" + (f"|{nonce}" if nonce else "")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="dealbridge.session")


def issue_session_token(secret: str, identity: Identity) -> str:
    data = {"user": identity.user, "role": identity.role}
    if identity.deal is not None:
        data["deal"] = identity.deal
    return _serializer(secret).dumps(data)


def read_session_token(secret: str, token: str, max_age: int) -> Identity | None:
    try:
        data = _serializer(secret).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or data.get("role") not in ROLE_RANK:
        return None
    deal = data.get("deal")
    return Identity(
        user=str(data.get("user")),
        role=str(data["role"]),
        via="session",
        deal=deal if isinstance(deal, str) and deal else None,
    )


class LinkRefused(Exception):
    """A launch credential that must not sign anyone in; the message says why."""


def check_launch_window(exp: int, *, now: float, ttl_seconds: int, skew_seconds: int = 60) -> None:
    """A launch link is good until ``exp``, which may be at most ``ttl_seconds`` away: a link
    signed to expire in the year 2200 is refused, not honoured for two centuries."""
    if exp < now:
        raise LinkRefused("expired")
    if exp > now + ttl_seconds + skew_seconds:
        raise LinkRefused(
            f"expires further ahead than web.launch_link_ttl_seconds ({ttl_seconds} s) allows"
        )


def _check_scope(identity: Identity, kwargs: dict[str, Any]) -> None:
    """A session opened from a deal reaches that deal's plan and nothing else."""
    if identity.deal is None:
        return
    deal = deal_of_request(kwargs)
    if deal is None:
        return  # no such plan: the view answers 404 itself
    if deal != identity.deal:
        raise ApiError(
            403,
            "other_deal",
            "This sign-in is for another deal's plan; open this one from its record in the CRM.",
        )


def csrf_token(secret: str, identity: Identity) -> str:
    """A form token bound to the user, so a forged cross-site post is refused."""
    message = f"csrf|{identity.user}|{identity.role}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


#: Methods that change nothing, so a cross-site request cannot act through them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


def secret_key() -> str:
    """``DEALBRIDGE_SECRET_KEY``, which signs sessions and form tokens; 503 without it."""
    key = current_runtime().config.secrets.secret_key
    if key is None:
        raise ApiError(503, "not_configured", "DEALBRIDGE_SECRET_KEY is not set")
    return str(key.reveal())


def check_form_csrf() -> None:
    """A page's form post carries the signed-in user's CSRF token, or it is refused."""
    identity = current_identity()
    assert identity is not None
    if not same_secret(request.form.get("csrf", ""), csrf_token(secret_key(), identity)):
        raise ApiError(400, "csrf", "The form has expired; reload the page and try again.")


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison that refuses (rather than raises on) non-ASCII input."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def _check_api_csrf(identity: Identity) -> None:
    """A browser sends the session cookie with any cross-site request, and the embedded
    page's cookie must be ``SameSite=None``: so a change through ``/api/`` made with a
    session (not an API token) must also carry the user's CSRF token in a header, which a
    cross-site form cannot set."""
    if identity.via == "token" or request.method in SAFE_METHODS:
        return
    if not request.path.startswith("/api/"):
        return  # the pages check the token in their forms
    secret = current_runtime().config.secrets.secret_key
    presented = request.headers.get(CSRF_HEADER, "")
    if secret is None or not same_secret(presented, csrf_token(secret.reveal(), identity)):
        raise ApiError(
            403,
            "csrf",
            f"Changes through the API need an API token, or the {CSRF_HEADER} header when "
            "signed in through the CRM.",
        )


def current_identity() -> Identity | None:
    """Resolve the caller from a bearer token, a session token or the session cookie."""
    if "identity" in g:
        return cast(Identity | None, g.identity)
    runtime = current_runtime()
    secrets = runtime.config.secrets
    identity: Identity | None = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        presented = header[len("Bearer ") :].strip()
        for token, role in secrets.api_tokens.items():
            if same_secret(presented, token):
                identity = Identity(user=f"api-token:{role}", role=role, via="token")
                break
    elif secrets.secret_key is not None:
        session_token = (
            request.args.get("t")
            or (
                request.form.get("t")
                if request.mimetype.startswith(("application/x-www", "multipart"))
                else None
            )
            or request.cookies.get(SESSION_COOKIE)
        )
        if session_token:
            identity = read_session_token(
                secrets.secret_key.reveal(),
                session_token,
                runtime.config.section("web")["launch_link_ttl_seconds"],
            )
    g.identity = identity
    return identity


def require(role: str) -> Callable[[F], F]:
    """Refuse callers without at least ``role``; the refusal names the role needed.

    Pages and the API share it: ``errors.wants_json`` decides how the refusal is shown.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            identity = current_identity()
            if identity is None:
                through_crm = crm_sign_in(kwargs)
                if through_crm is not None:
                    return through_crm
                raise ApiError(
                    401,
                    "unauthenticated",
                    "Sign in through your CRM (the launch link) or send an API token.",
                )
            if not identity.has(role):
                raise ApiError(
                    403,
                    "forbidden",
                    f"This needs the {role.replace('_', ' ')} role; you are signed in as "
                    f"{identity.role.replace('_', ' ')}.",
                    required_role=role,
                )
            _check_scope(identity, kwargs)
            _check_api_csrf(identity)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
