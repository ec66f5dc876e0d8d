"""The glue between dealbridge and the local sandboxes, for the demo and the end-to-end tests.

The sandboxes (the top-level ``sandboxes`` package) know nothing of dealbridge; this package
gives them dealbridge's side: its Salesforce metadata, its sample org, and a configured
dealbridge wired to them (:mod:`connector.demo.world`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.bundled import salesforce_metadata_dir
from sandboxes.salesforce import SalesforceSandbox

#: dealbridge's sample org: the four demo deals and the accounts, contacts and products
#: around them. The Salesforce sandbox loads it as is; the Dataverse one translates it.
SAMPLE_ORG = Path(__file__).resolve().with_name("sample_org.yaml")


def salesforce_sandbox(
    seed: str | Path | dict[str, Any] | None = SAMPLE_ORG, **options: Any
) -> SalesforceSandbox:
    """A Salesforce sandbox with dealbridge's custom objects and fields deployed, as an admin
    would deploy them, and (by default) the sample org loaded."""
    return SalesforceSandbox(seed=seed, metadata_dir=salesforce_metadata_dir(), **options)
