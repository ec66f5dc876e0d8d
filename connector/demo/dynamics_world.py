"""The local world with Dynamics 365 as the CRM: the Dataverse sandbox instead of Salesforce's.

dealbridge is configured as an admin would configure it for a real environment
(``crm.kind: dynamics``, the app registration's ids and the ``DYNAMICS_*`` secrets); the only
difference is the ``http://`` environment URL, which makes the adapter send msal's and its
own ``https://`` requests to the sandbox (see ``DynamicsAdapter.from_config``).
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

from connector.config import Config
from connector.crm.base import CrmAdapter
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.auth import reset_applications
from connector.crm.dynamics.throttle import reset_gates
from connector.demo.dataverse import catalog_options, dataverse_sandbox, register_webhook
from connector.demo.world import LocalWorld
from connector.mappings import load_mapping
from connector.secrets import Secret
from connector.web.crm_sign_in_start import ENTRA_CALLBACK

#: The app roles of the sandbox's app registration (``sandboxes.dataverse.DEMO_USERS`` hold
#: them) and the dealbridge role each maps to, as an admin sets ``web.entra.roles``.
DEMO_APP_ROLES = {
    "Dealbridge.SalesRep": "sales_rep",
    "Dealbridge.Finance": "finance",
    "Dealbridge.Admin": "admin",
}


class DynamicsLocalWorld(LocalWorld):
    crm_name = "dynamics"
    #: Extra keyword arguments for the adapter (tests inject ``clock`` and ``sleeper``).
    adapter_options: dict[str, Any] = {}

    def _init_crm(self, seed: str | Path | dict[str, Any] | None) -> None:
        self.dataverse = dataverse_sandbox(seed=seed, now=self.clock)
        self.webhook_key = secrets.token_urlsafe(32)

    def _start_crm(self) -> None:
        # msal applications and service-protection pauses are kept per process; a new
        # sandbox is a new environment.
        reset_applications()
        reset_gates()
        self.dataverse.start(port=self._ports[2], auto_deliver=self._auto_deliver)
        register_webhook(self.dataverse, f"{self.app_url}/webhooks/crm", self.webhook_key)
        # docs/dynamics-setup.md: the app registration's Web redirect URI for sign-in.
        self.dataverse.allow_redirect_uri(self.app_url + ENTRA_CALLBACK)

    def _stop_crm(self) -> None:
        self.dataverse.stop()
        reset_applications()
        reset_gates()

    def _crm_section(self) -> dict[str, Any]:
        return {
            "kind": "dynamics",
            "dynamics": {
                "environment_url": self.dataverse.url,
                "tenant_id": self.dataverse.tenant_id,
                "client_id": self.dataverse.client_id,
            },
        }

    def _crm_web_section(self) -> dict[str, Any]:
        # The demo app registration's app roles (assigned to the sandbox's demo users).
        return {"entra": {"roles": dict(DEMO_APP_ROLES)}}

    def _crm_secrets(self) -> dict[str, Any]:
        return {
            "dynamics_client_secret": Secret(self.dataverse.client_secret),
            "dynamics_webhook_key": Secret(self.webhook_key),
        }

    def _crm_adapter(self, config: Config) -> CrmAdapter:
        mapping = load_mapping(config.mapping_path, config.crm_kind)
        # The sample org's catalog, as docs/dynamics-setup.md step 8 has an admin set it.
        options = {**mapping.options, **catalog_options(self.dataverse)}
        return DynamicsAdapter.from_config(
            config, dataclasses.replace(mapping, options=options), **self.adapter_options
        )

    @property
    def crm_url(self) -> str:
        return self.dataverse.url

    def deliver_crm_pushes(self) -> int:
        return self.dataverse.deliver_webhooks()
