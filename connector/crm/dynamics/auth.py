"""Access tokens for Dataverse from Microsoft Entra ID, through msal.

dealbridge signs in as an app registration (client credentials flow), with either a client
secret (``DYNAMICS_CLIENT_SECRET``) or a certificate (``crm.dynamics.certificate_thumbprint``
plus the PEM private key in ``DYNAMICS_CERTIFICATE_KEY``), for the scope
``{environment_url}/.default``.

msal keeps the token in the application object's in-memory cache and renews it shortly
before it expires, so there must be **one** ``ConfidentialClientApplication`` per process
and app registration: ``application_for`` keeps them in a module-level cache keyed by
authority and client id. When Dataverse refuses a token that msal still considers valid
(revoked, or the application user was just created), ``TokenSource.renew`` drops the cached
tokens with ``remove_tokens_for_client`` (msal's own way; ``acquire_token_for_client`` has
no force-refresh) and asks again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msal
import requests

from connector.config import Config
from connector.crm.base import CrmAuthError, CrmUnavailable
from connector.secrets import Secret

__all__ = [
    "CertificateCredential",
    "ClientSecretCredential",
    "Credential",
    "TokenSource",
    "application_for",
    "credential_from_config",
    "reset_applications",
]


@dataclass(frozen=True)
class ClientSecretCredential:
    secret: Secret

    def for_msal(self) -> Any:
        return self.secret.reveal()


@dataclass(frozen=True)
class CertificateCredential:
    thumbprint: str
    private_key: Secret  # PEM

    def for_msal(self) -> Any:
        return {"private_key": self.private_key.reveal(), "thumbprint": self.thumbprint}


Credential = ClientSecretCredential | CertificateCredential


def credential_from_config(config: Config) -> Credential | None:
    """The app registration's credential: the certificate when ``crm.dynamics.
    certificate_thumbprint`` and ``DYNAMICS_CERTIFICATE_KEY`` are set, else the client
    secret ``DYNAMICS_CLIENT_SECRET``; None when neither is."""
    section = config.section("crm")["dynamics"]
    secrets = config.secrets
    if section.get("certificate_thumbprint") and secrets.dynamics_certificate_key:
        return CertificateCredential(
            thumbprint=str(section["certificate_thumbprint"]),
            private_key=secrets.dynamics_certificate_key,
        )
    if secrets.dynamics_client_secret is not None:
        return ClientSecretCredential(secrets.dynamics_client_secret)
    return None


_apps: dict[tuple[str, str], Any] = {}
_apps_lock = threading.Lock()


def application_for(
    *,
    authority: str,
    client_id: str,
    credential: Credential,
    instance_discovery: bool = True,
    http_client: requests.Session | None = None,
    timeout: float = 30.0,
) -> Any:
    """This process's one msal application for ``authority`` + ``client_id``.

    msal fetches the tenant's OpenID configuration when the application is built, so the
    first call needs the network; later calls return the same object and its token cache.
    ``instance_discovery=False`` skips msal's authority check against Microsoft's instance
    discovery endpoint (tests, sovereign or private authorities); production keeps it.
    """
    key = (authority.rstrip("/").lower(), client_id.lower())
    with _apps_lock:
        app = _apps.get(key)
        if app is not None:
            return app
        options: dict[str, Any] = {
            "client_credential": credential.for_msal(),
            "authority": authority,
            "instance_discovery": instance_discovery,
        }
        if http_client is not None:
            options["http_client"] = http_client
        else:
            options["timeout"] = timeout
        try:
            app = msal.ConfidentialClientApplication(client_id, **options)
        except requests.RequestException as exc:
            raise CrmUnavailable(
                f"Microsoft Entra ID could not be reached at {authority} ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            raise CrmAuthError(
                f"Microsoft Entra ID rejected the authority {authority}: {exc}; check "
                "crm.dynamics.tenant_id and crm.dynamics.authority_host"
            ) from exc
        _apps[key] = app
        return app


def reset_applications() -> None:
    """Forget every msal application and its tokens (tests)."""
    with _apps_lock:
        _apps.clear()


# Entra ID errors that say "try again later" rather than "your credentials are wrong".
_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "service_unavailable"}


class TokenSource:
    """Bearer tokens for one Dataverse environment, from the shared msal application."""

    def __init__(
        self,
        *,
        environment_url: str,
        tenant_id: str,
        client_id: str,
        credential: Credential,
        authority_host: str = "https://login.microsoftonline.com",
        instance_discovery: bool = True,
        http_client: requests.Session | None = None,
    ) -> None:
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.scopes = [f"{environment_url.rstrip('/')}/.default"]
        self._credential = credential
        self._instance_discovery = instance_discovery
        self._http_client = http_client

    def _app(self) -> Any:
        return application_for(
            authority=self.authority,
            client_id=self.client_id,
            credential=self._credential,
            instance_discovery=self._instance_discovery,
            http_client=self._http_client,
        )

    def token(self) -> str:
        """A valid access token, from msal's cache when it still holds one."""
        try:
            result = self._app().acquire_token_for_client(scopes=self.scopes)
        except requests.RequestException as exc:
            raise CrmUnavailable(
                f"Microsoft Entra ID could not be reached for a token ({type(exc).__name__})"
            ) from exc
        if isinstance(result, dict) and result.get("access_token"):
            return str(result["access_token"])
        error = str((result or {}).get("error") or "no_token")
        description = str((result or {}).get("error_description") or "").splitlines()
        detail = description[0] if description else "no description"
        if error in _TRANSIENT_ERRORS:
            raise CrmUnavailable(f"Microsoft Entra ID is unavailable ({error}: {detail})")
        raise CrmAuthError(
            f"Microsoft Entra ID refused a token for client {self.client_id} ({error}: {detail}); "
            "check crm.dynamics.client_id, crm.dynamics.tenant_id and DYNAMICS_CLIENT_SECRET "
            "(or the certificate)"
        )

    def renew(self) -> str:
        """Drop the cached token (Dataverse refused it) and fetch a new one."""
        self._app().remove_tokens_for_client()
        return self.token()
