"""A local, stateful stand-in for the Salesforce REST API, for dealbridge's demo and tests.

Start one, point simple-salesforce at it through a ``requests.Session`` that rewrites
``https://`` to the sandbox's ``http://`` address, and log in with the demo credentials::

    from sandboxes.salesforce import SalesforceSandbox
    sb = SalesforceSandbox(seed="org.yaml", metadata_dir="sfdx-project").start()
    sf = Salesforce(username=DEMO_USERNAME, password=DEMO_PASSWORD,
                    security_token=DEMO_SECURITY_TOKEN, session=HttpsRewriteSession(sb.url))

Or from a shell: ``python -m sandboxes.salesforce --seed org.yaml --metadata sfdx-project``
(``dealbridge sandbox salesforce`` starts it with dealbridge's metadata and sample org).
See docs/sandboxes.md for what is covered and where it differs from Salesforce.
"""

from .auth import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
)
from .bulk2 import Processing
from .sandbox import API_VERSION, SalesforceSandbox, serve_forever

__all__ = [
    "API_VERSION",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PASSWORD",
    "DEMO_SECURITY_TOKEN",
    "DEMO_USERNAME",
    "Processing",
    "SalesforceSandbox",
    "serve_forever",
]
