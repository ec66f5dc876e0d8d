"""Which accounts a contact is the billing contact of, for changed contacts and pushed ones.

A contact's new email or name must reach the Stripe customer of every account it bills for.
On Dynamics 365 a contact bills for an account in three ways, all named by the mapping:

* its parent account (``options.contact_account_field``, ``parentcustomerid``: only when
  it points at an account, not at another contact);
* the account's fallback billing contact lookup (``billing_contact.account_fallback_field``,
  ``primarycontactid``);
* a deal's billing contact lookup (``billing_contact.lookup_field``,
  ``db_billingcontactid``): the deal's account (``parentaccountid``).

Changed contacts are polled by ``modifiedon`` (cursor ``modifiedon:<ISO time>``, as the
adapter's other polls without change tracking), paged with ``odata.maxpagesize``. The
accounts and deals pointing at them are asked for with a lookup path filter
(``primarycontactid/modifiedon ge ...``), so a poll costs three paged queries however many
contacts changed. Only contacts the first query saw count: one saved between the queries
is seen by the next poll, whose cursor is at most its ``modifiedon``.

An account's version is its newest changed contact and that contact's ``versionnumber``,
so a second change of the same contact in the same second is a new event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.crm.base import Changes
from connector.crm.dynamics.odata import is_guid, parse_datetime
from connector.crm.dynamics.query import lookup_value
from connector.mappings import CrmMapping

__all__ = ["ANNOTATIONS", "ContactAccounts"]

#: Yields the rows of an entity set for these query options, following every page, with the
#: ``ANNOTATIONS`` preference.
Records = Callable[[str, Mapping[str, str]], Iterator[dict[str, Any]]]

MODIFIEDON = "modifiedon:"
VERSION_COLUMN = "versionnumber"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"
#: Formatted values (as every read) and the table a polymorphic lookup points at.
ANNOTATIONS = (
    f'odata.include-annotations="OData.Community.Display.V1.FormattedValue,{LOOKUP_TABLE}"'
)


@dataclass(frozen=True)
class _Pointer:
    """A lookup to contact on some table, and the account that table's row stands for."""

    entity_set: str
    contact_lookup: str  # the lookup column (``primarycontactid``)
    contact_navigation: str  # its navigation property, for path filters
    account_column: str  # the account id column, or ``_<lookup>_value`` of the account lookup


