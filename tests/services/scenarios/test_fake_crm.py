"""The fake CRM stays a whole ``CrmAdapter``: when the protocol grows, this fails first,
naming the method the fake lacks (instead of a scenario failing somewhere in a job)."""

from __future__ import annotations

import inspect

from connector.crm.base import CrmAdapter
from tests.support.fake_crm import FakeCrm


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_fake_crm_has_every_method_of_the_adapter_protocol_with_its_parameters() -> None:
    fake = _methods(FakeCrm)
    for name, signature in _methods(CrmAdapter).items():
        assert name in fake, f"FakeCrm lacks CrmAdapter.{name}"
        assert list(fake[name].parameters) == list(signature.parameters), name
    assert {"kind", "batch_size"} <= set(vars(FakeCrm))
