"""The one boundary every CRM adapter implements.

Services speak only in these canonical records; each adapter (``crm/salesforce``,
``crm/dynamics``) translates them through its mapping file into its CRM's objects and
wire protocol. Nothing outside an adapter's folder imports simple-salesforce or msal.

Money crosses this boundary as integer minor units (``Money``); adapters convert to the
CRM's decimal currency fields. Dates are ``datetime.date``; instants are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypedDict, runtime_checkable

from connector.domain.deal import Address


@dataclass(frozen=True)
class Money:
    amount: int  # minor units
    currency: str  # lowercase ISO code


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class CrmAccount:
    id: str
    name: str
    address: Address | None
    credit_hold: bool
    credit_limit: Money | None  # None: no limit set
    credit_hold_source: str | None  # "person" | "dealbridge" | None (unknown: treat as person)
    stripe_customer_id: str | None
    modified: datetime | None = None
    #: The record's own currency (lowercase ISO): money fields on it are in this currency.
    #: None when the CRM does not say.
    currency: str | None = None


@dataclass(frozen=True)
class CrmDeal:
    """A deal as read from the CRM.

    ``data`` is the canonical deal JSON accepted by ``connector.domain.deal.parse_deal``;
    it may be invalid (the CRM holds what people typed), which is why it stays raw here.
    """

    id: str
    account_id: str | None
    closed: bool
    modified: datetime | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Changes:
    """Ids changed since a cursor, and the cursor to store once they are handled.

    ``versions`` maps an id to the version of the record the CRM reported (a modification
    stamp at full precision, or a row version). Polls read from the cursor inclusively, so a
    record saved in the cursor's own second is seen again; its version, not the batch cursor,
    tells a repeat of a change already queued from a new change to the same record.
    """

    ids: list[str]
    cursor: str | None
    versions: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- writes


class DealUpdate(TypedDict, total=False):
    plan_status: str
    plan_summary: str
    plan_url: str
    subscription_id: str | None
    subscription_status: str | None


class AccountUpdate(TypedDict, total=False):
    stripe_customer_id: str
    stripe_customer_url: str
    credit_state: str
    credit_note: str
    credit_hold: bool
    credit_hold_source: str | None
    open_balance: Money
    mrr: Money
    net_billing: Money


@dataclass(frozen=True)
class InvoiceRecord:
    """The CRM's copy of one Stripe invoice, keyed by the Stripe invoice id."""

    stripe_invoice_id: str
    account_id: str
    deal_id: str | None
    number: str | None
    status: str
    amount_due: int
    amount_paid: int
    amount_remaining: int
    currency: str
    issue_date: date | None
    due_date: date | None
    paid_date: date | None
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    subscription_id: str | None
    billing_reason: str | None
    last_payment_error: str | None
    stripe_customer_id: str | None
    #: What credit notes took off the invoice (before and after payment), minor units.
    amount_credited: int = 0


@dataclass(frozen=True)
class ProductRecord:
    stripe_product_id: str
    name: str
    sku: str | None
    active: bool
    description: str | None = None


@dataclass(frozen=True)
class PriceEntryRecord:
    """A Stripe price as the CRM's price book entry (price list item), keyed by price id.

    ``unit_amount`` is None for prices without a fixed amount (tiered, custom); adapters
    refuse those rather than invent an amount.
    """

    stripe_price_id: str
    stripe_product_id: str
    currency: str  # lowercase ISO code
    unit_amount: int | None  # minor units
    active: bool
    recurring_interval: str | None = None  # month, year...; None for one-time prices
    nickname: str | None = None


@dataclass(frozen=True)
class AccountDirectory:
    """What imports match Stripe customers against, read once in pages: every account's
    id and name, the emails of its contacts, and the Stripe customer id written on it.

    Keys of ``by_email`` and ``by_name`` are casefolded; values list account ids.
    """

    ids: frozenset[str]
    by_email: Mapping[str, Sequence[str]]
    by_name: Mapping[str, Sequence[str]]
    by_stripe_customer: Mapping[str, str]


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one record in a batched write; the rest of a batch is never lost."""

    key: str
    ok: bool
    crm_id: str | None = None
    error: str | None = None
    retryable: bool = False
    #: The CRM's own error code when it gave one (Salesforce ``statusCode``, Dataverse
    #: ``error.code``), so callers can act on a kind of refusal without parsing messages.
    code: str | None = None


@dataclass(frozen=True)
class PushNotice:
    """One change the CRM pushed to us (Outbound Message, Dataverse webhook)."""

    kind: str  # "deal" | "account" | "contact"
    record_id: str
    event_id: str  # unique per notification, for the inbox's duplicate check


@dataclass(frozen=True)
class PushBatch:
    notices: list[PushNotice]
    #: The exact acknowledgement the CRM expects (Salesforce wants a SOAP Ack).
    ack_body: bytes
    ack_content_type: str


class PushRejected(Exception):
    """A push that failed authentication or parsing; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- errors


