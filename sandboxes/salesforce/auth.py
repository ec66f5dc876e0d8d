"""Authentication: the OAuth 2.0 token endpoint, the SOAP ``login()`` call and session tokens.

The demo credentials below are public on purpose: they only open the local sandbox.

``instance_url`` (OAuth) and ``serverUrl`` (SOAP) are the sandbox's own ``http://host:port``
URL as the client reached it. simple-salesforce strips the scheme and keeps ``host:port`` as
its instance, then builds ``https://host:port/...`` URLs, which
a rewriting session (dealbridge's ``HttpsRewriteSession``) sends back to the sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

DEMO_USERNAME = "demo@dealbridge.example"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - public demo credential for the local sandbox
DEMO_SECURITY_TOKEN = ""
DEMO_CLIENT_ID = "dealbridge-demo-client"
DEMO_CLIENT_SECRET = "dealbridge-demo-secret"  # noqa: S105 - public demo credential

PARTNER_NS = "urn:partner.soap.sforce.com"


@dataclass(frozen=True)
class Credentials:
    username: str = DEMO_USERNAME
    password: str = DEMO_PASSWORD
    security_token: str = DEMO_SECURITY_TOKEN
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET

    def password_ok(self, username: str | None, password: str | None) -> bool:
        """Salesforce takes the password with the security token appended."""
        return (
            username is not None
            and password is not None
            and username.lower() == self.username.lower()
            and hmac.compare_digest(password, self.password + self.security_token)
        )

    def client_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        return (
            client_id == self.client_id
            and client_secret is not None
            and (hmac.compare_digest(client_secret, self.client_secret))
        )


class Sessions:
    """Issued access tokens; ``expire_all`` invalidates every one (re-authentication tests)."""

    def __init__(self, org_id: str) -> None:
        self._org_id15 = org_id[:15]
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = f"{self._org_id15}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._tokens.add(token)
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._tokens

    def expire_all(self) -> None:
        with self._lock:
            self._tokens.clear()


#: Session timeout the login reports (the org's default of two hours).
SESSION_SECONDS_VALID = 7200


@dataclass
class OrgIdentity:
    org_id: str
    user_id: str
    instance_url: str
    profile_id: str = ""
    currency: str = "USD"  # the user's default currency


#: How long an authorization code may wait to be exchanged (Salesforce: 15 minutes).
CODE_SECONDS_VALID = 15 * 60


class AuthorizationCodes:
    """Codes of the web-server flow: each is exchanged once, by the client it was issued to,
    with the same ``redirect_uri``, within ``CODE_SECONDS_VALID``."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, client_id: str, redirect_uri: str, now: float) -> str:
        code = "aPrx" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = (client_id, redirect_uri, now + CODE_SECONDS_VALID)
        return code

    def redeem(self, code: str | None, client_id: str | None, redirect_uri: str | None,
               now: float) -> bool:  # fmt: skip
        with self._lock:
            issued = self._codes.pop(code or "", None)
        return (
            issued is not None
            and issued[0] == client_id
            and issued[1] == redirect_uri
            and now <= issued[2]
        )


def authorize(
    query: dict[str, str], credentials: Credentials, codes: AuthorizationCodes, now: float
) -> tuple[int, dict[str, str]]:
    """``GET /services/oauth2/authorize`` (web-server flow): a redirect to ``redirect_uri``
    with ``code`` and ``state``, or with ``error`` (an unknown client gets an error page,
    as Salesforce shows one: it cannot trust that client's ``redirect_uri``).

    The sandbox's browser user is always signed in to the org as the demo user and the
    connected app is admin-approved, so there is no login page and no consent screen.
    """
    client_id, redirect_uri = query.get("client_id"), query.get("redirect_uri")
    if client_id != credentials.client_id or not redirect_uri:
        return 400, {"error": "invalid_client_id", "error_description": "client identifier invalid"}
    state = {"state": query["state"]} if "state" in query else {}
    if query.get("response_type") != "code":
        return 302, {"location": redirect_uri, "error": "unsupported_response_type", **state}
    code = codes.issue(client_id, redirect_uri, now)
    return 302, {"location": redirect_uri, "code": code, **state}


