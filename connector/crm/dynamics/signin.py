"""Signing a person in through Microsoft Entra ID: a web app's auth code flow, through msal.

A rep who opens a plan's URL from Dynamics 365 without a dealbridge session is sent to
Entra's ``/oauth2/v2.0/authorize`` and comes back with a code, as msal's authors intend for
a web app: ``initiate_auth_code_flow`` makes the flow (``state``, a ``nonce`` whose hash
travels, a PKCE ``code_verifier`` whose S256 challenge travels; ``response_mode=form_post``,
which msal recommends), the caller keeps the flow for this browser until the answer comes
back, and ``acquire_token_by_auth_code_flow`` checks the ``state``, redeems the code with the
verifier and checks the ID token's ``nonce``.

The app registration is ``web.entra.client_id`` with ``DEALBRIDGE_ENTRA_CLIENT_SECRET`` (the
``dealbridge-web`` registration that holds the app roles, docs/dynamics-setup.md section 9),
else the one dealbridge uses for Dataverse (``crm.dynamics.client_id`` with its secret or
certificate); either needs a Web redirect URI ``{base_url}/auth/entra/callback`` and app
roles assigned to the reps. One msal application per process (``auth.application_for``).

msal no longer validates the ID token (since 1.38; its issue #911: that is the app's job), so
``check_id_token`` does what Microsoft's ID token reference asks: ``aud`` is our client id,
``tid`` our tenant, ``iss`` ``{authority_host}/{tid}/v2.0``, ``exp``/``nbf`` hold and ``iat``
is no older than the sign-in. The signature is not checked: the token came straight from the
token endpoint over TLS, which OpenID Connect Core 3.1.3.7 (6) accepts in its place. Only the
claims are kept; the user's tokens are dropped from msal's cache at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from connector.config import Config
from connector.crm.base import CrmAuthError, CrmUnavailable
from connector.crm.dynamics.auth import (
    ClientSecretCredential,
    Credential,
    application_for,
    credential_from_config,
)
from connector.crm.https_rewrite import HttpsRewriteSession

#: msal adds ``openid profile offline_access`` itself; sign-in needs no API's scope.
SIGN_IN_SCOPES: list[str] = []
#: What the ID token must carry to name a person.
REQUIRED_CLAIMS = ("aud", "iss", "tid", "iat", "nbf", "exp", "oid")


class SignInFailed(Exception):
    """Entra ID did not confirm who the person is; the message says why, for a person."""


class SignInRefused(SignInFailed):
    """Entra ID (or the person, on its page) refused the sign-in."""


class SignInUnavailable(SignInFailed):
    """Entra ID could not be reached; trying again later may work."""


@dataclass(frozen=True)
class EntraSignIn:
    tenant_id: str
    client_id: str
    credential: Credential
    authority_host: str = "https://login.microsoftonline.com"
    instance_discovery: bool = True
    http_client: requests.Session | None = None

    @classmethod
    def from_config(cls, config: Config) -> EntraSignIn | None:
        """The sign-in of ``crm.dynamics``'s app registration; None when it is not configured
        (another CRM, or no tenant, client id or credential)."""
        if config.crm_kind != "dynamics":
            return None
        section = config.section("crm")["dynamics"]
        web = config.section("web")["entra"]
        credential: Credential | None
        if web.get("client_id"):  # a web app registration of its own (docs/dynamics-setup.md)
            secret = config.secrets.entra_client_secret
            credential = ClientSecretCredential(secret) if secret is not None else None
            client_id, tenant_id = (
                web["client_id"],
                web.get("tenant_id") or section.get("tenant_id"),
            )
            authority_host = web.get("authority_host") or section.get("authority_host")
        else:
            credential = credential_from_config(config)
            client_id, tenant_id = section.get("client_id"), section.get("tenant_id")
            authority_host = section.get("authority_host")
        if not tenant_id or not client_id or credential is None:
            return None
        environment_url = str(section.get("environment_url") or "")
        local = environment_url.startswith("http://")
        return cls(
            tenant_id=str(tenant_id),
            client_id=str(client_id),
            credential=credential,
            authority_host=str(authority_host or "https://login.microsoftonline.com").rstrip("/"),
            # A local sandbox (as DynamicsAdapter.from_config): Entra's https:// URLs go to it.
            instance_discovery=not local,
            http_client=HttpsRewriteSession(environment_url) if local else None,
        )

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    def _app(self) -> Any:
        return application_for(
            authority=self.authority,
            client_id=self.client_id,
            credential=self.credential,
            instance_discovery=self.instance_discovery,
            http_client=self.http_client,
        )

    def start(self, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """Where to send the browser, and the flow to keep until it comes back (everything
        msal's ``initiate_auth_code_flow`` returned but the address)."""
        try:
            flow = dict(
                self._app().initiate_auth_code_flow(
                    SIGN_IN_SCOPES, redirect_uri=redirect_uri, response_mode="form_post"
                )
            )
        except (CrmUnavailable, CrmAuthError) as exc:
            raise SignInUnavailable(str(exc)) from exc
        address = str(flow.pop("auth_uri"))
        if isinstance(self.http_client, HttpsRewriteSession):
            address = self.http_client.rewrite(address)  # the browser goes to the sandbox too
        return address, flow

    def finish(
        self,
        flow: Mapping[str, Any],
        answer: Mapping[str, str],
        *,
        now: datetime,
        leeway_seconds: int,
        max_age_seconds: int,
    ) -> dict[str, Any]:
        """The ID token's claims for Entra's ``answer`` (the callback's parameters) to the
        ``flow`` this browser started; ``SignInFailed`` (or a subclass) otherwise."""
        app = self._app()
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(answer))
        except ValueError as exc:  # msal: the state does not match (a forged or mixed answer)
            raise SignInFailed("the answer from Microsoft does not match this sign-in") from exc
        except RuntimeError as exc:  # msal: the ID token's nonce is not this flow's
            raise SignInFailed("Microsoft's ID token was not issued for this sign-in") from exc
        except requests.RequestException as exc:
            raise SignInUnavailable(
                f"Microsoft Entra ID could not be reached ({type(exc).__name__})"
            ) from exc
        if not isinstance(result, dict) or result.get("error"):
            raise _refusal(result if isinstance(result, dict) else {})
        claims = result.get("id_token_claims")
        if not isinstance(claims, dict):
            raise SignInFailed("Microsoft Entra ID's answer carries no ID token")
        check_id_token(
            claims,
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            authority_host=self.authority_host,
            now=now,
            leeway_seconds=leeway_seconds,
            max_age_seconds=max_age_seconds,
        )
        _forget_user(app, claims)
        return claims


