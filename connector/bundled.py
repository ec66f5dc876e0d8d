"""Where dealbridge's default mappings and Salesforce metadata are, installed or not.

The admin-facing source is the repository's top-level ``mappings/`` folder: admins copy the
YAML and deploy the SFDX metadata from there. A wheel cannot reach that folder, so the build
copies it into the package as ``connector/bundled/mappings`` (see ``setup.py``). This module
is the one place that knows both homes, so nothing else looks beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = _PACKAGE_DIR / "bundled" / "mappings"
_CHECKOUT = _PACKAGE_DIR.parent / "mappings"


def mappings_dir() -> Path:
    """The default mappings folder: the wheel's copy when installed, else the checkout's."""
    if _INSTALLED.is_dir():
        return _INSTALLED
    if _CHECKOUT.is_dir():
        return _CHECKOUT
    raise FileNotFoundError(
        f"dealbridge's default mappings are missing: looked in {_INSTALLED} (installed wheel) "
        f"and {_CHECKOUT} (source checkout); reinstall dealbridge or set crm.mapping"
    )


def default_mapping(crm_kind: str) -> Path:
    """The mapping dealbridge uses for ``crm_kind`` when ``crm.mapping`` is not set."""
    return mappings_dir() / f"{crm_kind}.yaml"


def salesforce_metadata_dir() -> Path:
    """The SFDX project (custom objects and fields) that admins deploy to Salesforce."""
    return mappings_dir() / "salesforce"
