"""Pick the configured CRM's adapter; the only place that branches on the CRM's kind."""

from __future__ import annotations

from connector.config import Config
from connector.crm.base import CrmAdapter
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.mappings import CrmMapping


def build_crm_adapter(config: Config, mapping: CrmMapping) -> CrmAdapter:
    if config.crm_kind == "salesforce":
        return SalesforceAdapter.from_config(config, mapping)
    return DynamicsAdapter.from_config(config, mapping)
