"""Signing a person in to an app registration of the sandbox's Entra tenant: the OpenID
Connect authorization code flow (with PKCE) of the Microsoft identity platform's v2.0
endpoints, as a web app uses it through msal's ``initiate_auth_code_flow`` and
``acquire_token_by_auth_code_flow``.

* ``GET /{tenant}/oauth2/v2.0/authorize``: the client must be known and ``redirect_uri``
  registered for it, else Entra's error page (no redirect, since the address cannot be
  trusted). Then the person: ``login_hint`` naming a demo user signs that user in (the
  sandbox asks for no password); else the tenant's ``browser_user`` (someone already signed
  in to Microsoft 365 in this browser: single sign-on) unless ``prompt`` is ``login`` or
  ``select_account``; else a tiny sign-in page listing the demo users, with a Cancel link
  that answers ``error=access_denied``. The answer goes to ``redirect_uri`` with ``code``,
  ``state``, ``session_state`` (and ``client_info`` when asked), by ``response_mode``
  ``query`` (the default), ``fragment`` or ``form_post``.
* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=authorization_code``: the code is
  single-use and lives 10 minutes; it is redeemed only by the client it was issued to, with
  the same ``redirect_uri`` and a ``code_verifier`` matching the ``code_challenge`` (S256 or
  plain). The answer carries a v2.0 ``id_token`` (RS256, ``kid`` of ``/discovery/v2.0/keys``)
  when ``openid`` was asked, with the claims of Microsoft's ID token reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUTHORITY_HOST = "https://login.microsoftonline.com"
CODE_SECONDS_VALID = 600
ID_TOKEN_LIFETIME_SECONDS = 3600
USER_TOKEN_LIFETIME_SECONDS = 3599
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PKCE_METHODS = ("S256", "plain")


@dataclass(frozen=True)
class DirectoryUser:
    """A user of the tenant and the app roles assigned to them (role *values*)."""

    username: str  # the UPN, what ``preferred_username`` carries
    name: str
    object_id: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str
    nonce: str | None
    scopes: tuple[str, ...]
    user: DirectoryUser
    session_id: str
    expires_at: float


class _SigningKey:
    """One RSA key per process, made on first use: Entra's keys are shared by all tenants,
    and a key costs a tenth of a second to make, which tests that never sign anyone in
    should not pay."""

    _lock = threading.Lock()
    _key: rsa.RSAPrivateKey | None = None
    kid = "sandbox-" + secrets.token_hex(8)

    @classmethod
    def private(cls) -> rsa.RSAPrivateKey:
        with cls._lock:
            if cls._key is None:
                cls._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return cls._key

    @classmethod
    def jwks(cls) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(cls.private().public_key(), as_dict=True)
        return {"keys": [{**public, "kty": "RSA", "use": "sig", "kid": cls.kid, "x5t": cls.kid}]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_matches(verifier: str | None, challenge: str, method: str) -> bool:
    """RFC 7636 section 4.6: ``S256`` compares BASE64URL(SHA256(verifier)), ``plain`` the
    verifier itself."""
    if not verifier:
        return False
    expected = _b64(hashlib.sha256(verifier.encode()).digest()) if method == "S256" else verifier
    return hmac.compare_digest(expected, challenge)


def error_page(code: int, message: str) -> str:
    """The page Entra shows when it cannot send the person back to the app."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in to your "
        "account</title></head><body><h1>Sign in</h1><p>Sorry, but we're having trouble "
        f"signing you in.</p><p id=error>AADSTS{code}: {html.escape(message)}</p></body></html>"
    )


