"""A stateful Dataverse fake for tests: the Web API and Entra ID behind ``responses``.

``DataverseFake`` (``fake``) answers what ``connector.crm.dynamics`` sends, with payloads
shaped like the real service's (see the adapter tests' named fixtures, which it reuses);
``load_sample_org`` (``seed``) fills it with the same sample org the Salesforce sandbox
serves, under the same refs.
"""

from tests.support.dataverse.fake import (
    CLIENT_ID,
    CLIENT_SECRET,
    ENV_URL,
    TENANT_ID,
    WEBHOOK_KEY,
    DataverseFake,
)
from tests.support.dataverse.query import Ref
from tests.support.dataverse.seed import guid_for, load_sample_org

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ENV_URL",
    "TENANT_ID",
    "WEBHOOK_KEY",
    "DataverseFake",
    "Ref",
    "guid_for",
    "load_sample_org",
]
