"""A local, stateful stand-in for the Salesforce REST API, for dealbridge's demo and tests.

Start one, point simple-salesforce at it through
:class:`connector.crm.salesforce.session.HttpsRewriteSession`, log in with the demo
credentials::

    from connector.sandbox.salesforce import SalesforceSandbox, SAMPLE_ORG
    sb = SalesforceSandbox(seed=SAMPLE_ORG).start()
    sf = Salesforce(username=DEMO_USERNAME, password=DEMO_PASSWORD,
                    security_token=DEMO_SECURITY_TOKEN, session=HttpsRewriteSession(sb.url))

Or from a shell: ``python -m connector.sandbox.salesforce --seed sample``.
See docs/sandboxes.md for what is covered and where it differs from Salesforce.
"""

from .auth import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
)
from .sandbox import API_VERSION, SAMPLE_ORG, SalesforceSandbox, serve_forever

__all__ = [
    "API_VERSION",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PASSWORD",
    "DEMO_SECURITY_TOKEN",
    "DEMO_USERNAME",
    "SAMPLE_ORG",
    "SalesforceSandbox",
    "serve_forever",
]
