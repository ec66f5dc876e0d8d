"""Building a simple-salesforce client for a plain-HTTP stand-in (the local sandbox)."""

from __future__ import annotations

from simple_salesforce.api import Salesforce

from connector.crm.https_rewrite import HttpsRewriteSession

#: The client type, for code outside the adapter that holds one (the demo, its tests).
SalesforceClient = Salesforce


def client_at(base_url: str, *, username: str, password: str, security_token: str) -> Salesforce:
    """A simple-salesforce client logged in to a plain-HTTP stand-in (the local sandbox)."""
    return Salesforce(
        username=username,
        password=password,
        security_token=security_token,
        session=HttpsRewriteSession(base_url),
    )
