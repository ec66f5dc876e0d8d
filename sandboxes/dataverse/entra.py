"""A Microsoft Entra ID tenant, as much of it as msal's client-credentials flow and a web
app's sign-in (``entra_signin.py``: the authorize endpoint, the authorization_code grant,
ID tokens and the signing keys) use.

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (msal reads it when an application
  is built; it advertises ``https://login.microsoftonline.com/...`` endpoints, which a
  rewriting HTTP session sends back to the sandbox, because msal refuses ``http://``);
* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, the client
  secret in the form (``client_secret_post``) or HTTP Basic, and ``scope=<environment>/.default``;
* ``GET /common/discovery/instance`` (msal's instance discovery, when it is left on);
* ``GET /{tenant}/oauth2/v2.0/authorize``, ``grant_type=authorization_code`` and
  ``GET /{tenant}/discovery/v2.0/keys``: see ``entra_signin.py``.

Errors are Entra's: ``AADSTS90002`` unknown tenant, ``AADSTS700016`` unknown application,
``AADSTS7000215`` wrong secret (401), ``AADSTS500011`` a scope for another resource,
``AADSTS70003`` another grant type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .entra_signin import DirectoryUser, UserSignIn

AUTHORITY_HOST = "https://login.microsoftonline.com"
TOKEN_LIFETIME_SECONDS = 3599
DEMO_DOMAIN = "dealbridgesandbox.onmicrosoft.com"
#: The tenant's users and the app roles of the demo app registration assigned to them.
DEMO_USERS = (
    DirectoryUser(
        f"alex.rep@{DEMO_DOMAIN}", "Alex Rep", "6f1d2c3b-4a5e-4f60-8a7b-1c2d3e4f5a60",
        ("Dealbridge.SalesRep",),
    ),
    DirectoryUser(
        f"fran.finance@{DEMO_DOMAIN}", "Fran Finance", "7a2e3d4c-5b6f-4071-9b8c-2d3e4f5a6b71",
        ("Dealbridge.Finance",),
    ),
    DirectoryUser(
        f"ada.admin@{DEMO_DOMAIN}", "Ada Admin", "8b3f4e5d-6c70-4182-8c9d-3e4f5a6b7c82",
        ("Dealbridge.Admin",),
    ),
    DirectoryUser(
        f"sam.viewer@{DEMO_DOMAIN}", "Sam Viewer", "9c405f6e-7d81-4293-9dae-4f5a6b7c8d93", ()
    ),
)  # fmt: skip


@dataclass
class Token:
    client_id: str
    audience: str
    expires_at: float  # unix seconds on the sandbox clock


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Tenant:
    def __init__(
        self,
        tenant_id: str,
        clients: Mapping[str, str],
        now: Callable[[], datetime],
        users: tuple[DirectoryUser, ...] = DEMO_USERS,
    ) -> None:
        self.tenant_id = tenant_id
        self.clients = dict(clients)  # client id → secret
        self.now = now
        self.sign_in = UserSignIn(tenant_id, self.clients, list(users), now)
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        self._signing_key = secrets.token_bytes(32)
        self.tokens_issued = 0

    # ------------------------------------------------------------------ documents

    def openid_configuration(self) -> dict[str, Any]:
        base = f"{AUTHORITY_HOST}/{self.tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    @staticmethod
    def instance_discovery(authorization_endpoint: str | None) -> dict[str, Any]:
        return {
            "tenant_discovery_endpoint": (
                f"{AUTHORITY_HOST}/common/v2.0/.well-known/openid-configuration"
            ),
            "api-version": "1.1",
            "metadata": [
                {
                    "preferred_network": "login.microsoftonline.com",
                    "preferred_cache": "login.windows.net",
                    "aliases": [
                        "login.microsoftonline.com",
                        "login.windows.net",
                        "login.microsoft.com",
                        "sts.windows.net",
                    ],
                }
            ],
        }

    def unknown_tenant(self, tenant: str) -> tuple[int, dict[str, Any]]:
        return self._error(
            400,
            "invalid_request",
            90002,
            f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
            "tenant ID and are signing into the correct cloud.",
        )

    # ------------------------------------------------------------------ tokens

    def _error(
        self, status: int, error: str, code: int, description: str
    ) -> tuple[int, dict[str, Any]]:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        when = self.now().strftime("%Y-%m-%d %H:%M:%SZ")
        return status, {
            "error": error,
            "error_description": (
                f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                f"Timestamp: {when}"
            ),
            "error_codes": [code],
            "timestamp": when,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{AUTHORITY_HOST}/error?code={code}",
        }

    def token(
        self,
        form: Mapping[str, str],
        authorization: str | None,
        audiences: Callable[[str], bool],
    ) -> tuple[int, dict[str, Any]]:
        """The client-credentials grant (``audiences`` says which resources this tenant's
        environment answers to) and the authorization-code grant of a user's sign-in."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except ValueError:
                decoded = ":"
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "authorization_code"):
            return self._error(
                400,
                "unsupported_grant_type",
                70003,
                f"AADSTS70003: The app requested an unsupported grant type '{grant}'. The "
                "Dataverse sandbox issues tokens for the client credentials and authorization "
                "code grants only.",
            )
        if not client_id or client_id not in self.clients:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{self.tenant_id}'. This can happen if the application has not "
                "been installed by the administrator of the tenant.",
            )
        if form.get("client_assertion"):
            return self._error(
                401,
                "invalid_client",
                700027,
                "AADSTS700027: The Dataverse sandbox accepts client secrets only, not "
                "certificates (client_assertion).",
            )
        expected = self.clients[client_id]
        if client_secret is None or not hmac.compare_digest(client_secret, expected):
            return self._error(
                401,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID, for a "
                f"secret added to app '{client_id}'.",
            )
        if grant == "authorization_code":
            status, answer = self.sign_in.redeem(form, client_id)
            if isinstance(answer, tuple):
                return self._error(status, *answer)
            return status, answer  # a user's tokens, not for Dataverse: not counted
        scopes = (form.get("scope") or "").split()
        resources = [
            s.removesuffix("/.default").rstrip("/") for s in scopes if s.endswith("/.default")
        ]
        if len(resources) != 1 or not audiences(resources[0]):
            scope = form.get("scope") or ""
            return self._error(
                400,
                "invalid_scope" if len(resources) != 1 else "invalid_resource",
                1002012 if len(resources) != 1 else 500011,
                "AADSTS1002012: The provided value for scope is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI)."
                if len(resources) != 1
                else f"AADSTS500011: The resource principal named {resources[0]} was not found "
                f"in the tenant named {self.tenant_id}. This can happen if the application has "
                f"not been installed by the administrator of the tenant. (scope: {scope})",
            )
        issued = self.now().timestamp()
        claims = {
            "aud": resources[0],
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(issued),
            "nbf": int(issued),
            "exp": int(issued) + TOKEN_LIFETIME_SECONDS,
            "appid": client_id,
            "tid": self.tenant_id,
            "ver": "1.0",
            "jti": secrets.token_hex(8),
        }
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(
            hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        access_token = f"{header}.{payload}.{signature}"
        with self._lock:
            self._tokens[access_token] = Token(
                client_id, resources[0], issued + TOKEN_LIFETIME_SECONDS
            )
            self.tokens_issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": access_token,
        }

    def validate(self, access_token: str | None) -> Token | None:
        """The token's holder when it was issued here, is not revoked and has not expired."""
        if not access_token:
            return None
        with self._lock:
            token = self._tokens.get(access_token)
        if token is None or token.expires_at <= self.now().timestamp():
            return None
        return token

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()
