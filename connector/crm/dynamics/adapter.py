"""The Dynamics 365 / Dataverse adapter: the ``CrmAdapter`` protocol over the Web API v9.2.

Build it with ``DynamicsAdapter.from_config(config, mapping)``; tests build it directly and
inject ``session`` (a ``requests.Session``, mocked with ``responses``), ``clock`` and
``sleeper`` (fake time), and ``instance_discovery=False`` for msal.

Reads
    ``get_deal`` reads one opportunity with its currency, billing contact and account (one
    request, ``$expand``), then its opportunity products through the mapping's relationship
    (``opportunities(<id>)/product_opportunities``, following ``@odata.nextLink``), and builds
    the canonical deal JSON of ``connector.domain.deal`` from raw values, invalid or not.

Changes since a cursor
    With change tracking on the table, the first call sends ``Prefer: odata.track-changes``
    and the cursor becomes ``delta:<@odata.deltaLink>``; later calls follow that link.
    Change tracking allows no ``$filter``, so closed deals are picked client-side from the
    selected ``closed_when`` column, and ``$deletedEntity`` entries are skipped. Where change
    tracking is off, Dataverse answers ``0x80072491`` ("Entity ... isn't enabled for change
    tracking") and the adapter falls back, by itself, to ``modifiedon gt <time>`` queries with
    cursors ``modifiedon:<ISO time>``. A delta link Dataverse no longer accepts (expired after
    the organisation's ``ExpireChangeTrackingInDays``) restarts tracking: one full re-read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from connector.config import Config
from connector.crm.base import (
    AccountDirectory,
    AccountUpdate,
    Changes,
    CrmAccount,
    CrmDeal,
    CrmNotFound,
    DealUpdate,
    InvoiceRecord,
    Money,
    PriceEntryRecord,
    ProductRecord,
    PushBatch,
    WriteResult,
)
from connector.crm.dynamics.auth import Credential, TokenSource, credential_from_config
from connector.crm.dynamics.batch import BatchOperation
from connector.crm.dynamics.client import FORMATTED_VALUES, DataverseClient, DataverseRejected
from connector.crm.dynamics.contacts import ANNOTATIONS, ContactAccounts
from connector.crm.dynamics.odata import (
    guid_from_entity_url,
    is_guid,
    parse_datetime,
    quote_literal,
    record_ref,
)
from connector.crm.dynamics.push import parse_remote_execution_context
from connector.crm.dynamics.query import Shape, formatted, lookup_value, read_path
from connector.crm.dynamics.schema import check_mapping
from connector.crm.dynamics.throttle import Clock, Sleeper
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.domain.deal import Address
from connector.domain.money import from_minor_units, to_field_scale, to_minor_units
from connector.mappings import CrmMapping
from connector.secrets import Secret

__all__ = ["CHANGE_TRACKING_NOT_ENABLED", "DynamicsAdapter"]

log = logging.getLogger(__name__)

#: Dataverse's error code for "Entity {0} isn't enabled for change tracking."
CHANGE_TRACKING_NOT_ENABLED = "0x80072491"
DELTA = "delta:"
#: Dataverse's row version: it grows with every change to a row.
VERSION_COLUMN = "versionnumber"
MODIFIEDON = "modifiedon:"


class DynamicsAdapter:
    kind = "dynamics"
    #: A Dataverse ``$batch`` takes at most 1,000 operations.
    batch_size = 1000

    def __init__(
        self,
        mapping: CrmMapping,
        *,
        environment_url: str,
        tenant_id: str,
        client_id: str,
        credential: Credential,
        authority_host: str = "https://login.microsoftonline.com",
        api_version: str = "9.2",
        webhook_key: Secret | None = None,
        session: requests.Session | None = None,
        instance_discovery: bool = True,
        clock: Clock = time.monotonic,
        sleeper: Sleeper = time.sleep,
        max_attempts: int = 4,
        max_throttled_attempts: int = 5,
        backoff_base: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.mapping = mapping
        self.options: Mapping[str, Any] = mapping.options or {}
        self.environment_url = environment_url.rstrip("/")
        self.webhook_key = webhook_key
        self.tokens = TokenSource(
            environment_url=self.environment_url,
            tenant_id=tenant_id,
            client_id=client_id,
            credential=credential,
            authority_host=authority_host,
            instance_discovery=instance_discovery,
            http_client=session,
        )
        self.client = DataverseClient(
            environment_url=self.environment_url,
            tokens=self.tokens,
            api_version=api_version,
            session=session,
            clock=clock,
            sleeper=sleeper,
            max_attempts=max_attempts,
            max_throttled_attempts=max_throttled_attempts,
            backoff_base=backoff_base,
            timeout=timeout,
        )
        #: The organisation's currencies: ISO code (lowercase) -> (transactioncurrencyid,
        #: currencyprecision); read when a write needs one it does not know yet.
        self._currencies: dict[str, tuple[str, int]] | None = None
        self.contacts = ContactAccounts(
            mapping, self._records_with_lookup_tables, self.entity_set, self.navigation
        )

    @classmethod
    def from_config(cls, config: Config, mapping: CrmMapping, **overrides: Any) -> DynamicsAdapter:
        """The adapter for ``crm.dynamics`` and the ``DYNAMICS_*`` secrets.

        ``overrides`` reach the constructor (``session``, ``clock``, ``sleeper``,
        ``instance_discovery``...), for tests and the sandbox.
        """
        section = config.section("crm")["dynamics"]
        secrets = config.secrets
        missing = [k for k in ("environment_url", "tenant_id", "client_id") if not section.get(k)]
        if missing:
            raise ValueError(
                "; ".join(f"crm.dynamics.{k}: required when crm.kind is dynamics" for k in missing)
            )
        credential = credential_from_config(config)
        if credential is None:
            raise ValueError(
                "DYNAMICS_CLIENT_SECRET: not set (or set crm.dynamics.certificate_thumbprint "
                "and DYNAMICS_CERTIFICATE_KEY)"
            )
        environment_url = str(section["environment_url"])
        options: dict[str, Any] = {
            "environment_url": environment_url,
            "tenant_id": str(section["tenant_id"]),
            "client_id": str(section["client_id"]),
            "credential": credential,
            "authority_host": str(
                section.get("authority_host") or "https://login.microsoftonline.com"
            ),
            "api_version": str(section.get("api_version") or "9.2"),
            "webhook_key": secrets.dynamics_webhook_key,
        }
        if environment_url.startswith("http://"):
            # A local sandbox (`dealbridge sandbox dynamics`): msal refuses http:// authorities,
            # so Entra ID's https:// URLs and the environment's are all sent to the sandbox.
            options["session"] = HttpsRewriteSession(environment_url)
            options["instance_discovery"] = False
        options.update(overrides)
        return cls(mapping, **options)

    # ------------------------------------------------------------------ mapping helpers

    def navigation(self, entity: str, lookup: str) -> str:
        """A lookup's navigation property: ``options.navigation_properties`` or its name."""
        configured = self.options.get("navigation_properties") or {}
        per_table = configured.get(entity) if isinstance(configured, Mapping) else None
        if isinstance(per_table, Mapping) and per_table.get(lookup):
            return str(per_table[lookup])
        return lookup

    def _shape(self, entity: str) -> Shape:
        return Shape(entity, self.navigation)

    def entity_set(self, section: Mapping[str, Any]) -> str:
        configured = section.get("entity_set")
        if configured:
            return str(configured)
        table = str(section["object"])
        return table + ("es" if table.endswith("s") else "s")

    def _read_headers(self, *extra: str) -> dict[str, str]:
        page_size = int(self.options.get("page_size") or 500)
        prefer = [FORMATTED_VALUES, f"odata.maxpagesize={page_size}", *extra]
        return {"Prefer": ",".join(prefer)}

    def _records(
        self, path: str, params: Mapping[str, str] | None = None, *extra_prefer: str
    ) -> Iterator[dict[str, Any]]:
        headers = self._read_headers(*extra_prefer)
        for page in self.client.pages(path, params=params, headers=headers):
            for record in page.get("value") or []:
                if isinstance(record, dict):
                    yield record

    def _records_with_lookup_tables(
        self, path: str, params: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """As ``_records``, with the table each lookup points at (polymorphic lookups)."""
        page_size = int(self.options.get("page_size") or 500)
        headers = {"Prefer": f"{ANNOTATIONS},odata.maxpagesize={page_size}"}
        for page in self.client.pages(path, params=params, headers=headers):
            for record in page.get("value") or []:
                if isinstance(record, dict):
                    yield record

    # ------------------------------------------------------------------ deals

    def get_deal(self, deal_id: str) -> CrmDeal:
        deal = self.mapping.deal
        fields = self.mapping.deal_fields
        table = str(deal["object"])
        contact_fields = self.mapping.contact_fields
        account_section = self.mapping.account
        account_fields = self.mapping.account_fields
        billing = deal["billing_contact"]

        shape = self._shape(table)
        for key in ("id", "name", "currency", "contract_start", "contract_months"):
            if fields.get(key):
                shape.path(str(fields[key]))
        for key in (
            "payment_terms", "payment_method", "modified", "type", "payment_collection",
            "trial_days", "discount_percent", "discount_amount",
        ):  # fmt: skip
            if fields.get(key):
                shape.path(str(fields[key]))
        shape.column(str(deal["closed_when"]["field"]))
        account_lookup = str(fields["account_id"])
        shape.lookup(account_lookup)
        if billing.get("lookup_field"):
            shape.lookup(billing["lookup_field"])
            contact = shape.expand(billing["lookup_field"], str(self.mapping.contact["object"]))
            for key in ("name", "email"):
                contact.path(contact_fields[key])
        account = shape.expand(account_lookup, str(account_section["object"]))
        for key in ("id", "name", "street", "city", "state", "postal_code", "country"):
            if account_fields.get(key):
                account.path(str(account_fields[key]))
        if billing.get("account_fallback_field"):
            fallback = account.expand(billing["account_fallback_field"], "contact")
            for key in ("name", "email"):
                fallback.path(contact_fields[key])

        record = self.client.get_json(
            f"{self.entity_set(deal)}({_guid(deal_id)})",
            params=shape.params(),
            headers=self._read_headers(),
        )
        data = self._deal_json(record, table)
        data["line_items"] = self._line_items(deal_id, data.get("currency"))
        closed_field = str(deal["closed_when"]["field"])
        return CrmDeal(
            id=str(record.get(str(fields["id"])) or deal_id),
            account_id=_text_or_none(lookup_value(record, account_lookup)),
            closed=_equals(record.get(closed_field), deal["closed_when"]["equals"]),
            modified=parse_datetime(record.get(str(fields["modified"]))),
            data=data,
        )

    def _deal_json(self, record: Mapping[str, Any], table: str) -> dict[str, Any]:
        fields = self.mapping.deal_fields
        deal = self.mapping.deal
        billing = deal["billing_contact"]

        def value(key: str) -> Any:
            path = fields.get(key)
            return read_path(record, str(path), self.navigation, table) if path else None

        currency = value("currency")
        if currency is None:
            currency = deal.get("default_currency")
        data: dict[str, Any] = {
            "id": value("id"),
            "name": value("name"),
            "currency": currency.lower() if isinstance(currency, str) else currency,
            "contract_start": _date_only(value("contract_start")),
            "contract_months": value("contract_months"),
            "payment_terms": self._text(record, fields.get("payment_terms")),
            "payment_method": self._text(record, fields.get("payment_method")),
            **self._charging(record, table, currency),
            **self._change_type(record, fields.get("type")),
            "billing_contact": None,
            "account": None,
            "line_items": [],
        }
        contact = None
        if billing.get("lookup_field"):
            contact = record.get(self.navigation(table, billing["lookup_field"]))
        account_lookup = str(fields["account_id"])
        account = record.get(self.navigation(table, account_lookup))
        account_table = str(self.mapping.account["object"])
        if not isinstance(contact, Mapping) and isinstance(account, Mapping):
            fallback = billing.get("account_fallback_field")
            if fallback:
                contact = account.get(self.navigation(account_table, fallback))
        if isinstance(contact, Mapping):
            contact_fields = self.mapping.contact_fields
            data["billing_contact"] = {
                "name": read_path(contact, contact_fields["name"], self.navigation, "contact"),
                "email": read_path(contact, contact_fields["email"], self.navigation, "contact"),
            }
        if isinstance(account, Mapping):
            account_fields = self.mapping.account_fields
            nav = self.navigation
            data["account"] = {
                "id": read_path(account, str(account_fields["id"]), nav, account_table),
                "name": read_path(account, str(account_fields["name"]), nav, account_table),
                "address": _address_json(self._address(account, account_table)),
            }
        return data

    def _charging(self, record: Mapping[str, Any], table: str, currency: Any) -> dict[str, Any]:
        """Payment collection (a choice's label), trial days and the deal discount (a percent,
        or a money column's amount off the contract as minor units of the deal's currency),
        for the mappings that name them (an older mapping without them bills as before)."""
        fields = self.mapping.deal_fields
        data: dict[str, Any] = {}
        if fields.get("payment_collection"):
            data["payment_collection"] = self._text(record, fields["payment_collection"])
        for key in ("trial_days", "discount_percent"):
            if fields.get(key):
                data[key] = _json_number(
                    read_path(record, str(fields[key]), self.navigation, table)
                )
        if fields.get("discount_amount"):
            amount = read_path(record, str(fields["discount_amount"]), self.navigation, table)
            data["discount_amount"] = _minor_units(
                amount, currency.lower() if isinstance(currency, str) else currency
            )
        return data

    def _change_type(self, record: Mapping[str, Any], column: str | None) -> dict[str, Any]:
        """The deal type's label, and the kind of change the mapping says it is."""
        if not column:
            return {}
        raw = self._text(record, column)
        kinds: Mapping[str, str] = self.mapping.deal.get("change_types") or {}
        return {"type": raw, "change_type": kinds.get(str(raw)) if raw is not None else None}

    def _text(self, record: Mapping[str, Any], column: str | None) -> Any:
        """A text field as a person reads it: a choice's label (several choices come as
        ``"ACH; Credit Card"``), else the raw value."""
        if not column:
            return None
        label = formatted(record, column)
        return label if label is not None else record.get(column)

    def _line_items(self, deal_id: str, currency: Any) -> list[dict[str, Any]]:
        section = self.mapping.line_item
        fields = self.mapping.line_item_fields
        table = str(section["object"])
        shape = self._shape(table)
        for key in (
            "product", "sku", "quantity", "unit_price", "pricing_schedule", "discount_amount",
        ):  # fmt: skip
            if fields.get(key):
                shape.path(str(fields[key]))
        product_lookup = fields.get("product_id")
        if product_lookup:
            shape.lookup(str(product_lookup))
        write_in = self.options.get("write_in_product_field")
        if write_in:
            shape.column(str(write_in))
        path = f"{self.entity_set(self.mapping.deal)}({_guid(deal_id)})/{section['relationship']}"
        items: list[dict[str, Any]] = []
        for record in self._records(path, shape.params()):

            def value(key: str, record: Mapping[str, Any] = record) -> Any:
                path = fields.get(key)
                return read_path(record, str(path), self.navigation, table) if path else None

            product = value("product")
            if product is None and write_in:
                product = record.get(str(write_in))
            items.append(
                {
                    "product": product,
                    "sku": value("sku"),
                    "quantity": _json_number(value("quantity")),
                    "unit_amount": _minor_units(value("unit_price"), currency),
                    # An amount off the whole line (manualdiscountamount), in minor units.
                    "discount_amount": _minor_units(value("discount_amount"), currency),
                    "pricing_schedule": self._schedule(record, fields.get("pricing_schedule")),
                    "product_id": _text_or_none(lookup_value(record, str(product_lookup)))
                    if product_lookup
                    else None,
                }
            )
        return items

    def _schedule(self, record: Mapping[str, Any], column: str | None) -> Any:
        """A choice value through ``pricing_schedule_values``: by value, then by label."""
        if not column:
            return None
        raw = record.get(column)
        if raw is None:
            return None
        values: Mapping[str, str] = self.mapping.line_item["pricing_schedule_values"]
        key = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if key in values:
            return values[key]
        label = formatted(record, column)
        if label is not None and label in values:
            return values[label]
        return label if label is not None else raw

    # ------------------------------------------------------------------ accounts

    def _address(self, record: Mapping[str, Any], table: str) -> Address:
        fields = self.mapping.account_fields

        def value(key: str) -> str | None:
            path = fields.get(key)
            raw = read_path(record, str(path), self.navigation, table) if path else None
            return raw if isinstance(raw, str) and raw.strip() else None

        return Address(
            line1=value("street"),
            city=value("city"),
            state=value("state"),
            postal_code=value("postal_code"),
            country=value("country"),
        )

    def get_account(self, account_id: str) -> CrmAccount:
        record = self.client.get_json(
            f"{self.entity_set(self.mapping.account)}({_guid(account_id)})",
            params=self._account_shape().params(),
            headers=self._read_headers(),
        )
        return self._account(record, account_id)

    #: Accounts read by one ``$filter`` of ids joined by ``or``: about 50 characters each
    #: keeps the URL far below Dataverse's 32,768-character limit.
    ACCOUNTS_PER_READ = 100

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        """Each account asked for that exists, by the id asked with, one read per
        ``ACCOUNTS_PER_READ`` (and its next pages). Ids that are not GUIDs find nothing."""
        asked = {i.lower(): i for i in account_ids if is_guid(i)}
        wanted = sorted(asked)
        id_column = str(self.mapping.account_fields["id"])
        found: dict[str, CrmAccount] = {}
        for start in range(0, len(wanted), self.ACCOUNTS_PER_READ):
            chunk = wanted[start : start + self.ACCOUNTS_PER_READ]
            params = {
                **self._account_shape().params(),
                "$filter": " or ".join(f"{id_column} eq {guid}" for guid in chunk),
            }
            pages = self.client.pages(
                self.entity_set(self.mapping.account), params=params, headers=self._read_headers()
            )
            for page in pages:
                for record in page.get("value") or []:
                    record_id = str(record.get(id_column) or "").lower()
                    if record_id in asked:
                        found[asked[record_id]] = self._account(record, asked[record_id])
        return found

    def _account_shape(self) -> Shape:
        fields = self.mapping.account_fields
        shape = self._shape(str(self.mapping.account["object"]))
        for path in fields.values():
            if path:
                shape.path(str(path))
        customer_id_column = self.mapping.account["writeback"].get("stripe_customer_id")
        if customer_id_column:
            shape.path(str(customer_id_column))
        currency_path = self.options.get("account_currency")
        if currency_path:
            shape.path(str(currency_path))
        return shape

    def _account(self, record: dict[str, Any], account_id: str) -> CrmAccount:
        section = self.mapping.account
        fields = self.mapping.account_fields
        table = str(section["object"])
        customer_id_column = section["writeback"].get("stripe_customer_id")
        currency_path = self.options.get("account_currency")

        def value(path: Any) -> Any:
            return read_path(record, str(path), self.navigation, table) if path else None

        currency = value(currency_path)
        if not isinstance(currency, str):
            currency = str(self.mapping.deal.get("default_currency") or "usd")
        currency = currency.lower()
        limit = value(fields.get("credit_limit"))
        credit_limit: Money | None = None
        if limit is not None:
            try:
                credit_limit = Money(to_minor_units(limit, currency), currency)
            except (TypeError, ValueError):
                log.warning("account %s: unusable credit limit %s %s", account_id, limit, currency)
        source = self._text(record, fields.get("credit_hold_source"))
        source = source.strip().lower() if isinstance(source, str) else None
        address = self._address(record, table)
        return CrmAccount(
            id=str(value(fields["id"]) or account_id),
            name=str(value(fields["name"]) or ""),
            address=None if address == Address() else address,
            credit_hold=value(fields["credit_hold"]) is True,
            credit_limit=credit_limit,
            credit_hold_source=source if source in ("person", "dealbridge") else None,
            stripe_customer_id=_text_or_none(value(customer_id_column)),
            modified=parse_datetime(value(fields.get("modified"))),
            currency=currency,
        )

    # ------------------------------------------------------------------ changes

    def changed_deals(self, cursor: str | None) -> Changes:
        return self._deal_changes(cursor, closed=True)

    def changed_unclosed_deals(self, cursor: str | None) -> Changes:
        return self._deal_changes(cursor, closed=False)

    def _deal_changes(self, cursor: str | None, *, closed: bool) -> Changes:
        """Deals changed after ``cursor`` that are closed (won), or that are not."""
        deal = self.mapping.deal
        closed_field = str(deal["closed_when"]["field"])
        closed_value = deal["closed_when"]["equals"]
        return self._changes(
            section=deal,
            id_column=str(self.mapping.deal_fields["id"]),
            modified_column=str(self.mapping.deal_fields["modified"]),
            extra_columns=[closed_field],
            keep=lambda record: _equals(record.get(closed_field), closed_value) is closed,
            condition=f"{closed_field} {'eq' if closed else 'ne'} {_literal(closed_value)}",
            cursor=cursor,
        )

    def changed_contact_accounts(self, cursor: str | None) -> Changes:
        """Accounts whose billing contacts changed since ``cursor`` (``crm/dynamics/contacts``:
        the contact's parent account, and the accounts and deals whose billing contact lookup
        points at it); ``modifiedon`` cursors."""
        return self.contacts.changed(cursor)

    def accounts_of_contact(self, contact_id: str) -> list[str]:
        """The accounts a contact bills for now (a pushed contact change)."""
        return self.contacts.of_contact(contact_id)

    def changed_accounts(self, cursor: str | None) -> Changes:
        return self._changes(
            section=self.mapping.account,
            id_column=str(self.mapping.account_fields["id"]),
            modified_column=str(self.mapping.account_fields["modified"]),
            extra_columns=[],
            keep=lambda record: True,
            condition=None,
            cursor=cursor,
        )

    def _changes(
        self,
        *,
        section: Mapping[str, Any],
        id_column: str,
        modified_column: str,
        extra_columns: Sequence[str],
        keep: Callable[[Mapping[str, Any]], bool],
        condition: str | None,
        cursor: str | None,
    ) -> Changes:
        if cursor and cursor.startswith(MODIFIEDON):
            since = cursor[len(MODIFIEDON) :]
            return self._modified_since(section, id_column, modified_column, condition, since)
        if cursor and cursor.startswith(DELTA):
            try:
                return self._delta(cursor[len(DELTA) :], id_column, keep, cursor, tracking=False)
            except DataverseRejected as exc:
                log.warning(
                    "the stored delta link for %s was refused (%s); restarting change tracking "
                    "with a full read",
                    section["object"],
                    exc,
                )
        elif cursor:
            # A bare timestamp (older cursor format) is a modifiedon cursor.
            if parse_datetime(cursor) is not None:
                return self._modified_since(section, id_column, modified_column, condition, cursor)
            raise ValueError(f"{cursor!r} is not a Dynamics change cursor")
        columns = ",".join(dict.fromkeys([id_column, *extra_columns]))
        start = f"{self.entity_set(section)}?$select={columns}"
        try:
            return self._delta(start, id_column, keep, None, tracking=True)
        except DataverseRejected as exc:
            if exc.code != CHANGE_TRACKING_NOT_ENABLED:
                raise
            log.info(
                "change tracking is off for %s; polling modifiedon instead (%s)",
                section["object"],
                exc,
            )
            return self._modified_since(section, id_column, modified_column, condition, None)

    def _delta(
        self,
        url: str,
        id_column: str,
        keep: Callable[[Mapping[str, Any]], bool],
        cursor: str | None,
        *,
        tracking: bool,
    ) -> Changes:
        headers = self._read_headers(*(["odata.track-changes"] if tracking else []))
        ids: list[str] = []
        delta_link: str | None = None
        for page in self.client.pages(url, headers=headers):
            for record in page.get("value") or []:
                if not isinstance(record, dict):
                    continue
                if "$deletedEntity" in str(record.get("@odata.context", "")):
                    continue  # deleted records: nothing to bill
                record_id = record.get(id_column)
                if isinstance(record_id, str) and keep(record):
                    ids.append(record_id)
            if isinstance(page.get("@odata.deltaLink"), str):
                delta_link = page["@odata.deltaLink"]
        return Changes(
            ids=list(dict.fromkeys(ids)),
            cursor=f"{DELTA}{delta_link}" if delta_link else cursor,
        )

    def _modified_since(
        self,
        section: Mapping[str, Any],
        id_column: str,
        modified_column: str,
        condition: str | None,
        since: str | None,
    ) -> Changes:
        clauses = [condition] if condition else []
        if since:
            stamp = parse_datetime(since)
            if stamp is None:
                raise ValueError(f"{since!r} is not a modifiedon cursor time")
            # ge, not gt: modifiedon has whole seconds, so a row saved later in the cursor's
            # second would otherwise never be seen. Rows seen again carry the same
            # versionnumber and are not queued twice.
            clauses.append(f"{modified_column} ge {stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        params = {
            "$select": f"{id_column},{modified_column},{VERSION_COLUMN}",
            "$orderby": f"{modified_column} asc",
        }
        if clauses:
            params["$filter"] = " and ".join(clauses)
        ids: list[str] = []
        versions: dict[str, str] = {}
        latest = parse_datetime(since) if since else None
        for record in self._records(self.entity_set(section), params):
            record_id = record.get(id_column)
            if isinstance(record_id, str):
                ids.append(record_id)
                if record.get(VERSION_COLUMN) is not None:
                    versions[record_id] = str(record[VERSION_COLUMN])
            stamp = parse_datetime(record.get(modified_column))
            if stamp is not None and (latest is None or stamp > latest):
                latest = stamp
        cursor = f"{MODIFIEDON}{latest.strftime('%Y-%m-%dT%H:%M:%SZ')}" if latest else None
        return Changes(ids=list(dict.fromkeys(ids)), cursor=cursor, versions=versions)

    # ------------------------------------------------------------------ lookups and links

    def find_accounts_by_contact_email(self, email: str) -> list[str]:
        email = email.strip()
        if not email:
            return []
        contact = self.mapping.contact
        email_column = self.mapping.contact_fields["email"]
        account_table = str(self.mapping.account["object"])
        link = str(self.options.get("contact_account_field") or "parentcustomerid")
        found: list[str] = []
        params = {
            "$select": f"{self.mapping.contact_fields.get('id', 'contactid')},_{link}_value",
            "$filter": f"{email_column} eq {quote_literal(email)}",
        }
        headers = {"Prefer": 'odata.include-annotations="*"'}
        for page in self.client.pages(self.entity_set(contact), params=params, headers=headers):
            for record in page.get("value") or []:
                account_id = lookup_value(record, link)
                table = record.get(f"_{link}_value@Microsoft.Dynamics.CRM.lookuplogicalname")
                if isinstance(account_id, str) and table in (None, account_table):
                    found.append(account_id)
        fallback = self.mapping.deal["billing_contact"].get("account_fallback_field")
        if fallback:
            account_id_column = str(self.mapping.account_fields["id"])
            nav = self.navigation(account_table, fallback)
            params = {
                "$select": account_id_column,
                "$filter": f"{nav}/{email_column} eq {quote_literal(email)}",
            }
            for record in self._records(self.entity_set(self.mapping.account), params):
                if isinstance(record.get(account_id_column), str):
                    found.append(record[account_id_column])
        return list(dict.fromkeys(found))

    def account_directory(self) -> AccountDirectory:
        """Accounts (id, name, Stripe customer id) and contacts with an email, page by page
        (``odata.maxpagesize``); contacts count for the account in ``contact_account_field``."""
        account = self.mapping.account
        fields = self.mapping.account_fields
        id_column = str(fields["id"])
        name_column = str(fields["name"])
        stripe_column = account["writeback"].get("stripe_customer_id")
        select = [id_column, name_column, *([str(stripe_column)] if stripe_column else [])]
        ids: set[str] = set()
        by_name: dict[str, dict[str, None]] = {}
        by_stripe: dict[str, str] = {}
        for record in self._records(self.entity_set(account), {"$select": ",".join(select)}):
            account_id = record.get(id_column)
            if not isinstance(account_id, str):
                continue
            ids.add(account_id)
            if isinstance(record.get(name_column), str):
                key = record[name_column].strip().casefold()
                by_name.setdefault(key, {})[account_id] = None
            if stripe_column and isinstance(record.get(str(stripe_column)), str):
                by_stripe.setdefault(record[str(stripe_column)], account_id)
        email_column = self.mapping.contact_fields["email"]
        link = str(self.options.get("contact_account_field") or "parentcustomerid")
        params = {"$select": f"{email_column},_{link}_value", "$filter": f"{email_column} ne null"}
        by_email: dict[str, dict[str, None]] = {}
        for record in self._records(self.entity_set(self.mapping.contact), params):
            account_id = lookup_value(record, link)
            email = record.get(email_column)
            if isinstance(account_id, str) and account_id in ids and isinstance(email, str):
                by_email.setdefault(email.strip().casefold(), {})[account_id] = None
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
        """``POST accounts`` (name, address, Stripe customer id), then with ``email`` a
        contact whose ``contact_account_field`` points at it; returns the account GUID."""
        account = self.mapping.account
        fields = self.mapping.account_fields
        body: dict[str, Any] = {str(fields["name"]): name}
        if address is not None:
            for key, value in (
                ("street", address.line1),
                ("city", address.city),
                ("state", address.state),
                ("postal_code", address.postal_code),
                ("country", address.country),
            ):
                if fields.get(key) and value:
                    body[str(fields[key])] = value
        stripe_column = account["writeback"].get("stripe_customer_id")
        if stripe_customer_id and stripe_column:
            body[str(stripe_column)] = stripe_customer_id
        account_set = self.entity_set(account)
        response = self.client.request("POST", account_set, json_body=body)
        account_id = guid_from_entity_url(response.headers.get("OData-EntityId"))
        if account_id is None:
            raise CrmNotFound("Dataverse created the account but did not answer its id")
        if email:
            link = str(self.options.get("contact_account_field") or "parentcustomerid")
            nav = (
                f"{link}_account"
                if link == "parentcustomerid"
                else self.navigation("contact", link)
            )
            contact = {
                "lastname": name[:50],
                self.mapping.contact_fields["email"]: email,
                f"{nav}@odata.bind": record_ref(account_set, account_id),
            }
            self.client.request("POST", self.entity_set(self.mapping.contact), json_body=contact)
        return account_id

    def record_url(self, kind: str, record_id: str) -> str | None:
        tables = {"deal": self.mapping.deal["object"], "account": self.mapping.account["object"]}
        table = tables.get(kind)
        if table is None or not is_guid(record_id):
            return None
        return f"{self.environment_url}/main.aspx?etn={table}&pagetype=entityrecord&id={record_id}"

    # ------------------------------------------------------------------ writes

    def update_deal(self, deal_id: str, update: DealUpdate) -> None:
        """PATCH the opportunity's writeback columns; ``If-Match: *`` so a deleted
        opportunity is a ``CrmNotFound``, never re-created by upsert."""
        body = _writeback(self.mapping.deal["writeback"], dict(update))
        if not body:
            return
        self.client.request(
            "PATCH",
            f"{self.entity_set(self.mapping.deal)}({_guid(deal_id)})",
            json_body=body,
            headers={"If-Match": "*"},
        )

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        """Batched PATCHes of the accounts' writeback columns (``If-Match: *``).

        Money goes to Currency columns, which hold the row currency's ``currencyprecision``
        decimals (JPY 0, KWD 3 where the organisation says so); ``options.money_scale`` for a
        currency the organisation does not list. A value needing more is refused by name."""
        writeback = self.mapping.account["writeback"]
        entity_set = self.entity_set(self.mapping.account)
        planned: list[tuple[str, BatchOperation | WriteResult]] = []
        fallback = int(self.options.get("money_scale", 2))
        codes = {
            v.currency.lower() for _, u in updates for v in dict(u).values() if isinstance(v, Money)
        }
        currencies = self._record_currencies(codes) if codes else {}
        for account_id, update in updates:
            values: dict[str, Any] = {}
            try:
                for key, value in dict(update).items():
                    if isinstance(value, Money):
                        column = str(writeback.get(key) or key)
                        found = currencies.get(value.currency.lower())
                        scale = found[1] if found is not None else fallback
                        value = to_field_scale(value.amount, value.currency, scale, column)
                    values[key] = value
            except ValueError as exc:
                planned.append((account_id, _failed(account_id, str(exc))))
                continue
            body = _writeback(writeback, values)
            if not is_guid(account_id):
                planned.append((account_id, _failed(account_id, "not a Dataverse record id")))
            elif not body:
                planned.append(
                    (account_id, WriteResult(key=account_id, ok=True, crm_id=account_id))
                )
            else:
                url = self.client.url(f"{entity_set}({account_id})")
                planned.append((account_id, BatchOperation("PATCH", url, body, {"If-Match": "*"})))
        return self._run_batches(planned)

    def organisation_currencies(self, *, refresh: bool = False) -> dict[str, tuple[str, int]]:
        """The organisation's active currencies (``transactioncurrencies``; an inactive one
        cannot be given to a record): ISO code, lowercase -> (``transactioncurrencyid``,
        ``currencyprecision``). Read once, and again when ``refresh`` (a write met a code it
        did not know: an admin may have added or activated it)."""
        if self._currencies is None or refresh:
            params = {
                "$select": "transactioncurrencyid,isocurrencycode,currencyprecision",
                "$filter": "statecode eq 0",
            }
            found: dict[str, tuple[str, int]] = {}
            for row in self._records("transactioncurrencies", params):
                code, guid = row.get("isocurrencycode"), row.get("transactioncurrencyid")
                if isinstance(code, str) and isinstance(guid, str):
                    precision = row.get("currencyprecision")
                    found[code.strip().lower()] = (
                        guid,
                        int(precision) if isinstance(precision, int) else 2,
                    )
            self._currencies = found
        return self._currencies

    def _record_currencies(self, codes: set[str]) -> dict[str, tuple[str, int]]:
        """The organisation's currencies, re-read once if one of ``codes`` is not known."""
        known = self.organisation_currencies()
        if codes - set(known):
            known = self.organisation_currencies(refresh=True)
        return known

    def upsert_invoices(self, records: Sequence[InvoiceRecord]) -> list[WriteResult]:
        """Batched upserts by the Stripe invoice id alternate key:
        ``PATCH db_stripeinvoices(db_invoiceid='in_...')`` creates or updates the row; the key
        column itself stays out of the body (Dataverse sets it from the URL on create).

        With ``invoice.fields.record_currency`` mapped (``transactioncurrencyid``, which a
        table has once it has a Currency column), the row's currency is bound to the
        organisation's currency of the invoice (``transactioncurrencyid@odata.bind``) and the
        amounts are written at that currency's ``currencyprecision``; an invoice in a currency
        the organisation does not have is refused by name, never written in another one.
        Without it, the amounts go to Decimal columns at ``options.invoice_amount_scale``."""
        section = self.mapping.invoice
        fields = self.mapping.invoice_fields
        table = str(section["object"])
        key_column = str(section["external_id"])
        entity_set = self.entity_set(section)
        account_set = self.entity_set(self.mapping.account)
        deal_set = self.entity_set(self.mapping.deal)
        record_currency = fields.get("record_currency")
        currencies: dict[str, tuple[str, int]] = {}
        if record_currency and records:
            currencies = self._record_currencies({r.currency.lower() for r in records})
        planned: list[tuple[str, BatchOperation | WriteResult]] = []
        for record in records:
            key = record.stripe_invoice_id
            if not is_guid(record.account_id):
                planned.append((key, _failed(key, f"account {record.account_id!r} is not a GUID")))
                continue
            scale = int(self.options.get("invoice_amount_scale", 3))
            currency_ref: str | None = None
            if record_currency:
                found = currencies.get(record.currency.lower())
                if found is None:
                    error = (
                        f"the Dataverse organisation has no active currency "
                        f"{record.currency.upper()} (add or activate it under Settings > "
                        "Business Management > Currencies): the invoice is not written in "
                        "another currency"
                    )
                    planned.append((key, _failed(key, error)))
                    continue
                currency_ref = record_ref("transactioncurrencies", found[0])
                scale = found[1]
            try:
                amounts = {
                    name: to_field_scale(
                        amount, record.currency, scale, str(fields.get(name) or name)
                    )
                    for name, amount in (
                        ("amount_due", record.amount_due),
                        ("amount_paid", record.amount_paid),
                        ("amount_remaining", record.amount_remaining),
                        ("amount_credited", record.amount_credited),
                    )
                }
            except (TypeError, ValueError) as exc:
                planned.append((key, _failed(key, str(exc))))
                continue
            values: dict[str, Any] = {
                "name": record.number or record.stripe_invoice_id,
                "number": record.number,
                "status": record.status,
                "currency": record.currency,
                "issue_date": _iso(record.issue_date),
                "due_date": _iso(record.due_date),
                "paid_date": _iso(record.paid_date),
                "hosted_invoice_url": record.hosted_invoice_url,
                "invoice_pdf": record.invoice_pdf,
                "subscription_id": record.subscription_id,
                "billing_reason": record.billing_reason,
                "last_payment_error": record.last_payment_error,
                "stripe_customer_id": record.stripe_customer_id,
                **amounts,
            }
            body: dict[str, Any] = {
                str(fields[name]): value
                for name, value in values.items()
                if fields.get(name) and fields[name] != key_column
            }
            if record_currency and currency_ref:
                currency_nav = self.navigation(table, str(record_currency))
                body[f"{currency_nav}@odata.bind"] = currency_ref
            account_nav = self.navigation(table, str(fields["account"]))
            body[f"{account_nav}@odata.bind"] = record_ref(account_set, record.account_id)
            deal_lookup = fields.get("deal")
            if deal_lookup and record.deal_id and is_guid(record.deal_id):
                deal_nav = self.navigation(table, str(deal_lookup))
                body[f"{deal_nav}@odata.bind"] = record_ref(deal_set, record.deal_id)
            url = self.client.url(f"{entity_set}({key_column}={_key_literal(key)})")
            planned.append((key, BatchOperation("PATCH", url, body)))
        return self._run_batches(planned)

    def upsert_products(self, products: Sequence[ProductRecord]) -> list[WriteResult]:
        """Batched upserts of products by the Stripe product id alternate key.

        Dynamics needs a unit group and default unit to *create* a product; set
        ``options.product_unit_group_id`` and ``options.product_default_unit_id`` for that.
        A product without a SKU gets its Stripe product id as product number (required,
        unique in Dynamics)."""
        section = self.mapping.product
        if not section or not section.get("external_id"):
            return [
                _failed(p.stripe_product_id, "the mapping has no product section with external_id")
                for p in products
            ]
        fields: Mapping[str, str] = section.get("fields_") or {}
        key_column = str(section["external_id"])
        entity_set = self.entity_set(section)
        unit_group = self.options.get("product_unit_group_id")
        unit = self.options.get("product_default_unit_id")
        planned: list[tuple[str, BatchOperation | WriteResult]] = []
        for product in products:
            values = {
                "name": product.name,
                "sku": product.sku or product.stripe_product_id,
                "active": product.active,
                "description": product.description,
            }
            body: dict[str, Any] = {
                str(fields[name]): value
                for name, value in values.items()
                if fields.get(name) and fields[name] != key_column
            }
            if unit_group and unit:
                body["defaultuomscheduleid@odata.bind"] = record_ref(
                    "uomschedules", str(unit_group)
                )
                body["defaultuomid@odata.bind"] = record_ref("uoms", str(unit))
                body.setdefault("quantitydecimal", 0)
            key = product.stripe_product_id
            url = self.client.url(f"{entity_set}({key_column}={_key_literal(key)})")
            planned.append((key, BatchOperation("PATCH", url, body)))
        return self._run_batches(planned)

    def upsert_price_entries(self, entries: Sequence[PriceEntryRecord]) -> list[WriteResult]:
        """Stripe prices as price list items (``productpricelevel``) of the price list in
        ``options.price_list_id``, upserted by the ``db_stripepriceid`` alternate key:
        ``PATCH productpricelevels(db_stripepriceid='price_...')`` with the product bound by
        its Stripe product id key, the unit ``options.product_default_unit_id`` and the
        amount. Dynamics keeps a price list in one currency, so prices in another currency
        are reported as failures."""
        price_list = self.options.get("price_list_id")
        unit = self.options.get("product_default_unit_id")
        currency = str(self.options.get("price_list_currency") or "").lower()
        product = self.mapping.product
        planned: list[tuple[str, BatchOperation | WriteResult]] = []
        for entry in entries:
            key = entry.stripe_price_id
            if not price_list or not unit or not product:
                planned.append(
                    (key, _failed(key, "set options.price_list_id and product_default_unit_id"))
                )
                continue
            if entry.unit_amount is None:
                planned.append((key, _failed(key, "the price has no fixed unit amount")))
                continue
            if currency and entry.currency.lower() != currency:
                planned.append(
                    (
                        key,
                        _failed(
                            key,
                            f"the price list is in {currency.upper()}, not "
                            f"{entry.currency.upper()}",
                        ),
                    )
                )
                continue
            product_ref = (
                f"/{self.entity_set(product)}({product['external_id']}="
                f"{_key_literal(entry.stripe_product_id)})"
            )
            body: dict[str, Any] = {
                "amount": from_minor_units(entry.unit_amount, entry.currency),
                "pricelevelid@odata.bind": record_ref("pricelevels", str(price_list)),
                "productid@odata.bind": product_ref,
                "uomid@odata.bind": record_ref("uoms", str(unit)),
            }
            url = self.client.url(f"productpricelevels(db_stripepriceid={_key_literal(key)})")
            planned.append((key, BatchOperation("PATCH", url, body)))
        return self._run_batches(planned)

    def _run_batches(
        self, planned: Sequence[tuple[str, BatchOperation | WriteResult]]
    ) -> list[WriteResult]:
        """Send the operations in ``$batch`` requests of at most ``batch_size``; one result
        per planned entry, in order."""
        results: dict[int, WriteResult] = {}
        pending = [
            (i, key, op) for i, (key, op) in enumerate(planned) if isinstance(op, BatchOperation)
        ]
        for i, (_, op) in enumerate(planned):
            if isinstance(op, WriteResult):
                results[i] = op
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            responses = self.client.batch([op for _, _, op in chunk])
            for position, (index, key, _) in enumerate(chunk):
                if position >= len(responses):
                    results[index] = WriteResult(
                        key=key,
                        ok=False,
                        error="not attempted: Dataverse stopped the batch at an earlier failure",
                        retryable=True,
                    )
                    continue
                answer = responses[position]
                if answer.ok:
                    crm_id = guid_from_entity_url(answer.headers.get("odata-entityid"))
                    results[index] = WriteResult(key=key, ok=True, crm_id=crm_id)
                else:
                    code, message = answer.error()
                    results[index] = WriteResult(
                        key=key,
                        ok=False,
                        error=f"{message} ({code})" if code else message,
                        retryable=answer.status == 429 or answer.status >= 500,
                        code=code or None,
                    )
        return [results[i] for i in range(len(planned))]

    # ------------------------------------------------------------------ push

    def parse_push(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> PushBatch:
        """A Dataverse webhook (service endpoint posting ``RemoteExecutionContext``)."""
        kinds = {
            str(self.mapping.deal["object"]).lower(): "deal",
            str(self.mapping.account["object"]).lower(): "account",
            str(self.mapping.contact["object"]).lower(): "contact",
        }
        return parse_remote_execution_context(
            headers,
            query,
            body,
            key=self.webhook_key,
            header_name=str(self.options.get("webhook_key_header") or "x-dealbridge-key"),
            kinds=kinds,
        )

    # ------------------------------------------------------------------ schema

    def check_schema(self) -> list[str]:
        """Every mapped table, column, lookup and alternate key, checked against the
        environment's ``EntityDefinitions``; one problem per line, naming the mapping key."""
        return check_mapping(self.client, self.mapping, self.navigation)


# ---------------------------------------------------------------------- value helpers


def _guid(record_id: str) -> str:
    if not is_guid(record_id):
        raise CrmNotFound(f"{record_id!r} is not a Dataverse record id (a GUID)")
    return record_id


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _equals(value: Any, expected: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool) or isinstance(expected, bool):
        return str(value).lower() == str(expected).lower()
    return str(value) == str(expected)


def _literal(value: Any) -> str:
    """An OData literal for a mapping value (choice numbers stay bare)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return quote_literal(str(value))


def _date_only(value: Any) -> Any:
    """A date-only column arrives as ``2026-01-31``; a midnight date-time is cut to its date.
    Anything else is returned unchanged for the domain to judge."""
    midnight = ("00:00:00", "00:00:00.000")
    if isinstance(value, str) and value[10:11] == "T" and value[11:].rstrip("Z") in midnight:
        return value[:10]
    return value


def _json_number(value: Any) -> Any:
    """A Decimal column value for the canonical deal JSON, which is stored as JSON: a whole
    number becomes an ``int`` (``10.00000`` → 10), any other Decimal its text (``"2.50000"``),
    for the domain to report. Other values are returned unchanged."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    return value


def _minor_units(price: Any, currency: Any) -> Any:
    """A decimal price as minor units of the deal's currency; the raw value when that is
    impossible (the domain then reports it to the rep)."""
    if price is None:
        return None
    if isinstance(currency, str):
        try:
            return to_minor_units(price, currency)
        except (TypeError, ValueError):
            pass
    return str(price)


def _writeback(columns: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical update keys → mapped columns; keys the mapping leaves out are skipped."""
    return {str(columns[key]): value for key, value in values.items() if columns.get(key)}


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _key_literal(value: str) -> str:
    """An alternate key value in a URL: an OData string literal, percent-encoded."""
    return quote(quote_literal(value), safe="'")


def _failed(key: str, error: str) -> WriteResult:
    return WriteResult(key=key, ok=False, error=error, retryable=False)


def _address_json(address: Address) -> dict[str, Any] | None:
    if address == Address():
        return None
    return {
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "state": address.state,
        "postal_code": address.postal_code,
        "country": address.country,
    }
