"""Authentication: SOAP login, OAuth password and client-credentials grants, sessions."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from defusedxml import ElementTree as ET
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession
from simple_salesforce.login import SalesforceLogin

from connector.crm.https_rewrite import HttpsRewriteSession
from sandboxes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)


def test_simple_salesforce_default_login_gets_a_session_on_the_sandbox(
    sandbox: SalesforceSandbox,
) -> None:
    sf = Salesforce(
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        session=HttpsRewriteSession(sandbox.url),
    )
    assert sf.sf_instance == sandbox.url.removeprefix("http://")
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_soap_login_with_a_wrong_password_fails_with_invalid_login(
    sandbox: SalesforceSandbox,
) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        SalesforceLogin(
            username=DEMO_USERNAME,
            password="wrong",
            security_token="",
            session=HttpsRewriteSession(sandbox.url),
        )
    assert failure.value.code == "INVALID_LOGIN"


def test_oauth_password_grant_returns_a_token_that_opens_the_api(
    sandbox: SalesforceSandbox,
) -> None:
    session = HttpsRewriteSession(sandbox.url)
    token, instance = SalesforceLogin(
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD + DEMO_SECURITY_TOKEN,
        consumer_key=DEMO_CLIENT_ID,
        consumer_secret=DEMO_CLIENT_SECRET,
        session=session,
    )
    sf = Salesforce(session_id=token, instance_url=f"https://{instance}", session=session)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_oauth_token_response_has_salesforce_fields_and_the_sandbox_instance_url(
    sf: Any, sandbox: SalesforceSandbox
) -> None:
    body = sf.oauth2(
        "token",
        params={
            "grant_type": "password",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "username": DEMO_USERNAME,
            "password": DEMO_PASSWORD,
        },
        method="POST",
    )
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at",
                         "signature"}  # fmt: skip
    assert body["instance_url"] == sandbox.url
    assert body["token_type"] == "Bearer"
    assert body["id"].startswith(f"{sandbox.url}/id/00D")


def test_oauth_password_grant_with_wrong_credentials_is_invalid_grant(
    sandbox: SalesforceSandbox,
) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        SalesforceLogin(
            username=DEMO_USERNAME,
            password="not-the-password",
            consumer_key=DEMO_CLIENT_ID,
            consumer_secret=DEMO_CLIENT_SECRET,
            session=HttpsRewriteSession(sandbox.url),
        )
    assert failure.value.code == "invalid_grant"
    assert failure.value.auth_message == "authentication failure"


def test_client_credentials_grant_opens_the_api(sandbox: SalesforceSandbox) -> None:
    sf = Salesforce(
        consumer_key=DEMO_CLIENT_ID,
        consumer_secret=DEMO_CLIENT_SECRET,
        domain="dealbridge-demo.my",
        session=HttpsRewriteSession(sandbox.url),
    )
    assert sf.query("SELECT COUNT() FROM Opportunity")["done"] is True


def test_client_credentials_with_a_wrong_secret_is_invalid_client(
    sandbox: SalesforceSandbox,
) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        Salesforce(
            consumer_key=DEMO_CLIENT_ID,
            consumer_secret="nope",
            domain="dealbridge-demo.my",
            session=HttpsRewriteSession(sandbox.url),
        )
    assert failure.value.code == "invalid_client"


def test_demo_credentials_can_be_replaced_in_the_constructor(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox = make_sandbox(username="admin@acme.example", password="s3cret",
                           security_token="TOKEN")  # fmt: skip
    sf = Salesforce(
        username="admin@acme.example",
        password="s3cret",
        security_token="TOKEN",
        session=HttpsRewriteSession(sandbox.url),
    )
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_an_unknown_token_is_answered_with_invalid_session_id(sandbox: SalesforceSandbox) -> None:
    sf = Salesforce(
        session_id="00Dfake!token",
        instance_url=sandbox.url,
        session=HttpsRewriteSession(sandbox.url),
    )
    with pytest.raises(SalesforceExpiredSession) as failure:
        sf.query("SELECT Id FROM Account")
    assert failure.value.status == 401
    content: Any = failure.value.content
    assert content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_expired_sessions_answer_401_to_a_client_holding_only_a_token(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    direct = Salesforce(
        session_id=sf.session_id, instance_url=sandbox.url, session=HttpsRewriteSession(sandbox.url)
    )
    sandbox.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        direct.query("SELECT Id FROM Account")


def test_a_password_client_logs_in_again_after_its_session_expires(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    old = sf.session_id
    sandbox.expire_sessions()
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert sf.session_id != old


USER_INFO = [
    "accessibilityMode", "chatterExternal", "currencySymbol", "orgAttachmentFileSizeLimit",
    "orgDefaultCurrencyIsoCode", "orgDefaultCurrencyLocale", "orgDisallowHtmlAttachments",
    "orgHasPersonAccounts", "organizationId", "organizationMultiCurrency", "organizationName",
    "profileId", "roleId", "sessionSecondsValid", "userDefaultCurrencyIsoCode", "userEmail",
    "userFullName", "userId", "userLanguage", "userLocale", "userName", "userTimeZone",
    "userType", "userUiSkin",
]  # fmt: skip


def test_the_soap_login_reports_every_user_info_element_in_the_partner_wsdl_order(
    sandbox: SalesforceSandbox,
) -> None:
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?><env:Envelope '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        '<n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{DEMO_USERNAME}</n1:username><n1:password>{DEMO_PASSWORD}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )
    response = requests.post(
        f"{sandbox.url}/services/Soap/u/59.0",
        data=envelope,
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
        timeout=10,
    )

    root = ET.fromstring(response.content)
    user_info = next(e for e in root.iter() if e.tag.endswith("userInfo"))
    children = {c.tag.rsplit("}", 1)[-1]: c for c in user_info}
    assert list(children) == USER_INFO
    assert children["organizationMultiCurrency"].text == "true"
    assert children["userDefaultCurrencyIsoCode"].text == "USD"
    assert children["profileId"].text is not None and children["profileId"].text.startswith("00e")
    nil = "{http://www.w3.org/2001/XMLSchema-instance}nil"
    assert children["orgDefaultCurrencyIsoCode"].get(nil) == "true"
