"""A local, stateful stand-in for the Dataverse Web API v9.2 and its Entra ID tenant.

Start one, then point msal and requests at it through a session that sends
``https://login.microsoftonline.com/...`` and the environment's URL to the sandbox (msal
refuses ``http://`` authorities)::

    from sandboxes.dataverse import DataverseSandbox, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    sb = DataverseSandbox(seed="org.yaml").start()
    session = RewriteToSandbox(sb.url)      # e.g. dealbridge's HttpsRewriteSession
    app = msal.ConfidentialClientApplication(
        DEMO_CLIENT_ID, client_credential=DEMO_CLIENT_SECRET, authority=sb.authority,
        http_client=session, instance_discovery=False)
    token = app.acquire_token_for_client([f"{sb.environment_url}/.default"])["access_token"]
    session.get(f"{sb.environment_url}/api/data/v9.2/accounts?$select=name",
                headers={"Authorization": f"Bearer {token}"}).json()

Or from a shell: ``python -m sandboxes.dataverse --seed org.yaml``. See docs/sandboxes.md for
what is covered and where it differs from Dataverse.
"""

from .entra import DEMO_USERS
from .entra_signin import DirectoryUser
from .sandbox import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_ENVIRONMENT_URL,
    DEMO_TENANT_ID,
    DataverseSandbox,
    serve_forever,
)
from .seed import SeedError, guid_for
from .values import Ref

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_ENVIRONMENT_URL",
    "DEMO_TENANT_ID",
    "DEMO_USERS",
    "DataverseSandbox",
    "DirectoryUser",
    "Ref",
    "SeedError",
    "guid_for",
    "serve_forever",
]