def _oauth_error(error: str, description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": error, "error_description": description}


def oauth_token(
    form: dict[str, str],
    authorization: str | None,
    credentials: Credentials,
    sessions: Sessions,
    identity: OrgIdentity,
    now: Callable[[], datetime],
    codes: AuthorizationCodes | None = None,
) -> tuple[int, dict[str, Any]]:
    """``POST /services/oauth2/token`` for the password, client-credentials and
    authorization-code (web-server flow) grants."""
    grant = form.get("grant_type")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
        except ValueError:
            return _oauth_error("invalid_client", "invalid client credentials")
        client_id, _, client_secret = decoded.partition(":")
    if grant not in ("password", "client_credentials", "authorization_code"):
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    if client_id != credentials.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if not credentials.client_ok(client_id, client_secret):
        return _oauth_error("invalid_client", "invalid client credentials")
    if grant == "password" and not credentials.password_ok(
        form.get("username"), form.get("password")
    ):
        return _oauth_error("invalid_grant", "authentication failure")
    if grant == "authorization_code" and (
        codes is None
        or not codes.redeem(
            form.get("code"), client_id, form.get("redirect_uri"), now().timestamp()
        )
    ):
        return _oauth_error("invalid_grant", "invalid authorization code")
    issued_at = str(int(now().timestamp() * 1000))
    id_url = f"{identity.instance_url}/id/{identity.org_id}/{identity.user_id}"
    signature = base64.b64encode(
        hmac.new(
            credentials.client_secret.encode(), (id_url + issued_at).encode(), hashlib.sha256
        ).digest()
    ).decode()
    body: dict[str, Any] = {
        "access_token": sessions.issue(),
        "instance_url": identity.instance_url,
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
    }
    if grant == "client_credentials":
        body["scope"] = "api"
    return 200, body


def identity_service(
    authorization: str | None, sessions: Sessions, identity: OrgIdentity, username: str
) -> tuple[int, Any]:
    """``GET /id/{org}/{user}`` (the identity URL a token answer names): who the token's user
    is. 403 ``Bad_OAuth_Token`` for a missing or unknown token, as Salesforce answers."""
    token = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
    if not sessions.valid(token):
        return 403, "Bad_OAuth_Token"
    return 200, {
        "id": f"{identity.instance_url}/id/{identity.org_id}/{identity.user_id}",
        "asserted_user": True,
        "user_id": identity.user_id,
        "organization_id": identity.org_id,
        "username": username,
        "nick_name": username.split("@")[0],
        "display_name": "Demo User",
        "email": username,
        "email_verified": True,
        "active": True,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": 0,
        "is_app_installed": True,
    }


def _find_text(root: ET.Element, local_name: str) -> str | None:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == local_name:
            return element.text or ""
    return None


def soap_login(
    body: bytes,
    credentials: Credentials,
    sessions: Sessions,
    identity: OrgIdentity,
    version: str,
) -> tuple[int, str]:
    """The partner API ``login()`` call: a ``loginResponse`` or an ``INVALID_LOGIN`` fault."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - element text only, no entities resolved
    except ET.ParseError:
        return 500, _fault("soapenv:Client", "INVALID_XML", "Unable to parse the request body")
    username = _find_text(root, "username")
    password = _find_text(root, "password")
    if not credentials.password_ok(username, password):
        return 500, _fault(
            "INVALID_LOGIN",
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        )
    org15 = identity.org_id[:15]
    base = identity.instance_url
    token = sessions.issue()
    return 200, (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns="{PARTNER_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(base)}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired>"
        "<sandbox>true</sandbox>"
        f"<serverUrl>{escape(base)}/services/Soap/u/{version}/{org15}</serverUrl>"
        f"<sessionId>{escape(token)}</sessionId>"
        f"<userId>{identity.user_id}</userId>"
        "<userInfo>"
        "<accessibilityMode>false</accessibilityMode>"
        "<chatterExternal>false</chatterExternal>"
        # A multi-currency org has no single currency symbol or default currency; the
        # user's own default currency is reported instead.
        '<currencySymbol xsi:nil="true"/>'
        "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>"
        '<orgDefaultCurrencyIsoCode xsi:nil="true"/>'
        '<orgDefaultCurrencyLocale xsi:nil="true"/>'
        "<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
        "<orgHasPersonAccounts>false</orgHasPersonAccounts>"
        f"<organizationId>{identity.org_id}</organizationId>"
        "<organizationMultiCurrency>true</organizationMultiCurrency>"
        "<organizationName>dealbridge Sandbox</organizationName>"
        f"<profileId>{identity.profile_id}</profileId>"
        '<roleId xsi:nil="true"/>'
        f"<sessionSecondsValid>{SESSION_SECONDS_VALID}</sessionSecondsValid>"
        f"<userDefaultCurrencyIsoCode>{identity.currency}</userDefaultCurrencyIsoCode>"
        f"<userEmail>{escape(credentials.username)}</userEmail>"
        "<userFullName>Dealbridge Integration</userFullName>"
        f"<userId>{identity.user_id}</userId>"
        "<userLanguage>en_US</userLanguage>"
        "<userLocale>en_US</userLocale>"
        f"<userName>{escape(credentials.username)}</userName>"
        "<userTimeZone>GMT</userTimeZone>"
        "<userType>Standard</userType>"
        "<userUiSkin>Theme3</userUiSkin>"
        "</userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def _fault(code: str, exception_code: str, message: str) -> str:
    faultcode = code if ":" in code else f"sf:{code}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{faultcode}</faultcode>"
        f"<faultstring>{exception_code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{exception_code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
