"""Salesforce behind the CrmAdapter protocol, through simple-salesforce and the mapping.

Every call goes through ``Salesforce.restful``/``query``: simple-salesforce bounds its
re-login there (the per-object ``sf.Account.get`` path does not), and we classify every
failure into the protocol's typed errors so the outbox knows what to retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import requests
import simplejson
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from connector.config import Config
from connector.crm.base import (
    AccountDirectory,
    AccountUpdate,
    Changes,
    CrmAccount,
    CrmAuthError,
    CrmDeal,
    CrmError,
    CrmNotFound,
    CrmRejected,
    CrmUnavailable,
    DealUpdate,
    InvoiceRecord,
    Money,
    PriceEntryRecord,
    ProductRecord,
    PushBatch,
    WriteResult,
)
from connector.crm.field_needs import NEEDS
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.crm.salesforce import outbound, soql
from connector.crm.salesforce.bulk import BulkIngest, Sleeper
from connector.domain.deal import Address
from connector.domain.money import from_minor_units, to_field_scale, to_minor_units
from connector.mappings import CrmMapping
from connector.secrets import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors Salesforce itself says are worth retrying later.
RETRYABLE_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVER_UNAVAILABLE",
        "TXN_SECURITY_METERING_ERROR",
        "QUERY_TIMEOUT",
    }
)
COLLECTION_LIMIT = 200
#: Writes of more records than this go through Bulk API 2.0 (one job: six calls) instead
#: of sObject Collections (one call per 200).
BULK_THRESHOLD = 2000
#: The External ID on PricebookEntry shipped in mappings/salesforce (SFDX metadata).
PRICE_ID_FIELD = "Stripe_Price_Id__c"


def _error_code(exc: SalesforceError) -> tuple[str | None, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return content[0].get("errorCode"), str(content[0].get("message", ""))
    if isinstance(content, Mapping):
        return content.get("errorCode") or content.get("error"), str(
            content.get("message") or content.get("error_description") or ""
        )
    return None, str(content)[:300]


def classify(exc: Exception) -> CrmError:
    """Map simple-salesforce and transport failures to the protocol's typed errors."""
    if isinstance(exc, CrmError):
        return exc
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return CrmUnavailable(f"Salesforce unreachable: {type(exc).__name__}")
    if isinstance(exc, SalesforceAuthenticationFailed):
        # ``exc.message`` is the library's unformatted template ("... {content}"): use the
        # code and message Salesforce sent.
        code = getattr(exc, "code", None)
        detail = str(getattr(exc, "auth_message", "") or "").strip()[:300]
        said = ": ".join(str(part) for part in (code, detail) if part) or "no reason given"
        return CrmAuthError(
            f"Salesforce login failed ({said}); check crm.salesforce.login_url and the credentials"
        )
    if isinstance(exc, SalesforceError):
        code, message = _error_code(exc)
        text = f"{code}: {message}" if code else message
        if code in RETRYABLE_CODES or exc.status >= 500:
            return CrmUnavailable(f"Salesforce: {text}")
        if isinstance(exc, SalesforceExpiredSession):
            return CrmAuthError(f"Salesforce session could not be renewed: {text}")
        if isinstance(exc, SalesforceResourceNotFound):
            return CrmNotFound(f"Salesforce: {text}")
        if isinstance(exc, SalesforceMalformedRequest):
            return CrmRejected(f"Salesforce rejected the request: {text}")
        return CrmRejected(f"Salesforce refused the request ({exc.status}): {text}")
    raise exc


def relationship_path(path: str) -> str:
    """``Billing_Contact__c`` -> ``Billing_Contact__r``; ``AccountId`` -> ``Account``."""
    if path.endswith("__c"):
        return path[:-3] + "__r"
    if path.endswith("Id"):
        return path[:-2]
    return path


def dig(record: Mapping[str, Any] | None, path: str | None) -> Any:
    """Read ``Account.Owner.Name`` from a SOQL record with nested parent objects.

    An unmapped (None) path reads as None, so optional mapping keys need no special case.
    """
    if path is None:
        return None
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _charging(record: Mapping[str, Any], f: Mapping[str, Any], currency: str) -> dict[str, Any]:
    """Payment collection, trial days and the deal discount (a Percent, kept as text, never
    a float; or a Currency amount off the contract, as minor units of the deal's currency),
    for the mappings that name them."""
    data: dict[str, Any] = {}
    if f.get("payment_collection"):
        data["payment_collection"] = dig(record, f["payment_collection"])
    if f.get("trial_days"):
        data["trial_days"] = _as_number(dig(record, f["trial_days"]))
    if f.get("discount_percent"):
        discount = dig(record, f["discount_percent"])
        if isinstance(discount, Decimal | int):
            discount = str(discount)
        data["discount_percent"] = discount
    if f.get("discount_amount"):
        amount = dig(record, f["discount_amount"])
        try:
            data["discount_amount"] = None if amount is None else to_minor_units(amount, currency)
        except (ValueError, TypeError, ArithmeticError):
            data["discount_amount"] = str(amount)  # the domain names it to the rep
    return data