def _refusal(result: Mapping[str, Any]) -> SignInFailed:
    error = str(result.get("error") or "no_token")
    lines = str(result.get("error_description") or "").splitlines()
    detail = f"{error}: {lines[0]}" if lines else error
    if error in ("temporarily_unavailable", "server_error", "service_unavailable"):
        return SignInUnavailable(f"Microsoft Entra ID is unavailable ({detail})")
    return SignInRefused(f"Microsoft did not sign you in ({detail})")


def check_id_token(
    claims: Mapping[str, Any],
    *,
    tenant_id: str,
    client_id: str,
    authority_host: str,
    now: datetime,
    leeway_seconds: int,
    max_age_seconds: int,
) -> None:
    """Microsoft's ID token reference: reject a token for another app, another tenant or
    issuer, an expired or not yet valid one, or one issued before this sign-in began."""
    missing = [name for name in REQUIRED_CLAIMS if claims.get(name) in (None, "")]
    if missing:
        raise SignInFailed(f"Microsoft's ID token has no {', '.join(missing)} claim")
    if claims["aud"] != client_id:
        raise SignInFailed("Microsoft's ID token is for another application")
    tenant = str(claims["tid"])
    if tenant.lower() != tenant_id.lower():
        raise SignInFailed("Microsoft signed you in to another tenant (organization)")
    if str(claims["iss"]).lower() != f"{authority_host.rstrip('/')}/{tenant}/v2.0".lower():
        raise SignInFailed("Microsoft's ID token comes from another issuer")
    try:
        iat, nbf, exp = (float(claims[name]) for name in ("iat", "nbf", "exp"))
    except (TypeError, ValueError) as exc:
        raise SignInFailed("Microsoft's ID token has unreadable times") from exc
    at = now.timestamp()
    if exp <= at - leeway_seconds:
        raise SignInFailed("Microsoft's ID token has expired")
    if nbf > at + leeway_seconds or iat > at + leeway_seconds:
        raise SignInFailed("Microsoft's ID token is dated in the future")
    if iat < at - max_age_seconds - leeway_seconds:
        raise SignInFailed("Microsoft's ID token was issued before this sign-in began")


def _forget_user(app: Any, claims: Mapping[str, Any]) -> None:
    """Drop the user's tokens (access, refresh, ID) msal cached: only who they are is kept."""
    home = f"{claims['oid']}.{claims['tid']}".lower()
    for account in app.get_accounts():
        if str(account.get("home_account_id", "")).lower() == home:
            app.remove_account(account)
