"""Contacts changed since a cursor, and the accounts they are a billing contact of, read by
the real adapter (msal + requests over loopback) from the Dataverse sandbox in process.

In the sample org ``acme_ap`` (Dana Whitfield) is a contact of Acme and Acme's fallback
billing contact (``primarycontactid``); ``stark_contact`` is the billing contact of the
``stark_pilot`` opportunity (``db_billingcontactid``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.crm.base import Changes
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.auth import ClientSecretCredential
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.mappings import load_mapping
from connector.secrets import Secret
from sandboxes.dataverse import DataverseSandbox, Ref
from tests.sandboxes.dataverse.conftest import clock, make_sandbox, sandbox
from tests.support import FrozenClock

__all__ = ["clock", "make_sandbox", "sandbox"]  # the sandbox fixtures, used here

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def adapter_for(sandbox: DataverseSandbox) -> Callable[..., DynamicsAdapter]:
    def make(page_size: int = 500) -> DynamicsAdapter:
        mapping = load_mapping(REPO / "mappings" / "dynamics.yaml", "dynamics")
        mapping.options["page_size"] = page_size
        return DynamicsAdapter(
            mapping,
            environment_url=sandbox.environment_url,
            tenant_id=sandbox.tenant_id,
            client_id=sandbox.client_id,
            credential=ClientSecretCredential(Secret(sandbox.client_secret)),
            session=HttpsRewriteSession(sandbox.url),
            instance_discovery=False,
            clock=lambda: 0.0,
            sleeper=lambda seconds: None,
        )

    return make


@pytest.fixture
def adapter(adapter_for: Callable[..., DynamicsAdapter]) -> DynamicsAdapter:
    return adapter_for()


def _edit(sandbox: DataverseSandbox, clock: FrozenClock, ref: str, **values: Any) -> None:
    clock.advance(seconds=5)
    sandbox.update("contact", sandbox.ref(ref).id, values)


def _new(before: Changes, after: Changes) -> list[str]:
    """The accounts of ``after`` with a version ``before`` did not have: the poll reads from
    its cursor's second on (``ge``), so what it saw there comes again, as the same events."""
    return [a for a in after.ids if after.versions[a] != before.versions.get(a)]


def test_the_first_poll_reads_every_contacts_account_and_sets_a_modifiedon_cursor(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    refs = sandbox.ids_by_ref()
    changes = adapter.changed_contact_accounts(None)
    assert {refs["acme"], refs["stark"]} <= set(changes.ids)
    assert changes.cursor == f"modifiedon:{clock().strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert set(changes.versions) == set(changes.ids)


def test_a_contacts_new_email_names_its_account_once(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    refs = sandbox.ids_by_ref()
    before = adapter.changed_contact_accounts(None)
    _edit(sandbox, clock, "acme_ap", emailaddress1="billing@acmerobotics.example")
    changes = adapter.changed_contact_accounts(before.cursor)
    # its parent account and the account whose fallback billing contact it is: Acme, once
    assert _new(before, changes) == [refs["acme"]]
    assert changes.ids.count(refs["acme"]) == 1
    assert adapter.changed_contact_accounts(changes.cursor).ids == [refs["acme"]]
    version = sandbox.row("contact", refs["acme_ap"])["versionnumber"]
    assert changes.versions[refs["acme"]] == f"{refs['acme_ap']}@{version}"
    assert changes.cursor == f"modifiedon:{clock().strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_nothing_changed_keeps_the_cursor(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    cursor = adapter.changed_contact_accounts(None).cursor
    clock.advance(seconds=5)
    later = f"modifiedon:{clock().strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert adapter.changed_contact_accounts(later).ids == []
    assert adapter.changed_contact_accounts(later).cursor == later
    assert cursor is not None


def test_a_contact_of_no_account_counts_where_a_billing_contact_lookup_names_it(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    """Parentless, it is the billing contact of Acme's deal and Globex's fallback contact."""
    refs = sandbox.ids_by_ref()
    contact = sandbox.insert(
        "contact", {"firstname": "Lee", "lastname": "Okafor", "emailaddress1": "lee@ex.example"}
    )
    sandbox.update(
        "opportunity", refs["acme_platform"], {"db_billingcontactid": Ref("contact", contact)}
    )
    sandbox.update("account", refs["globex"], {"primarycontactid": Ref("contact", contact)})
    before = adapter.changed_contact_accounts(None)
    clock.advance(seconds=5)
    sandbox.update("contact", contact, {"emailaddress1": "ap@ex.example"})
    changes = adapter.changed_contact_accounts(before.cursor)
    assert sorted(_new(before, changes)) == sorted([refs["acme"], refs["globex"]])
    assert changes.versions[refs["globex"]].startswith(contact)
    assert adapter.accounts_of_contact(contact) == [refs["globex"], refs["acme"]]


def test_a_contact_whose_parent_is_another_contact_names_no_account(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    refs = sandbox.ids_by_ref()
    before = adapter.changed_contact_accounts(None)
    clock.advance(seconds=5)
    sandbox.insert(
        "contact",
        {"lastname": "Assistant", "parentcustomerid": Ref("contact", refs["stark_contact"])},
    )
    changes = adapter.changed_contact_accounts(before.cursor)
    assert _new(before, changes) == []
    assert changes.cursor != before.cursor  # seen: the next poll starts at its second
    assert adapter.changed_contact_accounts(changes.cursor).ids == []


def test_a_second_change_in_the_same_second_is_a_new_version(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter, clock: FrozenClock
) -> None:
    refs = sandbox.ids_by_ref()
    cursor = adapter.changed_contact_accounts(None).cursor
    _edit(sandbox, clock, "stark_contact", emailaddress1="one@stark.example")
    first = adapter.changed_contact_accounts(cursor)
    first = adapter.changed_contact_accounts(first.cursor)
    sandbox.update("contact", refs["stark_contact"], {"emailaddress1": "two@stark.example"})
    second = adapter.changed_contact_accounts(first.cursor)
    assert first.ids == second.ids == [refs["stark"]]
    assert first.versions[refs["stark"]] != second.versions[refs["stark"]]


def test_contacts_are_read_page_by_page(
    sandbox: DataverseSandbox, adapter_for: Callable[..., DynamicsAdapter], clock: FrozenClock
) -> None:
    refs = sandbox.ids_by_ref()
    whole = adapter_for().changed_contact_accounts(None)
    sandbox.reset_request_log()
    paged = adapter_for(page_size=1).changed_contact_accounts(None)
    assert sorted(paged.ids) == sorted(whole.ids)
    assert sandbox.request_count("GET", "contacts") > 2
    assert refs["acme"] in paged.ids


def test_a_cursor_from_elsewhere_is_refused(adapter: DynamicsAdapter) -> None:
    with pytest.raises(ValueError, match="contact cursor"):
        adapter.changed_contact_accounts("delta:https://example/contacts?$deltatoken=1")


def test_a_pushed_contact_names_the_accounts_it_bills_for(
    sandbox: DataverseSandbox, adapter: DynamicsAdapter
) -> None:
    refs = sandbox.ids_by_ref()
    assert adapter.accounts_of_contact(refs["acme_ap"]) == [refs["acme"]]
    assert adapter.accounts_of_contact(refs["stark_contact"]) == [refs["stark"]]
    with pytest.raises(ValueError):
        adapter.accounts_of_contact("x' or 1 eq 1")
