"""An in-memory CRM: ``crm/base.py``'s ``CrmAdapter`` protocol over canonical records.

Service tests that need a whole CRM (deals to close, accounts to hold, invoices to receive)
run against this instead of a CRM sandbox: no HTTP, no mapping, one run instead of one per
CRM. What each real adapter does with its wire protocol is tested in ``tests/crm/`` and
``tests/sandboxes/``; the user journeys in ``tests/e2e`` still run both for real.

The sample org comes from the Salesforce sandbox, read once per process through the real
Salesforce adapter, so the fake starts with exactly the canonical deals and accounts the
end-to-end tests start with. Writes dealbridge makes do not count as changes (as the real
adapters leave out the integration user's own edits); a person's edits through
``FakeCrmDriver`` do.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connector.crm.base import (
    AccountDirectory,
    AccountUpdate,
    Changes,
    CrmAccount,
    CrmDeal,
    CrmNotFound,
    CrmUnavailable,
    DealUpdate,
    InvoiceRecord,
    Money,
    PriceEntryRecord,
    ProductRecord,
    PushBatch,
    PushNotice,
    PushRejected,
    WriteResult,
)
from connector.domain.deal import Address
from connector.domain.money import from_minor_units, to_minor_units

PUSH_TOKEN_HEADER = "X-Fake-Crm-Token"


@dataclass
class SampleOrg:
    """The sample org in canonical records, as the Salesforce adapter reads it."""

    refs: dict[str, str]
    deals: dict[str, CrmDeal]
    accounts: dict[str, CrmAccount]
    contacts: dict[str, dict[str, Any]]  # contact id -> {"name", "email", "account_id"}


@dataclass
class _Deal:
    deal: CrmDeal
    writeback: dict[str, Any] = field(default_factory=dict)
    version: int = 0


@dataclass
class _Account:
    account: CrmAccount
    writeback: dict[str, Any] = field(default_factory=dict)
    version: int = 0


class FakeCrm:
    """``CrmAdapter`` in memory. ``down`` makes every call fail as an outage does."""

    kind = "fake"
    batch_size = 200

    def __init__(self, org: SampleOrg, clock: Callable[[], datetime], push_token: str) -> None:
        self.clock = clock
        self.push_token = push_token
        self.refs = dict(org.refs)
        self.contacts = copy.deepcopy(org.contacts)
        self.contact_versions: dict[str, int] = {}
        self._seq = itertools.count(1)
        self.deals = {i: _Deal(copy.deepcopy(d)) for i, d in org.deals.items()}
        self.accounts = {i: _Account(a) for i, a in org.accounts.items()}
        self.invoices: dict[str, InvoiceRecord] = {}
        self.products: dict[str, ProductRecord] = {}
        self.price_entries: dict[str, PriceEntryRecord] = {}
        self.down = False
        self.pending_pushes: list[PushNotice] = []
        self.calls: list[str] = []
        self._lock = threading.RLock()

    # -- helpers -----------------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise CrmUnavailable("the fake CRM is down")

    def touch_deal(self, deal_id: str) -> None:
        """A person changed the deal: it is a change for the next poll, and pushed."""
        self.deals[deal_id].version = next(self._seq)
        if self.deals[deal_id].deal.closed:
            self.pending_pushes.append(PushNotice("deal", deal_id, f"push-{next(self._seq)}"))

    def touch_account(self, account_id: str) -> None:
        self.accounts[account_id].version = next(self._seq)
        self.pending_pushes.append(PushNotice("account", account_id, f"push-{next(self._seq)}"))

    def touch_contact(self, contact_id: str) -> None:
        self.contact_versions[contact_id] = next(self._seq)
        self.pending_pushes.append(PushNotice("contact", contact_id, f"push-{next(self._seq)}"))

    # -- reads -------------------------------------------------------------------------------

    def _changes(self, versions: Mapping[str, int], cursor: str | None) -> Changes:
        after = int(cursor) if cursor else -1
        ids = [key for key, version in versions.items() if version > after]
        newest = max([after, *versions.values()]) if versions else after
        return Changes(
            ids=ids,
            cursor=str(max(newest, 0)),
            versions={key: str(versions[key]) for key in ids},
        )

    def changed_deals(self, cursor: str | None) -> Changes:
        with self._lock:
            self._call("changed_deals")
            closed = {i: d.version for i, d in self.deals.items() if d.deal.closed}
            return self._changes(closed, cursor)

    def changed_unclosed_deals(self, cursor: str | None) -> Changes:
        with self._lock:
            self._call("changed_unclosed_deals")
            unclosed = {i: d.version for i, d in self.deals.items() if not d.deal.closed}
            return self._changes(unclosed, cursor)

    def changed_contact_accounts(self, cursor: str | None) -> Changes:
        """The accounts of contacts edited through the driver (their ``account_id``)."""
        with self._lock:
            self._call("changed_contact_accounts")
            by_account: dict[str, int] = {}
            for contact_id, version in self.contact_versions.items():
                account_id = self.contacts[contact_id].get("account_id")
                if account_id:
                    by_account[account_id] = max(version, by_account.get(account_id, -1))
            return self._changes(by_account, cursor)

    def accounts_of_contact(self, contact_id: str) -> list[str]:
        with self._lock:
            self._call("accounts_of_contact")
            account_id = self.contacts.get(contact_id, {}).get("account_id")
            return [account_id] if account_id else []

    def get_deal(self, deal_id: str) -> CrmDeal:
        with self._lock:
            self._call("get_deal")
            if deal_id not in self.deals:
                raise CrmNotFound(f"no deal {deal_id}")
            return copy.deepcopy(self.deals[deal_id].deal)

    def changed_accounts(self, cursor: str | None) -> Changes:
        with self._lock:
            self._call("changed_accounts")
            return self._changes({i: a.version for i, a in self.accounts.items()}, cursor)

    def get_account(self, account_id: str) -> CrmAccount:
        with self._lock:
            self._call("get_account")
            if account_id not in self.accounts:
                raise CrmNotFound(f"no account {account_id}")
            return self.accounts[account_id].account

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        with self._lock:
            self._call("get_accounts")
            return {i: self.accounts[i].account for i in account_ids if i in self.accounts}

    def find_accounts_by_contact_email(self, email: str) -> list[str]:
        with self._lock:
            self._call("find_accounts_by_contact_email")
            wanted = email.casefold()
            return sorted(
                {
                    c["account_id"]
                    for c in self.contacts.values()
                    if str(c.get("email") or "").casefold() == wanted and c.get("account_id")
                }
            )

    def account_directory(self) -> AccountDirectory:
        with self._lock:
            self._call("account_directory")
            by_email: dict[str, list[str]] = {}
            for contact in self.contacts.values():
                if contact.get("email") and contact.get("account_id"):
                    ids = by_email.setdefault(str(contact["email"]).casefold(), [])
                    if contact["account_id"] not in ids:
                        ids.append(contact["account_id"])
            by_name: dict[str, list[str]] = {}
            for account_id, acc in self.accounts.items():
                by_name.setdefault(acc.account.name.casefold(), []).append(account_id)
            return AccountDirectory(
                ids=frozenset(self.accounts),
                by_email=by_email,
                by_name=by_name,
                by_stripe_customer={
                    a.account.stripe_customer_id: i
                    for i, a in self.accounts.items()
                    if a.account.stripe_customer_id
                },
            )

    def record_url(self, kind: str, record_id: str) -> str | None:
        return f"https://fake-crm.example/{kind}/{record_id}"

    def check_schema(self) -> list[str]:
        return []

    # -- writes ------------------------------------------------------------------------------

    def update_deal(self, deal_id: str, update: DealUpdate) -> None:
        with self._lock:
            self._call("update_deal")
            if deal_id not in self.deals:
                raise CrmNotFound(f"no deal {deal_id}")
            self.deals[deal_id].writeback.update(update)

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        with self._lock:
            self._call("update_accounts")
            results = []
            for account_id, update in updates:
                entry = self.accounts.get(account_id)
                if entry is None:
                    results.append(WriteResult(account_id, False, error="no such account"))
                    continue
                values = dict(update)
                entry.writeback.update(values)
                direct = {
                    k: values[k]
                    for k in ("credit_hold", "credit_hold_source", "stripe_customer_id")
                    if k in values
                }
                if direct:
                    entry.account = dataclasses.replace(entry.account, **direct)
                results.append(WriteResult(account_id, True, crm_id=account_id))
            return results

    def upsert_invoices(self, records: Sequence[InvoiceRecord]) -> list[WriteResult]:
        with self._lock:
            self._call("upsert_invoices")
            for record in records:
                self.invoices[record.stripe_invoice_id] = record
            return [
                WriteResult(r.stripe_invoice_id, True, crm_id=r.stripe_invoice_id) for r in records
            ]

    def upsert_products(self, products: Sequence[ProductRecord]) -> list[WriteResult]:
        with self._lock:
            self._call("upsert_products")
            for product in products:
                self.products[product.stripe_product_id] = product
            return [
                WriteResult(p.stripe_product_id, True, crm_id=p.stripe_product_id) for p in products
            ]

    def upsert_price_entries(self, entries: Sequence[PriceEntryRecord]) -> list[WriteResult]:
        with self._lock:
            self._call("upsert_price_entries")
            results = []
            for entry in entries:
                if entry.stripe_product_id not in self.products:
                    results.append(
                        WriteResult(entry.stripe_price_id, False, error="no such product")
                    )
                    continue
                self.price_entries[entry.stripe_price_id] = entry
                results.append(
                    WriteResult(entry.stripe_price_id, True, crm_id=entry.stripe_price_id)
                )
            return results

    def create_account(
        self,
        name: str,
        email: str | None,
        address: Address | None,
        *,
        stripe_customer_id: str | None = None,
    ) -> str:
        with self._lock:
            self._call("create_account")
            account_id = f"fake-account-{next(self._seq)}"
            self.accounts[account_id] = _Account(
                CrmAccount(
                    id=account_id,
                    name=name,
                    address=address,
                    credit_hold=False,
                    credit_limit=None,
                    credit_hold_source=None,
                    stripe_customer_id=stripe_customer_id,
                )
            )
            if stripe_customer_id:
                self.accounts[account_id].writeback["stripe_customer_id"] = stripe_customer_id
            if email:
                self.contacts[f"fake-contact-{next(self._seq)}"] = {
                    "name": name,
                    "email": email,
                    "account_id": account_id,
                }
            return account_id

    # -- pushes ------------------------------------------------------------------------------

    def parse_push(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> PushBatch:
        token = headers.get(PUSH_TOKEN_HEADER) or ""
        if not hmac.compare_digest(token.encode(), self.push_token.encode()):
            raise PushRejected(401, "bad token")
        try:
            items = json.loads(body)
            notices = [PushNotice(i["kind"], i["record_id"], i["event_id"]) for i in items]
        except (ValueError, KeyError, TypeError) as error:
            raise PushRejected(400, f"bad push: {error}") from error
        return PushBatch(notices, b"ok", "text/plain")


def _major(money: Money | None) -> Decimal | None:
    return None if money is None else from_minor_units(money.amount, money.currency)


class FakeCrmDriver:
    """What scenarios do to and read from the fake CRM, in canonical names (the same
    interface as ``tests/e2e/crm_driver.py``'s drivers)."""

    kind = "fake"

    def __init__(self, crm: FakeCrm, push: Callable[[bytes, str], int]) -> None:
        self.crm = crm
        self._push = push

    def ref(self, name: str) -> str:
        return self.crm.refs[name]

    def deal(self, ref: str) -> dict[str, Any]:
        wb = self.crm.deals[self.ref(ref)].writeback
        keys = ("plan_status", "plan_summary", "plan_url", "subscription_id", "subscription_status")
        return {k: wb.get(k) for k in keys}

    def account(self, ref: str) -> dict[str, Any]:
        entry = self.crm.accounts[self.ref(ref)]
        acc = entry.account
        out: dict[str, Any] = {
            "name": acc.name,
            "credit_hold": acc.credit_hold,
            "credit_limit": _major(acc.credit_limit),
            "credit_hold_source": acc.credit_hold_source,
            "stripe_customer_id": acc.stripe_customer_id,
        }
        # Every write-back field, None until dealbridge writes it (as an empty CRM field reads).
        for key in AccountUpdate.__annotations__:
            if key not in out:
                value = entry.writeback.get(key)
                out[key] = _major(value) if isinstance(value, Money) else value
        return out

    def invoices(self) -> list[dict[str, Any]]:
        out = []
        for record in self.crm.invoices.values():
            values = dataclasses.asdict(record)
            for key in ("amount_due", "amount_paid", "amount_remaining", "amount_credited"):
                values[key] = from_minor_units(values[key], record.currency)
            values["account"] = values.pop("account_id")
            values["deal"] = values.pop("deal_id")
            out.append(values)
        return out

    def accounts(self) -> list[dict[str, Any]]:
        return [
            {"id": i, "name": a.account.name, "stripe_customer_id": a.account.stripe_customer_id}
            for i, a in self.crm.accounts.items()
        ]

    def products(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(p) for p in self.crm.products.values()]

    def price_entries(self) -> list[dict[str, Any]]:
        return [
            {
                "stripe_price_id": e.stripe_price_id,
                "stripe_product_id": e.stripe_product_id,
                "unit_price": (
                    None if e.unit_amount is None else from_minor_units(e.unit_amount, e.currency)
                ),
                "currency": e.currency,
                "active": e.active,
            }
            for e in self.crm.price_entries.values()
        ]

    def _set_deal(self, ref: str, canonical: Mapping[str, Any]) -> None:
        with self.crm._lock:
            entry = self.crm.deals[self.ref(ref)]
            data = copy.deepcopy(entry.deal.data)
            closed = entry.deal.closed
            for key, value in canonical.items():
                if key == "closed":
                    closed = bool(value)
                elif key == "billing_contact":
                    contact = self.crm.contacts[self.ref(value)] if value else None
                    data["billing_contact"] = (
                        {"name": contact["name"], "email": contact["email"]} if contact else None
                    )
                else:
                    data[key] = value.isoformat() if isinstance(value, date) else value
            entry.deal = dataclasses.replace(
                entry.deal, closed=closed, data=data, modified=self.crm.clock()
            )
            self.crm.touch_deal(entry.deal.id)

    def update_deal(self, ref: str, **canonical: Any) -> None:
        self._set_deal(ref, canonical)

    def force_deal_values(self, ref: str, **canonical: Any) -> None:
        self._set_deal(ref, canonical)

    def update_line(self, deal_ref: str, index: int, **canonical: Any) -> None:
        with self.crm._lock:
            entry = self.crm.deals[self.ref(deal_ref)]
            data = copy.deepcopy(entry.deal.data)
            line = dict(canonical)
            if "unit_price" in line:  # the CRM's decimal price, as the adapters read it
                line["unit_amount"] = to_minor_units(line.pop("unit_price"), data["currency"])
            data["line_items"][index].update(line)
            entry.deal = dataclasses.replace(entry.deal, data=data, modified=self.crm.clock())
            self.crm.touch_deal(entry.deal.id)

    def set_credit(
        self, account_ref: str, *, hold: bool | None = None, limit: Decimal | None = None
    ) -> None:
        with self.crm._lock:
            entry = self.crm.accounts[self.ref(account_ref)]
            acc = entry.account
            if hold is not None:
                acc = dataclasses.replace(
                    acc, credit_hold=hold, credit_hold_source="person" if hold else None
                )
            if limit is not None:
                currency = acc.credit_limit.currency if acc.credit_limit else "usd"
                acc = dataclasses.replace(
                    acc, credit_limit=Money(int(Decimal(limit) * 100), currency)
                )
            entry.account = dataclasses.replace(acc, modified=datetime.now(UTC))
            self.crm.touch_account(acc.id)

    def update_contact(self, ref: str, **canonical: Any) -> None:
        """``email``/``name``; deals naming the contact as billing contact read the new
        values (as a CRM reads the contact behind the lookup), without being modified."""
        with self.crm._lock:
            contact_id = self.ref(ref)
            contact = self.crm.contacts[contact_id]
            before = {"name": contact["name"], "email": contact["email"]}
            contact.update({k: canonical[k] for k in ("name", "email") if k in canonical})
            after = {"name": contact["name"], "email": contact["email"]}
            for entry in self.crm.deals.values():
                if entry.deal.data.get("billing_contact") == before:
                    data = {**copy.deepcopy(entry.deal.data), "billing_contact": dict(after)}
                    entry.deal = dataclasses.replace(entry.deal, data=data)
            self.crm.touch_contact(contact_id)

    def update_account(self, ref: str, **canonical: Any) -> None:
        """``name`` and the address parts; the account's deals read them too."""
        with self.crm._lock:
            entry = self.crm.accounts[self.ref(ref)]
            parts = {"street": "line1", "city": "city", "state": "state",
                     "postal_code": "postal_code", "country": "country"}  # fmt: skip
            address = dataclasses.replace(
                entry.account.address or Address(),
                **{parts[k]: v for k, v in canonical.items() if k in parts},
            )
            name = canonical.get("name", entry.account.name)
            entry.account = dataclasses.replace(entry.account, name=name, address=address)
            for deal in self.crm.deals.values():
                account = deal.deal.data.get("account")
                if isinstance(account, dict) and account.get("id") == entry.account.id:
                    data = copy.deepcopy(deal.deal.data)
                    data["account"]["name"] = name
                    data["account"]["address"] = {
                        **(account.get("address") or {}),
                        **{parts[k]: v for k, v in canonical.items() if k in parts},
                    }
                    deal.deal = dataclasses.replace(deal.deal, data=data)
            self.crm.touch_account(entry.account.id)

    def set_down(self, down: bool) -> None:
        self.crm.down = down

    def deliver_pushes(self) -> int:
        with self.crm._lock:
            notices, self.crm.pending_pushes = self.crm.pending_pushes, []
        if not notices:
            return 0
        body = json.dumps([dataclasses.asdict(n) for n in notices]).encode()
        self._push(body, self.crm.push_token)
        return len(notices)

    def expire_sessions(self) -> None:
        """The fake keeps no sessions."""

    def logins(self) -> int:
        return 0
