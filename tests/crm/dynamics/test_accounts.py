"""Reading several accounts at once (a batch's account figures need their currencies) through
the real adapter (msal + requests over loopback) from the Dataverse sandbox in process: one
``$filter`` of ids per ``ACCOUNTS_PER_READ``, keyed by the id asked with."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.crm.dynamics.adapter import DynamicsAdapter
from sandboxes.dataverse import DataverseSandbox
from tests.crm.dynamics.test_contact_changes import adapter_for, clock, make_sandbox, sandbox

__all__ = ["adapter_for", "clock", "make_sandbox", "sandbox"]  # the sandbox fixtures, used here

MISSING = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _account_reads(sandbox: DataverseSandbox) -> int:
    return sum(
        n for (method, path), n in sandbox.request_counts().items()
        if method == "GET" and path.rsplit("/", 1)[-1].startswith("accounts")
    )  # fmt: skip


def test_several_accounts_are_read_with_one_request(
    sandbox: DataverseSandbox, adapter_for: Callable[..., DynamicsAdapter]
) -> None:
    refs = sandbox.ids_by_ref()
    adapter = adapter_for()
    asked = [refs["acme"], refs["stark"].upper(), MISSING, "not-a-guid"]
    adapter.get_account(refs["acme"])  # signs in before counting
    sandbox.reset_request_log()

    found = adapter.get_accounts(asked)

    assert sorted(found) == sorted([refs["acme"], refs["stark"].upper()])
    assert _account_reads(sandbox) == 1
    assert found[refs["acme"]] == adapter.get_account(refs["acme"])
    assert found[refs["stark"].upper()].id == refs["stark"]


def test_more_accounts_than_one_read_takes_are_read_in_several(
    sandbox: DataverseSandbox,
    adapter_for: Callable[..., DynamicsAdapter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refs = sandbox.ids_by_ref()
    accounts = sorted(i for r, i in refs.items() if sandbox.ref(r).table == "account")
    assert len(accounts) >= 3
    monkeypatch.setattr(DynamicsAdapter, "ACCOUNTS_PER_READ", 2)
    adapter = adapter_for()
    adapter.get_account(accounts[0])
    sandbox.reset_request_log()

    found = adapter.get_accounts(accounts)

    assert sorted(found) == accounts
    assert _account_reads(sandbox) == -(-len(accounts) // 2)