class ContactAccounts:
    def __init__(
        self,
        mapping: CrmMapping,
        records: Records,
        entity_set: Callable[[Mapping[str, Any]], str],
        navigation: Callable[[str, str], str],
    ) -> None:
        self.records = records
        self.contact_set = entity_set(mapping.contact)
        self.contact_id = str(mapping.contact_fields.get("id") or "contactid")
        self.account_table = str(mapping.account["object"])
        options = mapping.options or {}
        self.parent_link = str(options.get("contact_account_field") or "parentcustomerid")
        billing = mapping.deal["billing_contact"]
        self.pointers: list[_Pointer] = []
        fallback = billing.get("account_fallback_field")
        if fallback:
            self.pointers.append(
                _Pointer(
                    entity_set=entity_set(mapping.account),
                    contact_lookup=str(fallback),
                    contact_navigation=navigation(self.account_table, str(fallback)),
                    account_column=str(mapping.account_fields["id"]),
                )
            )
        if billing.get("lookup_field"):
            deal_table = str(mapping.deal["object"])
            self.pointers.append(
                _Pointer(
                    entity_set=entity_set(mapping.deal),
                    contact_lookup=str(billing["lookup_field"]),
                    contact_navigation=navigation(deal_table, str(billing["lookup_field"])),
                    account_column=f"_{mapping.deal_fields['account_id']}_value",
                )
            )

    # ------------------------------------------------------------------ polled

    def changed(self, cursor: str | None) -> Changes:
        """Accounts whose billing contacts were modified from ``cursor``'s second on."""
        since = _since(cursor)
        filters = [f"modifiedon ge {_literal(since)}"] if since else []
        contacts: dict[str, tuple[int, str | None]] = {}  # id -> (version, parent account)
        latest = since
        params = {
            "$select": f"{self.contact_id},_{self.parent_link}_value,modifiedon,{VERSION_COLUMN}",
            "$orderby": "modifiedon asc",
            **({"$filter": filters[0]} if filters else {}),
        }
        for record in self.records(self.contact_set, params):
            contact_id = record.get(self.contact_id)
            if not isinstance(contact_id, str):
                continue
            contacts[contact_id] = (_version(record), self._parent_account(record))
            stamp = parse_datetime(record.get("modifiedon"))
            if stamp is not None and (latest is None or stamp > latest):
                latest = stamp
        if not contacts:
            return Changes(ids=[], cursor=cursor)
        found: dict[str, str] = {}  # account -> its newest changed contact, in order met

        def add(account_id: str, contact_id: str) -> None:
            newest = found.get(account_id)
            if newest is None or contacts[contact_id][0] > contacts[newest][0]:
                found[account_id] = contact_id

        for contact_id, (_version_number, parent) in contacts.items():
            if parent:
                add(parent, contact_id)
        for pointer in self.pointers:
            where = (
                f"{pointer.contact_navigation}/modifiedon ge {_literal(since)}"
                if since
                else f"_{pointer.contact_lookup}_value ne null"
            )
            for account_id, contact_id in self._pointing(pointer, where):
                if contact_id in contacts:
                    add(account_id, contact_id)
        versions = {a: f"{c}@{contacts[c][0]}" for a, c in found.items()}
        new_cursor = f"{MODIFIEDON}{_literal(latest)}" if latest else cursor
        return Changes(ids=list(found), cursor=new_cursor, versions=versions)

    # ------------------------------------------------------------------ pushed

    def of_contact(self, contact_id: str) -> list[str]:
        """The accounts this contact bills for now (a pushed contact change)."""
        if not is_guid(contact_id):
            raise ValueError(f"{contact_id!r} is not a Dataverse contact id (a GUID)")
        guid = contact_id.lower()
        found: dict[str, None] = {}
        params = {
            "$select": f"{self.contact_id},_{self.parent_link}_value",
            "$filter": f"{self.contact_id} eq {guid}",
        }
        for record in self.records(self.contact_set, params):
            parent = self._parent_account(record)
            if parent:
                found[parent] = None
        for pointer in self.pointers:
            for account_id, _contact in self._pointing(
                pointer, f"_{pointer.contact_lookup}_value eq {guid}"
            ):
                found[account_id] = None
        return list(found)

    # ------------------------------------------------------------------ helpers

    def _parent_account(self, record: Mapping[str, Any]) -> str | None:
        parent = lookup_value(record, self.parent_link)
        table = record.get(f"_{self.parent_link}_value@{LOOKUP_TABLE}")
        if isinstance(parent, str) and table in (None, self.account_table):
            return parent
        return None

    def _pointing(self, pointer: _Pointer, where: str) -> Iterator[tuple[str, str]]:
        """(account id, contact id) of the rows of ``pointer``'s table matching ``where``."""
        contact_column = f"_{pointer.contact_lookup}_value"
        params = {
            "$select": ",".join(dict.fromkeys([pointer.account_column, contact_column])),
            "$filter": where,
        }
        for record in self.records(pointer.entity_set, params):
            account_id = record.get(pointer.account_column)
            contact_id = record.get(contact_column)
            if isinstance(account_id, str) and isinstance(contact_id, str):
                yield account_id, contact_id


def _since(cursor: str | None) -> datetime | None:
    if not cursor:
        return None
    text = cursor[len(MODIFIEDON) :] if cursor.startswith(MODIFIEDON) else cursor
    stamp = parse_datetime(text)
    if stamp is None:
        raise ValueError(f"{cursor!r} is not a Dynamics contact cursor (modifiedon:<time>)")
    return stamp


def _literal(stamp: datetime) -> str:
    # Whole seconds, compared with ge: a contact saved later in the cursor's second is seen.
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(record: Mapping[str, Any]) -> int:
    try:
        return int(record.get(VERSION_COLUMN) or 0)
    except (TypeError, ValueError):
        return 0