class CrmError(Exception):
    """Base class. ``retryable`` says whether the same call may succeed later."""

    retryable = False


class CrmUnavailable(CrmError):
    """Outage, timeout, 5xx, row lock, rate or request limit: retry later, lose nothing."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CrmRejected(CrmError):
    """The CRM refused the data itself (validation, missing field): a person must look."""


class CrmAuthError(CrmError):
    """Credentials are wrong or revoked (re-authentication already tried once)."""


class CrmNotFound(CrmError):
    """The record does not exist (deleted, or the id is wrong)."""


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class CrmAdapter(Protocol):
    kind: str
    #: Largest number of records one batched write call takes.
    batch_size: int

    def changed_deals(self, cursor: str | None) -> Changes:
        """Ids of closed deals modified after ``cursor`` (None: all closed deals)."""
        ...

    def get_deal(self, deal_id: str) -> CrmDeal:
        """The deal with its line items, billing contact and account block."""
        ...

    def changed_unclosed_deals(self, cursor: str | None) -> Changes:
        """Ids of deals modified after ``cursor`` that are *not* closed (lost, reopened): the
        deals of active plans among them are flagged "changed after activation"."""
        ...

    def changed_contact_accounts(self, cursor: str | None) -> Changes:
        """Ids of the *accounts* whose contacts were modified after ``cursor`` (a billing
        contact's new email or name must reach the Stripe customer)."""
        ...

    def accounts_of_contact(self, contact_id: str) -> list[str]:
        """Ids of the accounts this contact is a billing contact of now (a pushed contact
        change: its account, and accounts or deals whose billing contact lookup names it)."""
        ...

    def changed_accounts(self, cursor: str | None) -> Changes:
        """Ids of accounts modified after ``cursor`` (credit hold or limit may have changed)."""
        ...

    def get_account(self, account_id: str) -> CrmAccount: ...

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        """Several accounts in as few calls as the CRM allows (a batch's accounts, for their
        figures), keyed by the id asked with; ids the CRM does not have are left out."""
        ...

    def update_deal(self, deal_id: str, update: DealUpdate) -> None: ...

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        """Batched account writes; results in request order, keyed by account id."""
        ...

    def upsert_invoices(self, records: Sequence[InvoiceRecord]) -> list[WriteResult]:
        """Batched upsert by Stripe invoice id; results in request order."""
        ...

    def upsert_products(self, products: Sequence[ProductRecord]) -> list[WriteResult]: ...

    def find_accounts_by_contact_email(self, email: str) -> list[str]:
        """Account ids whose contacts have this email (case-insensitive); for imports."""
        ...

    def account_directory(self) -> AccountDirectory:
        """Every account with its contacts' emails, read in pages; for imports."""
        ...

    def create_account(
        self,
        name: str,
        email: str | None,
        address: Address | None,
        *,
        stripe_customer_id: str | None = None,
    ) -> str:
        """Create an account (and a contact with ``email``); returns the account id.

        ``stripe_customer_id`` is written on the account at once, so an import interrupted
        after this call finds the account again instead of creating a second one."""
        ...

    def upsert_price_entries(self, entries: Sequence[PriceEntryRecord]) -> list[WriteResult]:
        """Batched upsert of price book entries by Stripe price id; results in request order.
        The products must exist (``upsert_products``) first."""
        ...

    def record_url(self, kind: str, record_id: str) -> str | None:
        """A link a person can click to open the record in the CRM (kind: deal|account)."""
        ...

    def parse_push(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> PushBatch:
        """Authenticate (constant time) and parse a push; raises PushRejected."""
        ...

    def check_schema(self) -> list[str]:
        """Online check that every mapped object and field exists; one problem per line."""
        ...
