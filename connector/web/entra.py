"""Sign-in from Dynamics 365 through Microsoft Entra ID: verifying an access token.

The page embedded in Dynamics (a web resource or a model-driven app's custom page) obtains
an access token for dealbridge's API registration with MSAL.js and POSTs it to
``/launch/entra`` (the view is in ``connector.web.launch``) as the form field
``access_token`` or as ``Authorization: Bearer``, with the deal id as ``deal``. The token
is accepted only when all of these hold:

* its RS256 signature verifies with a key of the tenant's JWKS
  (``{authority_host}/{tenant}/discovery/v2.0/keys``, cached for
  ``web.entra.jwks_cache_seconds`` and fetched again when a token names an unknown ``kid``,
  at most once a minute, so unknown kids cannot make us hammer Microsoft);
* ``iss`` is ``{authority_host}/{tenant}/v2.0`` (v2 access tokens: the API registration's
  manifest has ``requestedAccessTokenVersion: 2``) and ``tid`` is the configured tenant;
* ``aud`` is one of ``web.entra.audience`` (the Application ID URI and/or client id);
* ``exp`` and ``nbf`` hold, with ``web.entra.leeway_seconds`` of clock skew;
* it is a delegated (user) token: ``scp`` includes ``web.entra.scope``. This refuses ID
  tokens and app-only tokens, which are signed by the same keys.

The role comes from the ``roles`` claim (the app roles assigned to the user) through
``web.entra.roles``; the highest mapped role wins. With no mapped role the sign-in is refused
(403), unless ``web.entra.default_role`` is set. The user is ``preferred_username``, else
``upn``, else ``oid``. Then the same session token as the other launches is issued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import requests
from flask import Flask

from connector.web.auth import ROLE_RANK

log = logging.getLogger(__name__)

#: Least time between two JWKS fetches caused by tokens naming a kid we do not know.
UNKNOWN_KID_REFRESH_SECONDS = 60.0
JWKS_TIMEOUT_SECONDS = 10
_EXTENSION = "dealbridge.entra_keys"


class EntraTokenRefused(Exception):
    """The token is not acceptable; ``reason`` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EntraUnavailable(Exception):
    """The tenant's signing keys could not be fetched."""


def jwks_url(authority_host: str, tenant_id: str) -> str:
    return f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys"


def issuer(authority_host: str, tenant_id: str) -> str:
    return f"{authority_host.rstrip('/')}/{tenant_id}/v2.0"


class JwksCache:
    """The tenant's signing keys by kid: fetched once per TTL, or when a kid is unknown."""

    def __init__(
        self,
        url: str,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._fetch = fetch or _fetch_jwks
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._unknown_kid_refresh_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.ttl_seconds:
                self._refresh(now)
            elif kid not in self._keys and (
                self._unknown_kid_refresh_at is None
                or now - self._unknown_kid_refresh_at >= UNKNOWN_KID_REFRESH_SECONDS
            ):
                self._unknown_kid_refresh_at = now
                self._refresh(now)
            found = self._keys.get(kid)
        if found is None:
            raise EntraTokenRefused("unknown_key", "the token is signed with an unknown key")
        return found

    def _refresh(self, now: float) -> None:
        data = self._fetch(self.url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys") or []:
            if not isinstance(entry, dict) or not entry.get("kid"):
                continue
            if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry, algorithm="RS256")
            except jwt.PyJWKError:
                log.warning("skipping an unusable key %s in %s", entry.get("kid"), self.url)
        if not keys:
            raise EntraUnavailable(f"{self.url} lists no RSA signing keys")
        self._keys = keys
        self._fetched_at = now


def _fetch_jwks(url: str) -> Mapping[str, Any]:
    try:
        response = requests.get(url, timeout=JWKS_TIMEOUT_SECONDS)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise EntraUnavailable(f"could not read the signing keys at {url}: {exc}") from exc
    if not isinstance(data, dict):
        raise EntraUnavailable(f"{url} did not return a JSON Web Key Set")
    return data


def verify_access_token(token: str, settings: Mapping[str, Any], keys: JwksCache) -> dict[str, Any]:
    """The token's claims, if it is an acceptable access token; else ``EntraTokenRefused``."""
    tenant = str(settings["tenant_id"])
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise EntraTokenRefused("malformed", "this is not a JSON Web Token") from exc
    if header.get("alg") != "RS256":
        raise EntraTokenRefused("bad_algorithm", "the token is not signed with RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise EntraTokenRefused("unknown_key", "the token names no signing key")
    key = keys.key(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=list(settings["audience"]),
            issuer=issuer(settings["authority_host"], tenant),
            leeway=int(settings["leeway_seconds"]),
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid"]},
        )
    except jwt.InvalidSignatureError as exc:
        raise EntraTokenRefused("bad_signature", "the token's signature does not verify") from exc
    except jwt.ExpiredSignatureError as exc:
        raise EntraTokenRefused("expired", "the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise EntraTokenRefused("not_yet_valid", "the token is not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise EntraTokenRefused("wrong_audience", "the token is for another API") from exc
    except jwt.InvalidIssuerError as exc:
        raise EntraTokenRefused("wrong_issuer", "the token is from another issuer") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise EntraTokenRefused("missing_claim", f"the token has no {exc.claim} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise EntraTokenRefused("invalid", "the token is not valid") from exc
    if str(claims.get("tid", "")).lower() != tenant.lower():
        raise EntraTokenRefused("wrong_tenant", "the token is from another tenant")
    scopes = str(claims.get("scp") or "").split()
    if settings["scope"] not in scopes:
        raise EntraTokenRefused(
            "not_delegated",
            f"the token does not carry the {settings['scope']} scope of a signed-in user",
        )
    return claims


def entra_role(claims: Mapping[str, Any], roles: Mapping[str, str], default: str | None) -> str:
    """The highest dealbridge role the token's app roles map to, else the default."""
    granted = claims.get("roles") or []
    if isinstance(granted, str):
        granted = [granted]
    matched = [roles[r] for r in granted if isinstance(r, str) and roles.get(r) in ROLE_RANK]
    if matched:
        return max(matched, key=lambda r: ROLE_RANK[r])
    if default is None:
        raise EntraTokenRefused(
            "no_role",
            "your account has none of dealbridge's app roles ("
            + ", ".join(sorted(roles) or ["none are configured"])
            + "); ask your administrator to assign one",
        )
    return default


def entra_user(claims: Mapping[str, Any]) -> str:
    for name in ("preferred_username", "upn", "oid"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    raise EntraTokenRefused("missing_claim", "the token names no user")


def keys_for(app: Flask, settings: Mapping[str, Any]) -> JwksCache:
    """The app's key cache (one per app and tenant, so each test app starts empty)."""
    url = jwks_url(settings["authority_host"], settings["tenant_id"])
    cache = app.extensions.get(_EXTENSION)
    if not isinstance(cache, JwksCache) or cache.url != url:
        cache = JwksCache(url, float(settings["jwks_cache_seconds"]))
        app.extensions[_EXTENSION] = cache
    return cache