class UserSignIn:
    """The authorize and token legs of the auth code flow for one tenant."""

    def __init__(
        self,
        tenant_id: str,
        clients: Mapping[str, str],
        users: list[DirectoryUser],
        now: Callable[[], datetime],
    ) -> None:
        self.tenant_id = tenant_id
        self.clients = clients
        self.users = {u.username.lower(): u for u in users}
        self.redirect_uris: dict[str, set[str]] = {}
        #: Who is signed in to Microsoft 365 in "the browser" (single sign-on), if anyone.
        self.browser_user: str | None = None
        self._now = now
        self._codes: dict[str, PendingCode] = {}
        self._redeemed: set[str] = set()
        self._lock = threading.Lock()

    def add_redirect_uri(self, client_id: str, uri: str) -> None:
        """An app registration's Web platform redirect URI (Authentication blade)."""
        self.redirect_uris.setdefault(client_id, set()).add(uri)

    # ------------------------------------------------------------------ authorize

    def authorize(self, query: Mapping[str, str], page_url: str) -> tuple[int, dict[str, Any]]:
        """``(200, {"html": page})``, ``(400, {"html": error page})``, or a redirect:
        ``(302, {"location": ..., "params": {...}, "mode": response_mode})``."""
        client_id = query.get("client_id") or ""
        if client_id not in self.clients:
            return 400, {
                "html": error_page(
                    700016,
                    f"Application with identifier '{client_id}' was not found in the "
                    f"directory '{self.tenant_id}'.",
                )
            }
        redirect_uri = query.get("redirect_uri") or ""
        if redirect_uri not in self.redirect_uris.get(client_id, set()):
            return 400, {
                "html": error_page(
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not "
                    f"match the redirect URIs configured for the application '{client_id}'.",
                )
            }
        mode = query.get("response_mode") or "query"
        back = {"state": query["state"]} if "state" in query else {}

        def answer(params: dict[str, str]) -> tuple[int, dict[str, Any]]:
            return 302, {"location": redirect_uri, "params": {**params, **back}, "mode": mode}

        if query.get("response_type") != "code":
            return answer(
                {
                    "error": "unsupported_response_type",
                    "error_description": "AADSTS700054: response_type '"
                    + (query.get("response_type") or "")
                    + "' is not enabled for the application.",
                }
            )
        method = query.get("code_challenge_method") or "plain"
        if method not in PKCE_METHODS:
            return answer(
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS501491: Invalid code_challenge_method.",
                }
            )
        prompt = query.get("prompt") or ""
        hint = (query.get("login_hint") or "").lower()
        user = self.users.get(hint)
        if user is None and self.browser_user and prompt not in ("login", "select_account"):
            user = self.users.get(self.browser_user.lower())
        if user is None:
            if prompt == "none":
                return answer(
                    {
                        "error": "login_required",
                        "error_description": "AADSTS50058: A silent sign-in request was sent "
                        "but no user is signed in.",
                    }
                )
            return 200, {"html": self._sign_in_page(query, page_url, redirect_uri, back, mode)}
        code = self._issue(query, client_id, redirect_uri, method, user)
        params = {"code": code, "session_state": self._codes[code].session_id}
        if query.get("client_info") == "1":
            params["client_info"] = self.client_info(user)
        return answer(params)

    def client_info(self, user: DirectoryUser) -> str:
        return _b64(json.dumps({"uid": user.object_id, "utid": self.tenant_id}).encode())

    def _issue(
        self,
        query: Mapping[str, str],
        client_id: str,
        redirect_uri: str,
        method: str,
        user: DirectoryUser,
    ) -> str:
        code = "1.A" + secrets.token_urlsafe(96)
        pending = PendingCode(
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_challenge=query.get("code_challenge") or None,
            code_challenge_method=method,
            nonce=query.get("nonce"),
            scopes=tuple((query.get("scope") or "").split()),
            user=user,
            session_id=str(uuid.uuid4()),
            expires_at=self._now().timestamp() + CODE_SECONDS_VALID,
        )
        with self._lock:
            self._codes[code] = pending
        return code

    def _sign_in_page(
        self,
        query: Mapping[str, str],
        page_url: str,
        redirect_uri: str,
        back: dict[str, str],
        mode: str,
    ) -> str:
        keep = {k: v for k, v in query.items() if k not in ("login_hint", "prompt")}
        items = "".join(
            '<li><a href="'
            + html.escape(page_url + "?" + urlencode({**keep, "login_hint": u.username}))
            + f'">{html.escape(u.name)} ({html.escape(u.username)})</a></li>'
            for u in self.users.values()
        )
        refusal = {
            "error": "access_denied",
            "error_subcode": "cancel",
            "error_description": "AADSTS65004: User declined to consent to access the app.",
            **back,
        }
        if mode == "form_post":  # the refusal goes back as the answer would, by POST
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in refusal.items()
            )
            cancel = (
                f'<form id=cancel method="POST" action="{html.escape(redirect_uri)}">{fields}'
                "<button>Cancel</button></form>"
            )
        else:
            address = redirect_uri + ("#" if mode == "fragment" else "?") + urlencode(refusal)
            cancel = f'<p><a id=cancel href="{html.escape(address)}">Cancel</a></p>'
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in to your "
            "account</title></head><body><main><h1>Pick an account</h1>"
            "<p>Dataverse sandbox: choose a demo user to sign in as (no password).</p>"
            f"<ul id=accounts>{items}</ul>"
            f"{cancel}</main></body></html>"
        )

    # ------------------------------------------------------------------ token

    def redeem(
        self, form: Mapping[str, str], client_id: str
    ) -> tuple[int, tuple[str, int, str] | dict[str, Any]]:
        """The authorization_code grant for an authenticated client: ``(200, body)`` or
        ``(status, (error, AADSTS code, description))``."""
        code = form.get("code") or ""
        if not code:
            return 400, (
                "invalid_request",
                900144,
                "AADSTS900144: The request body must contain the following parameter: 'code'.",
            )
        now = self._now().timestamp()
        with self._lock:
            pending = self._codes.pop(code, None)
            reused = pending is None and code in self._redeemed
            self._redeemed.add(code)
        if reused:
            return 400, (
                "invalid_grant",
                54005,
                "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry "
                "with a new valid code or use an existing refresh token.",
            )
        if pending is None or pending.client_id != client_id:
            return 400, (
                "invalid_grant",
                70000,
                "AADSTS70000: The provided value for the 'code' parameter is not valid.",
            )
        if now > pending.expires_at:
            return 400, (
                "invalid_grant",
                70008,
                "AADSTS70008: The provided authorization code or refresh token has expired "
                "due to inactivity. Send a new interactive authorization request for this "
                "user and resource.",
            )
        if form.get("redirect_uri") != pending.redirect_uri:
            return 400, (
                "invalid_client",
                50011,
                "AADSTS70002: Error validating credentials. AADSTS50011: The reply address "
                f"'{form.get('redirect_uri') or ''}' does not match the reply address "
                f"'{pending.redirect_uri}' provided when requesting Authorization code.",
            )
        if pending.code_challenge is not None and not pkce_matches(
            form.get("code_verifier"), pending.code_challenge, pending.code_challenge_method
        ):
            return 400, (
                "invalid_grant",
                501481,
                "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in "
                "the authorization request.",
            )
        return 200, self._tokens(pending, int(now), form.get("client_info") == "1")

    def _tokens(self, pending: PendingCode, now: int, with_client_info: bool) -> dict[str, Any]:
        oidc = [s for s in pending.scopes if s in ("openid", "profile", "email", "offline_access")]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join([*(s for s in oidc if s != "offline_access"), "User.Read"]),
            "expires_in": USER_TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": USER_TOKEN_LIFETIME_SECONDS,
            # For Microsoft Graph (the sandbox serves no Graph): Dataverse refuses it.
            "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6I." + secrets.token_urlsafe(48),
        }
        if "offline_access" in pending.scopes:
            body["refresh_token"] = "1.A" + secrets.token_urlsafe(64)
        if "openid" in pending.scopes:
            body["id_token"] = self.id_token(pending, now)
        if with_client_info:
            body["client_info"] = self.client_info(pending.user)
        return body

    def id_token(self, pending: PendingCode, now: int) -> str:
        user = pending.user
        claims: dict[str, Any] = {
            "aud": pending.client_id,
            "iss": f"{AUTHORITY_HOST}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME_SECONDS,
            "aio": _b64(secrets.token_bytes(24)),
            "rh": "0.A" + _b64(secrets.token_bytes(24)),
            "sub": _b64(hashlib.sha256(f"{pending.client_id}|{user.object_id}".encode()).digest()),
            "tid": self.tenant_id,
            "uti": _b64(secrets.token_bytes(16)),
            "ver": "2.0",
            "sid": pending.session_id,
        }
        if pending.nonce is not None:
            claims["nonce"] = pending.nonce
        if "profile" in pending.scopes:
            claims.update(name=user.name, oid=user.object_id, preferred_username=user.username)
        if "email" in pending.scopes:
            claims["email"] = user.username
        if user.roles:
            claims["roles"] = list(user.roles)
        return jwt.encode(
            claims,
            _SigningKey.private(),
            algorithm="RS256",
            headers={"typ": "JWT", "kid": _SigningKey.kid},
        )

    @staticmethod
    def jwks() -> dict[str, Any]:
        return _SigningKey.jwks()