def _as_number(value: Any) -> Any:
    """Whole Decimals become ints (Quantity 2.0 -> 2); anything else is left for validation."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _iso(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("+0000", "+00:00").replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SalesforceCredentials:
    username: str | None
    password: Secret | None
    security_token: Secret | None
    client_id: str | None
    client_secret: Secret | None
    outbound_token: Secret | None


class SalesforceAdapter:
    kind = "salesforce"
    batch_size = COLLECTION_LIMIT

    def __init__(
        self,
        mapping: CrmMapping,
        connect: Callable[[], Salesforce],
        *,
        lightning_url: str | None = None,
        instance_url: str | None = None,
        organization_id: str | None = None,
        outbound_token: Secret | None = None,
        closed_stage: str | None = None,
        bulk_threshold: int = BULK_THRESHOLD,
        sleeper: Sleeper = time.sleep,
    ) -> None:
        self.mapping = mapping
        self.bulk_threshold = bulk_threshold
        self.bulk = BulkIngest(self._call, sleeper=sleeper)
        self._connect = connect
        self._sf: Salesforce | None = None
        self._lightning_url = lightning_url.rstrip("/") if lightning_url else None
        # A plain-http instance (a local sandbox) is linked as it is served, not as https.
        plain = instance_url is not None and instance_url.startswith("http://")
        self._plain_instance_url = instance_url.rstrip("/") if plain and instance_url else None
        self._organization_id = organization_id
        self._outbound_token = outbound_token
        closed = mapping.deal["closed_when"]
        self._closed_field: str = closed["field"]
        self._closed_value: Any = closed_stage if closed_stage is not None else closed["equals"]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: Config, mapping: CrmMapping) -> SalesforceAdapter:
        section = config.section("crm")["salesforce"]
        secrets = config.secrets
        version = section["api_version"]
        instance_url = section["instance_url"]
        login_url: str = section["login_url"]

        def connect() -> Salesforce:
            session: requests.Session
            if instance_url and instance_url.startswith("http://"):
                # A local sandbox: simple-salesforce only speaks https, so rewrite.
                session = HttpsRewriteSession(instance_url)
            else:
                session = requests.Session()
            domain = login_url.removeprefix("https://").removesuffix(".salesforce.com")
            kwargs: dict[str, Any] = {
                "version": version,
                "session": session,
                "domain": domain,
                "parse_float": Decimal,
            }
            if section["auth_flow"] == "client_credentials":
                kwargs.update(
                    consumer_key=secrets.salesforce_client_id,
                    consumer_secret=_reveal(secrets.salesforce_client_secret),
                )
            elif secrets.salesforce_client_id:
                kwargs.update(
                    username=secrets.salesforce_username,
                    password=_reveal(secrets.salesforce_password)
                    + _reveal(secrets.salesforce_security_token),
                    consumer_key=secrets.salesforce_client_id,
                    consumer_secret=_reveal(secrets.salesforce_client_secret),
                )
            else:
                kwargs.update(
                    username=secrets.salesforce_username,
                    password=_reveal(secrets.salesforce_password),
                    security_token=_reveal(secrets.salesforce_security_token),
                )
            return Salesforce(**kwargs)

        return cls(
            mapping,
            connect,
            lightning_url=section["lightning_url"],
            instance_url=instance_url,
            organization_id=section["organization_id"],
            outbound_token=secrets.salesforce_outbound_token,
            closed_stage=config.section("plans")["closed_stage"],
            bulk_threshold=section["bulk_threshold"],
        )

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            try:
                self._sf = self._connect()
            except Exception as exc:
                raise classify(exc) from exc
        return self._sf

    def _call(self, fn: Callable[[Salesforce], T]) -> T:
        try:
            return fn(self.sf)
        except CrmError:
            raise
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, CrmAuthError):
                self._sf = None  # next call logs in afresh
            raise error from exc

    def _query_all(self, query: str) -> Iterator[dict[str, Any]]:
        """Every record of a query, following nextRecordsUrl page by page."""
        page = self._call(lambda sf: sf.query(query))
        while True:
            yield from page["records"]
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self._query_more(page["nextRecordsUrl"])

    def _query_more(self, next_url: str) -> dict[str, Any]:
        page: dict[str, Any] = self._call(
            lambda sf: sf.query_more(next_url, identifier_is_url=True)
        )
        return page

    def _send(self, method: str, path: str, body: Any) -> Any:
        """A REST call with an exact JSON body (Decimals stay decimal, never float)."""
        data = simplejson.dumps(body, use_decimal=True, default=_json_default)
        return self._call(lambda sf: sf.restful(path, method=method, data=data))

    # ------------------------------------------------------------------ deals

    def _deal_select(self) -> list[str]:
        m = self.mapping
        fields = [v for v in m.deal_fields.values() if v]
        fields.append(self._closed_field)
        acct = relationship_path(m.deal_fields["account_id"] or "AccountId")
        for key in ("name", "street", "city", "state", "postal_code", "country"):
            path = m.account_fields.get(key)
            if path:
                fields.append(f"{acct}.{path}")
        contact = m.deal["billing_contact"]
        cname, cemail = m.contact_fields["name"], m.contact_fields["email"]
        if contact.get("lookup_field"):
            rel = relationship_path(contact["lookup_field"])
            fields += [contact["lookup_field"], f"{rel}.{cname}", f"{rel}.{cemail}"]
        if contact.get("account_fallback_field"):
            rel = relationship_path(contact["account_fallback_field"])
            fields += [f"{acct}.{rel}.{cname}", f"{acct}.{rel}.{cemail}"]
        line = m.line_item
        line_fields = ", ".join(dict.fromkeys(v for v in m.line_item_fields.values() if v))
        fields.append(f"(SELECT {line_fields} FROM {line['relationship']})")
        if contact.get("contact_role"):
            fields.append(
                f"(SELECT Role, Contact.{cname}, Contact.{cemail} FROM OpportunityContactRoles)"
            )
        return list(dict.fromkeys(fields))

    def get_deal(self, deal_id: str) -> CrmDeal:
        m = self.mapping
        query = (
            f"SELECT {', '.join(self._deal_select())} FROM {m.deal['object']} "
            f"WHERE Id = {soql.literal(deal_id)}"
        )
        records = list(self._query_all(query))
        if not records:
            raise CrmNotFound(f"Salesforce: no {m.deal['object']} with Id {deal_id}")
        return self._to_crm_deal(records[0])

    def _billing_contact(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        m = self.mapping
        cfg = m.deal["billing_contact"]
        cname, cemail = m.contact_fields["name"], m.contact_fields["email"]
        acct = relationship_path(m.deal_fields["account_id"] or "AccountId")
        candidates: list[Mapping[str, Any] | None] = []
        if cfg.get("lookup_field"):
            candidates.append(dig(record, relationship_path(cfg["lookup_field"])))
        if cfg.get("contact_role"):
            roles = (record.get("OpportunityContactRoles") or {}).get("records") or []
            for role in roles:
                if str(role.get("Role") or "").casefold() == cfg["contact_role"].casefold():
                    candidates.append(role.get("Contact"))
        if cfg.get("account_fallback_field"):
            candidates.append(
                dig(record, f"{acct}.{relationship_path(cfg['account_fallback_field'])}")
            )
        for contact in candidates:
            if contact and (contact.get(cemail) or contact.get(cname)):
                return {"name": contact.get(cname), "email": contact.get(cemail)}
        return None

    def _to_crm_deal(self, record: Mapping[str, Any]) -> CrmDeal:
        m = self.mapping
        f = m.deal_fields
        acct_rel = relationship_path(f["account_id"] or "AccountId")
        currency = (dig(record, f["currency"]) if f.get("currency") else None) or m.deal[
            "default_currency"
        ]
        currency = str(currency).lower()
        lf = m.line_item_fields
        schedule_values: Mapping[str, str] = m.line_item["pricing_schedule_values"]
        lines = []
        for item in (record.get(m.line_item["relationship"]) or {}).get("records") or []:
            raw_schedule = dig(item, lf["pricing_schedule"])
            unit_price = dig(item, lf["unit_price"])
            # A line discount stays a discount (the plan bills it as a Stripe coupon on the
            # line), never a fractional unit price Stripe could not bill.
            discount = dig(item, lf.get("discount_percent"))
            discount_percent = str(discount) if isinstance(discount, Decimal | int) else discount
            try:
                unit_amount: Any = to_minor_units(unit_price, currency)
            except (ValueError, TypeError, ArithmeticError):
                unit_amount = str(unit_price)
            lines.append(
                {
                    "product": dig(item, lf["product"]),
                    "sku": dig(item, lf["sku"]) if lf.get("sku") else None,
                    "product_id": dig(item, lf["product_id"]) if lf.get("product_id") else None,
                    "quantity": _as_number(dig(item, lf["quantity"])),
                    "unit_amount": unit_amount,
                    "pricing_schedule": schedule_values.get(str(raw_schedule), raw_schedule),
                    "discount_percent": discount_percent or None,
                }
            )
        account_id = dig(record, f["account_id"] or "AccountId")
        address = {
            key: dig(record, f"{acct_rel}.{m.account_fields[src]}")
            for key, src in (
                ("line1", "street"),
                ("city", "city"),
                ("state", "state"),
                ("postal_code", "postal_code"),
                ("country", "country"),
            )
            if m.account_fields.get(src)
        }
        start = dig(record, f["contract_start"])
        data: dict[str, Any] = {
            "id": record["Id"],
            "name": dig(record, f["name"]) if f.get("name") else None,
            "currency": currency,
            "contract_start": start.isoformat() if isinstance(start, date) else start,
            "contract_months": _as_number(dig(record, f["contract_months"])),
            "payment_terms": dig(record, f["payment_terms"]) if f.get("payment_terms") else None,
            "payment_method": dig(record, f["payment_method"]) if f.get("payment_method") else None,
            **_charging(record, f, currency),
            "billing_contact": self._billing_contact(record),
            **self._change_type(record),
            "account": {
                "id": account_id,
                "name": dig(record, f"{acct_rel}.{m.account_fields['name']}"),
                "address": address or None,
            },
            "line_items": lines,
        }
        return CrmDeal(
            id=record["Id"],
            account_id=account_id,
            closed=dig(record, self._closed_field) == self._closed_value,
            modified=_iso(dig(record, f["modified"])),
            data=data,
        )

    def _change_type(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The deal's type, and the kind of change the mapping says it is (None: new)."""
        path = self.mapping.deal_fields.get("type")
        if not path:
            return {}
        raw = dig(record, path)
        kinds: Mapping[str, str] = self.mapping.deal.get("change_types") or {}
        return {"type": raw, "change_type": kinds.get(str(raw)) if raw is not None else None}

    def changed_deals(self, cursor: str | None) -> Changes:
        return self._changed_deals(cursor, "=")

    def changed_unclosed_deals(self, cursor: str | None) -> Changes:
        return self._changed_deals(cursor, "!=")

    def _changed_deals(self, cursor: str | None, closed_test: str) -> Changes:
        m = self.mapping
        modified = m.deal_fields["modified"] or "SystemModstamp"
        where = [f"{self._closed_field} {closed_test} {soql.literal(self._closed_value)}"]
        if cursor:
            # >= not >: a record saved in the same second as the last one seen must not be
            # skipped; handling a deal twice is harmless (plans are unique per deal).
            where.append(f"{modified} >= {cursor}")
        query = (
            f"SELECT Id, {modified} FROM {m.deal['object']} WHERE {' AND '.join(where)} "
            f"ORDER BY {modified} ASC"
        )
        return self._changes(query, modified, cursor)

    def _changes(self, query: str, modified: str, cursor: str | None) -> Changes:
        ids: list[str] = []
        versions: dict[str, str] = {}
        newest = cursor
        for record in self._query_all(query):
            ids.append(record["Id"])
            stamp = _iso(record.get(modified))
            if stamp is not None:
                newest = soql.datetime_literal(stamp)
                # Salesforce keeps milliseconds; the SOQL cursor literal cannot.
                versions[record["Id"]] = stamp.isoformat(timespec="milliseconds")
        return Changes(ids=ids, cursor=newest, versions=versions)

    def changed_contact_accounts(self, cursor: str | None) -> Changes:
        """Accounts of contacts modified since ``cursor`` (Contact.AccountId, standard)."""
        obj = self.mapping.contact["object"]
        where = f" WHERE SystemModstamp >= {cursor}" if cursor else ""
        query = (
            f"SELECT Id, AccountId, SystemModstamp FROM {obj}{where} ORDER BY SystemModstamp ASC"
        )
        ids: list[str] = []
        versions: dict[str, str] = {}
        newest = cursor
        for record in self._query_all(query):
            account_id = record.get("AccountId")
            stamp = _iso(record.get("SystemModstamp"))
            if stamp is not None:
                newest = soql.datetime_literal(stamp)
            if not account_id:
                continue
            if account_id not in versions:
                ids.append(account_id)
            when = stamp.isoformat(timespec="milliseconds") if stamp is not None else ""
            versions[account_id] = f"{record['Id']}@{when}"
        return Changes(ids=ids, cursor=newest, versions=versions)

    def accounts_of_contact(self, contact_id: str) -> list[str]:
        """The contact's account (Contact.AccountId), as the contact poll reads it."""
        obj = self.mapping.contact["object"]
        query = f"SELECT AccountId FROM {obj} WHERE Id = {soql.literal(contact_id)}"
        return [r["AccountId"] for r in self._query_all(query) if r.get("AccountId")]

    # ------------------------------------------------------------------ accounts

    def changed_accounts(self, cursor: str | None) -> Changes:
        m = self.mapping
        modified = m.account_fields["modified"] or "SystemModstamp"
        where = f" WHERE {modified} >= {cursor}" if cursor else ""
        query = f"SELECT Id, {modified} FROM {m.account['object']}{where} ORDER BY {modified} ASC"
        return self._changes(query, modified, cursor)

    def get_account(self, account_id: str) -> CrmAccount:
        m = self.mapping
        records = list(
            self._query_all(f"{self._account_select()} WHERE Id = {soql.literal(account_id)}")
        )
        if not records:
            raise CrmNotFound(f"Salesforce: no {m.account['object']} with Id {account_id}")
        return self._account(records[0])

    #: Accounts read by one ``Id IN (...)`` query: about 22 characters each keeps the query
    #: URL far below Salesforce's 16,384-byte limit.
    ACCOUNTS_PER_QUERY = 200

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        """Each account asked for that exists, by the id asked with, one query per
        ``ACCOUNTS_PER_QUERY``. A 15-character id finds its 18-character record; a malformed
        id finds nothing (Salesforce would refuse the whole query over it)."""
        asked = {i[:15]: i for i in account_ids if soql.is_record_id(i)}
        wanted = sorted(asked.values())
        found: dict[str, CrmAccount] = {}
        for start in range(0, len(wanted), self.ACCOUNTS_PER_QUERY):
            ids = ", ".join(
                soql.literal(i) for i in wanted[start : start + self.ACCOUNTS_PER_QUERY]
            )
            for record in self._query_all(f"{self._account_select()} WHERE Id IN ({ids})"):
                account = self._account(record)
                if account.id[:15] in asked:
                    found[asked[account.id[:15]]] = account
        return found

    def _account_select(self) -> str:
        m = self.mapping
        fields = [v for v in m.account_fields.values() if v]
        fields.append(m.account["writeback"]["stripe_customer_id"])
        return f"SELECT {', '.join(dict.fromkeys(fields))} FROM {m.account['object']}"

    def _account(self, record: dict[str, Any]) -> CrmAccount:
        m = self.mapping
        af = m.account_fields
        stripe_field = m.account["writeback"]["stripe_customer_id"]
        limit = dig(record, af["credit_limit"] or "")
        currency = str(dig(record, af.get("currency")) or m.deal["default_currency"]).lower()
        source = dig(record, af["credit_hold_source"]) if af.get("credit_hold_source") else None
        return CrmAccount(
            id=record["Id"],
            name=dig(record, af["name"] or "Name"),
            address=Address(
                line1=dig(record, af["street"]) if af.get("street") else None,
                city=dig(record, af["city"]) if af.get("city") else None,
                state=dig(record, af["state"]) if af.get("state") else None,
                postal_code=dig(record, af["postal_code"]) if af.get("postal_code") else None,
                country=dig(record, af["country"]) if af.get("country") else None,
            ),
            credit_hold=bool(dig(record, af["credit_hold"] or "")),
            credit_limit=(
                Money(to_minor_units(Decimal(str(limit)), currency), currency)
                if limit not in (None, "")
                else None
            ),
            credit_hold_source=(
                "dealbridge"
                if str(source or "").lower() == "dealbridge"
                else ("person" if source else None)
            ),
            stripe_customer_id=record.get(stripe_field),
            modified=_iso(dig(record, af["modified"] or "SystemModstamp")),
            currency=currency,
        )

    def find_accounts_by_contact_email(self, email: str) -> list[str]:
        cemail = self.mapping.contact_fields["email"]
        query = (
            f"SELECT AccountId, {cemail} FROM {self.mapping.contact['object']} "
            f"WHERE {cemail} = {soql.literal(email)}"
        )
        wanted = email.casefold()
        return list(
            dict.fromkeys(
                r["AccountId"]
                for r in self._query_all(query)
                if r.get("AccountId") and str(r.get(cemail, "")).casefold() == wanted
            )
        )

    def account_directory(self) -> AccountDirectory:
        """Two paged queries (accounts, contacts with an email), 2,000 records a page."""
        m = self.mapping
        name_field = m.account_fields["name"] or "Name"
        stripe_field = m.account["writeback"].get("stripe_customer_id")
        fields = list(dict.fromkeys(["Id", name_field, *([stripe_field] if stripe_field else [])]))
        ids: set[str] = set()
        by_name: dict[str, dict[str, None]] = {}
        by_stripe: dict[str, str] = {}
        for r in self._query_all(f"SELECT {', '.join(fields)} FROM {m.account['object']}"):
            ids.add(r["Id"])
            if r.get(name_field):
                by_name.setdefault(str(r[name_field]).strip().casefold(), {})[r["Id"]] = None
            if stripe_field and r.get(stripe_field):
                by_stripe.setdefault(str(r[stripe_field]), r["Id"])
        cemail = m.contact_fields["email"]
        by_email: dict[str, dict[str, None]] = {}
        query = (
            f"SELECT AccountId, {cemail} FROM {m.contact['object']} "
            f"WHERE {cemail} != null AND AccountId != null"
        )
        for r in self._query_all(query):
            by_email.setdefault(str(r[cemail]).strip().casefold(), {})[r["AccountId"]] = None
        return AccountDirectory(
            ids=frozenset(ids),
            by_email={k: list(v) for k, v in by_email.items()},
            by_name={k: list(v) for k, v in by_name.items()},
            by_stripe_customer=by_stripe,
        )

    def create_account(
        self,
        name: str,
        email: str | None,
        address: Address | None,
        *,
        stripe_customer_id: str | None = None,
    ) -> str:
        """An Account (billing address, Stripe customer id) and, with ``email``, a Contact."""
        m = self.mapping
        af = m.account_fields
        body: dict[str, Any] = {af["name"] or "Name": name}
        if address is not None:
            street = "\n".join(p for p in (address.line1, address.line2) if p) or None
            for key, value in (
                ("street", street),
                ("city", address.city),
                ("state", address.state),
                ("postal_code", address.postal_code),
                ("country", address.country),
            ):
                if af.get(key) and value:
                    body[af[key] or ""] = value
        stripe_field = m.account["writeback"].get("stripe_customer_id")
        if stripe_customer_id and stripe_field:
            body[stripe_field] = stripe_customer_id
        created = self._send("POST", f"sobjects/{m.account['object']}", body)
        account_id = str(created["id"])
        if email:
            contact = {
                "LastName": name[:80],
                m.contact_fields["email"]: email,
                "AccountId": account_id,
            }
            self._send("POST", f"sobjects/{m.contact['object']}", contact)
        return account_id

    # ------------------------------------------------------------------ writes

    def _write_many(
        self,
        operation: str,
        sobject: str,
        rows: list[dict[str, Any]],
        key_column: str,
        external_id: str | None = None,
    ) -> list[WriteResult]:
        """Bulk API 2.0 above ``bulk_threshold`` rows, else sObject Collections (200 a call).
        ``rows`` name parents by external id as ``Product2.Stripe_Product_Id__c``."""
        if not rows:
            return []
        if len(rows) > self.bulk_threshold:
            return self.bulk.run(sobject, operation, rows, key_column, external_id=external_id)
        records = [{"attributes": {"type": sobject}, **_nest(row)} for row in rows]
        keys = [str(row[key_column]) for row in rows]
        if operation == "insert":
            return self._collection("POST", "composite/sobjects", records, keys)
        if operation == "update":
            return self._collection("PATCH", "composite/sobjects", records, keys)
        path = f"composite/sobjects/{sobject}/{external_id}"
        return self._collection("PATCH", path, records, keys)

    def _standard_pricebook(self) -> str:
        records = list(self._query_all("SELECT Id FROM Pricebook2 WHERE IsStandard = true"))
        if not records:
            raise CrmRejected("Salesforce: the org has no standard price book")
        return str(records[0]["Id"])

    def upsert_price_entries(self, entries: Sequence[PriceEntryRecord]) -> list[WriteResult]:
        """Stripe prices as PricebookEntry rows of the standard price book, keyed by
        ``Stripe_Price_Id__c``. Salesforce allows one entry per product and currency in a
        price book, so a second Stripe price of the same product and currency is reported
        as a failure rather than overwriting the first. Amounts never change (Stripe prices
        are immutable); an existing entry only has ``IsActive`` and ``UnitPrice`` updated."""
        product = self.mapping.product
        if not product or not product.get("external_id"):
            raise CrmRejected("the mapping has no product section with an external_id")
        ext_product = product["external_id"]
        multi_currency = bool(self.mapping.deal_fields.get("currency"))
        standard = self._standard_pricebook()
        currency_select = ", CurrencyIsoCode" if multi_currency else ""
        existing_by_price: dict[str, str] = {}
        taken: dict[tuple[str, str], str] = {}
        query = (
            f"SELECT Id, {PRICE_ID_FIELD}, Product2.{ext_product}{currency_select} "
            f"FROM PricebookEntry WHERE Pricebook2Id = {soql.literal(standard)}"
        )
        for r in self._query_all(query):
            price_id = r.get(PRICE_ID_FIELD)
            product_id = dig(r, f"Product2.{ext_product}")
            currency = str(r.get("CurrencyIsoCode") or "").lower()
            if price_id:
                existing_by_price[str(price_id).casefold()] = r["Id"]
            if product_id:
                taken[(str(product_id).casefold(), currency)] = str(price_id or r["Id"])
        outcome: dict[int, WriteResult] = {}
        updates: list[tuple[int, dict[str, Any]]] = []
        inserts: list[tuple[int, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            key = entry.stripe_price_id
            if entry.unit_amount is None:
                outcome[index] = WriteResult(
                    key=key, ok=False, error="the price has no fixed unit amount (tiered or custom)"
                )
                continue
            values = {
                PRICE_ID_FIELD: key,
                "UnitPrice": from_minor_units(entry.unit_amount, entry.currency),
                "IsActive": entry.active,
            }
            known = existing_by_price.get(key.casefold())
            if known:
                updates.append((index, {"Id": known, **values}))
                continue
            currency = entry.currency.lower() if multi_currency else ""
            slot = (entry.stripe_product_id.casefold(), currency)
            if slot in taken:
                outcome[index] = WriteResult(
                    key=key,
                    ok=False,
                    error=(
                        f"the standard price book already has a {entry.currency.upper()} price "
                        f"for product {entry.stripe_product_id} ({taken[slot]}); Salesforce "
                        "allows one entry per product and currency"
                    ),
                )
                continue
            taken[slot] = key
            row = {
                **values,
                "Pricebook2Id": standard,
                f"Product2.{ext_product}": entry.stripe_product_id,
            }
            if multi_currency:
                row["CurrencyIsoCode"] = entry.currency.upper()
            inserts.append((index, row))
        for batch, operation in ((updates, "update"), (inserts, "insert")):
            written = self._write_many(
                operation, "PricebookEntry", [row for _, row in batch], PRICE_ID_FIELD
            )
            for (index, _), result in zip(batch, written, strict=True):
                outcome[index] = result
        return [outcome[i] for i in range(len(entries))]

    def _deal_fields(self, update: DealUpdate) -> dict[str, Any]:
        writeback = self.mapping.deal["writeback"]
        return {writeback[k]: v for k, v in update.items() if writeback.get(k)}

    def update_deal(self, deal_id: str, update: DealUpdate) -> None:
        fields = self._deal_fields(update)
        if fields:
            self._send("PATCH", f"sobjects/{self.mapping.deal['object']}/{deal_id}", fields)

    @property
    def money_scale(self) -> int:
        """Decimal places of the org's Currency fields (the SFDX metadata ships 2)."""
        return int(self.mapping.options.get("money_scale", 2))

    def _money_field(self, value: Money, field: str) -> Decimal:
        return to_field_scale(value.amount, value.currency, self.money_scale, field)

    def _account_fields(self, update: AccountUpdate) -> dict[str, Any]:
        """The update as field values; ``ValueError`` when a money value does not fit its
        field's scale (refused, never rounded)."""
        writeback = self.mapping.account["writeback"]
        out: dict[str, Any] = {}
        for key, value in update.items():
            field = writeback.get(key)
            if not field:
                continue
            if key == "credit_hold_source" and value is not None:
                value = "dealbridge" if value == "dealbridge" else "Person"
            out[field] = self._money_field(value, field) if isinstance(value, Money) else value
        return out

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        obj = self.mapping.account["object"]
        refused: dict[str, WriteResult] = {}
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        for account_id, update in updates:
            try:
                rows.append({"Id": account_id, **self._account_fields(update)})
                keys.append(account_id)
            except ValueError as exc:
                refused[account_id] = WriteResult(key=account_id, ok=False, error=str(exc))
        written: list[WriteResult] = []
        if len(rows) > self.bulk_threshold:
            written = self.bulk.run(obj, "update", rows, "Id")
        elif rows:
            records = [{"attributes": {"type": obj}, **row} for row in rows]
            written = self._collection("PATCH", "composite/sobjects", records, keys)
        return _in_order([a for a, _ in updates], written, refused)

    def _invoice_fields(self, record: InvoiceRecord) -> dict[str, Any]:
        f = self.mapping.invoice_fields
        values: dict[str, Any] = {
            "account": record.account_id,
            "deal": record.deal_id,
            "name": record.number or record.stripe_invoice_id,
            "number": record.number,
            "status": record.status,
            "amount_due": self._invoice_money(record.amount_due, record.currency, "amount_due"),
            "amount_paid": self._invoice_money(record.amount_paid, record.currency, "amount_paid"),
            "amount_remaining": self._invoice_money(
                record.amount_remaining, record.currency, "amount_remaining"
            ),
            "amount_credited": self._invoice_money(
                record.amount_credited, record.currency, "amount_credited"
            ),
            "currency": record.currency.upper(),
            # The record's own currency, so its Currency fields are in the invoice's currency
            # (multi-currency orgs; the mapping names the field).
            "record_currency": record.currency.upper(),
            "issue_date": record.issue_date,
            "due_date": record.due_date,
            "paid_date": record.paid_date,
            "hosted_invoice_url": record.hosted_invoice_url,
            "invoice_pdf": record.invoice_pdf,
            "subscription_id": record.subscription_id,
            "billing_reason": record.billing_reason,
            "last_payment_error": (record.last_payment_error or None)
            and record.last_payment_error[:255],
            "stripe_customer_id": record.stripe_customer_id,
        }
        out: dict[str, Any] = {}
        for key, value in values.items():
            field = f.get(key)
            if field and not (key == "deal" and value is None):
                # A deal link set earlier is kept rather than cleared by a later write.
                out[field] = value
        return out

    def _invoice_money(self, amount: int, currency: str, key: str) -> Decimal:
        field = self.mapping.invoice_fields.get(key) or key
        return to_field_scale(amount, currency, self.money_scale, field)

    def upsert_invoices(self, records: Sequence[InvoiceRecord]) -> list[WriteResult]:
        inv = self.mapping.invoice
        refused: dict[str, WriteResult] = {}
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        for r in records:
            try:
                rows.append({inv["external_id"]: r.stripe_invoice_id, **self._invoice_fields(r)})
                keys.append(r.stripe_invoice_id)
            except ValueError as exc:
                key = r.stripe_invoice_id
                refused[key] = WriteResult(key=key, ok=False, error=str(exc))
        written: list[WriteResult] = []
        if len(rows) > self.bulk_threshold:
            written = self.bulk.run(
                inv["object"], "upsert", rows, inv["external_id"], external_id=inv["external_id"]
            )
        elif rows:
            body = [{"attributes": {"type": inv["object"]}, **row} for row in rows]
            path = f"composite/sobjects/{inv['object']}/{inv['external_id']}"
            written = self._collection("PATCH", path, body, keys)
        return _in_order([r.stripe_invoice_id for r in records], written, refused)

    def upsert_products(self, products: Sequence[ProductRecord]) -> list[WriteResult]:
        product = self.mapping.product
        if not product or not product.get("external_id"):
            raise CrmRejected("the mapping has no product section with an external_id")
        f = product["fields_"] or {}
        body = []
        for p in products:
            values = {
                "name": p.name,
                "sku": p.sku,
                "active": p.active,
                "description": p.description,
            }
            body.append(
                {
                    product["external_id"]: p.stripe_product_id,
                    **{f[k]: v for k, v in values.items() if f.get(k)},
                }
            )
        if len(body) > self.bulk_threshold:
            external_id = product["external_id"]
            return self.bulk.run(
                product["object"], "upsert", body, external_id, external_id=external_id
            )
        records = [{"attributes": {"type": product["object"]}, **row} for row in body]
        path = f"composite/sobjects/{product['object']}/{product['external_id']}"
        return self._collection("PATCH", path, records, [p.stripe_product_id for p in products])

    def _collection(
        self, method: str, path: str, records: list[dict[str, Any]], keys: list[str]
    ) -> list[WriteResult]:
        """sObject Collections, 200 records a call, each record succeeding on its own."""
        results: list[WriteResult] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start : start + COLLECTION_LIMIT]
            chunk_keys = keys[start : start + COLLECTION_LIMIT]
            answer = self._send(method, path, {"allOrNone": False, "records": chunk}) or []
            for key, item in zip(chunk_keys, answer, strict=True):
                if item.get("success"):
                    results.append(WriteResult(key=key, ok=True, crm_id=item.get("id")))
                    continue
                errors = item.get("errors") or []
                codes = [str(e["statusCode"]) for e in errors if e.get("statusCode")]
                message = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
                results.append(
                    WriteResult(
                        key=key,
                        ok=False,
                        error=message or "unknown error",
                        retryable=bool(set(codes) & RETRYABLE_CODES),
                        code=codes[0] if codes else None,
                    )
                )
        return results

    # ------------------------------------------------------------------ links, push, schema

    def record_url(self, kind: str, record_id: str) -> str | None:
        obj = {"deal": self.mapping.deal["object"], "account": self.mapping.account["object"]}.get(
            kind
        )
        if obj is None:
            return None
        if self._lightning_url:
            return f"{self._lightning_url}/lightning/r/{obj}/{record_id}/view"
        if self._plain_instance_url:
            return f"{self._plain_instance_url}/{record_id}"
        base = getattr(self._sf, "sf_instance", None)
        return f"https://{base}/{record_id}" if base else None

    def parse_push(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> PushBatch:
        return outbound.parse_outbound_message(
            body,
            token=query.get("token"),
            expected_token=self._outbound_token,
            organization_id=self._organization_id,
            deal_object=self.mapping.deal["object"],
            account_object=self.mapping.account["object"],
        )

    def _describe(self, obj: str) -> dict[str, Any]:
        result = self._call(lambda sf: sf.restful(f"sobjects/{obj}/describe"))
        if not isinstance(result, dict):
            raise CrmNotFound(f"Salesforce: no describe for {obj}")
        return result

    def check_schema(self) -> list[str]:
        """Describe each mapped object and report every mapped field it lacks."""
        m = self.mapping
        wanted: dict[str, set[str]] = {}

        def want(obj: str, path: str | None) -> None:
            if path:
                wanted.setdefault(obj, set()).add(path.split(".")[0])

        for v in m.deal_fields.values():
            want(m.deal["object"], v)
        for v in m.deal["writeback"].values():
            want(m.deal["object"], v)
        for v in m.account_fields.values():
            want(m.account["object"], v)
        for v in m.account["writeback"].values():
            want(m.account["object"], v)
        for v in m.line_item_fields.values():
            want(m.line_item["object"], v)
        for v in m.invoice_fields.values():
            want(m.invoice["object"], v)
        want(m.invoice["object"], m.invoice["external_id"])
        problems: list[str] = []
        described_fields: dict[str, dict[str, Any]] = {}
        for obj, fields in sorted(wanted.items()):
            try:
                described = self._describe(obj)
            except CrmNotFound:
                problems.append(f"{m.path}: object {obj} does not exist in this org")
                continue
            names = {f["name"] for f in described["fields"]}
            names |= {
                f["relationshipName"] for f in described["fields"] if f.get("relationshipName")
            }
            for f in described["fields"]:
                described_fields[f"{obj}.{f['name']}"] = f
            for field in sorted(fields - names):
                problems.append(
                    f"{m.path}: {obj}.{field} does not exist; deploy mappings/salesforce"
                )
        problems.extend(self._type_problems(described_fields))
        return problems

    def _type_problems(self, described: Mapping[str, dict[str, Any]]) -> list[str]:
        """Each mapped field whose type or length cannot hold what dealbridge puts there."""
        m = self.mapping
        sections: dict[str, tuple[str, Mapping[str, Any]]] = {
            "deal": (m.deal["object"], m.deal_fields),
            "deal.writeback": (m.deal["object"], m.deal["writeback"]),
            "account": (m.account["object"], m.account_fields),
            "account.writeback": (m.account["object"], m.account["writeback"]),
            "invoice": (
                m.invoice["object"],
                {**m.invoice_fields, "external_id": m.invoice["external_id"]},
            ),
        }
        problems: list[str] = []
        for (section, key), need in sorted(NEEDS.items()):
            obj, paths = sections[section]
            path = paths.get(key)
            if not path or "." in path:
                continue  # unmapped, or across a relationship (its object is checked there)
            field = described.get(f"{obj}.{path}")
            if field is None:
                continue  # reported as missing above
            sf_type = str(field.get("type", ""))
            if sf_type not in _SALESFORCE_TYPES[need.kind]:
                problems.append(
                    f"{m.path}: {section}.{key} is mapped to {obj}.{path}, a {sf_type} field; "
                    f"it must be {need.describe()}"
                )
                continue
            length = field.get("length")
            if (
                need.min_length
                and sf_type in _SALESFORCE_SIZED
                and isinstance(length, int)
                and 0 < length < need.min_length
            ):
                problems.append(
                    f"{m.path}: {section}.{key} is mapped to {obj}.{path}, {length} characters "
                    f"long; it must hold at least {need.min_length}"
                )
        return problems


#: Salesforce describe types that can hold each kind of value (``crm/field_needs.py``).
_SALESFORCE_TYPES: dict[str, frozenset[str]] = {
    "text": frozenset({"string", "textarea", "picklist"}),
    "long_text": frozenset({"textarea", "string"}),
    "money": frozenset({"currency", "double"}),
    "number": frozenset({"double", "int", "long", "currency", "percent"}),
    "date": frozenset({"date", "datetime"}),
    "boolean": frozenset({"boolean"}),
    "url": frozenset({"url", "string", "textarea"}),
}
#: Types whose ``length`` limits the text (a picklist's values are the org's own).
_SALESFORCE_SIZED = frozenset({"string", "textarea", "url"})


def _nest(row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"Product2.Ext__c": v}`` (Bulk CSV form) → ``{"Product2": {"Ext__c": v}}`` (REST)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if "." in key:
            relation, field = key.split(".", 1)
            out[relation] = {field: value}
        else:
            out[key] = value
    return out


def _reveal(secret: Secret | None) -> str:
    return secret.reveal() if secret else ""


def _in_order(
    keys: Sequence[str], written: Sequence[WriteResult], refused: Mapping[str, WriteResult]
) -> list[WriteResult]:
    """The written results and the ones refused before sending, in the order asked."""
    sent = iter(written)
    return [refused[key] if key in refused else next(sent) for key in keys]


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} for Salesforce")
