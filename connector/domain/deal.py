"""The canonical deal: what every CRM adapter produces and every billing rule consumes.

Adapters (Salesforce, Dynamics) map their own objects to the canonical deal JSON described in
``docs/billing-rules.md``; ``parse_deal`` turns that JSON into frozen dataclasses and reports
*every* problem at once, worded for the sales rep who has to fix the deal in the CRM, so that
one round trip to the CRM fixes everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from connector.domain.money import STRIPE_CURRENCIES

__all__ = [
    "PAYMENT_METHOD_TYPES",
    "PRICING_SCHEDULES",
    "SCHEDULE_MONTHS",
    "AccountRef",
    "Address",
    "BillingContact",
    "Deal",
    "InvalidDeal",
    "LineItem",
    "PaymentCollection",
    "PricingSchedule",
    "Problem",
    "deal_to_json",
    "parse_date",
    "parse_deal",
    "parse_payment_collection",
    "parse_payment_method",
    "parse_payment_terms",
]

PricingSchedule = Literal["one_time", "monthly", "quarterly", "semiannual", "annual"]
PRICING_SCHEDULES: tuple[PricingSchedule, ...] = get_args(PricingSchedule)

# How many months one pricing period covers; ``None`` for a one-time charge.
SCHEDULE_MONTHS: Mapping[PricingSchedule, int | None] = {
    "one_time": None,
    "monthly": 1,
    "quarterly": 3,
    "semiannual": 6,
    "annual": 12,
}

# Stripe payment_method_types dealbridge knows how to set up, in the order we always emit them.
PAYMENT_METHOD_TYPES: tuple[str, ...] = ("card", "us_bank_account", "customer_balance")

# Deliberately simple: one "@", something on both sides, a dot in the domain. Stripe and the
# mail server are the real judges; this only catches the obvious typos a rep can fix.
_EMAIL = re.compile(r"^[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+$")  # no empty domain label ("a..b")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Address:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class BillingContact:
    name: str
    email: str


@dataclass(frozen=True)
class AccountRef:
    id: str
    name: str
    address: Address | None = None


@dataclass(frozen=True)
class LineItem:
    """One product on the deal. ``unit_amount`` is minor units per *pricing* period."""

    product: str
    sku: str | None
    quantity: int
    unit_amount: int
    pricing_schedule: PricingSchedule
    product_id: str | None = None
    #: A CRM line discount in percent (``Decimal("10")`` = 10 % off), or None. The plan bills
    #: the list price with a Stripe discount rather than a fractional unit price.
    discount_percent: Decimal | None = None
    #: A CRM line discount as an amount (Dynamics 365 ``manualdiscountamount``): minor units
    #: off the whole line (all its units) each pricing period, or None. Billed as a Stripe
    #: discount too; a line has this or ``discount_percent``, never both.
    discount_amount: int | None = None


@dataclass(frozen=True)
class Deal:
    id: str
    currency: str
    contract_start: date
    contract_months: int
    payment_terms: str | None
    payment_method: str | None
    billing_contact: BillingContact | None
    account: AccountRef
    line_items: tuple[LineItem, ...]
    name: str | None = None
    #: How the CRM asks for the invoices to be paid ("Charge automatically", "Send invoice"),
    #: as text; read by ``parse_payment_collection`` when the plan is suggested.
    payment_collection: str | None = None
    #: A free trial before the first paid period, in days (None: no trial).
    trial_days: int | None = None
    #: A deal-level discount in percent, billed as a Stripe percent-off coupon on every
    #: invoice of the deal (never as reduced unit prices).
    discount_percent: Decimal | None = None
    #: A deal-level discount as an amount off the whole contract, in minor units of the
    #: deal's currency (Dynamics 365 ``opportunity.discountamount``): billed as a Stripe
    #: amount-off coupon of duration ``once`` on the first invoice. A deal has this or
    #: ``discount_percent``, never both.
    discount_amount: int | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input. ``field`` is a dotted path: ``line_items[1].quantity``."""

    field: str
    message: str


class InvalidDeal(ValueError):
    """A deal that cannot be billed as it stands; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(f"{p.field}: {p.message}" for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


# --------------------------------------------------------------------------------------------
# Payment terms and payment method: free text in the CRM, exact values for Stripe.
# --------------------------------------------------------------------------------------------

_NET_TERMS = re.compile(r"^net[\s\-_]*([0-9]{1,3})(?:\s*days?)?$")
_DUE_ON_RECEIPT = {"due on receipt", "due upon receipt"}
MAX_DAYS_UNTIL_DUE = 365


def parse_payment_terms(text: str | None) -> int | None:
    """Read CRM payment terms as Stripe ``days_until_due``.

    "Net 30", "net30", "NET-45" → 30, 45; "Due on receipt" / "Due upon receipt" → 0;
    ``None`` or blank → ``None`` (not stated, so the caller falls back to a default and asks a
    person to confirm). Anything else raises ``ValueError``: guessing terms would send invoices
    with the wrong due date, which is worse than asking.
    """
    if text is None or not text.strip():
        return None
    normalized = " ".join(text.strip().lower().split())
    if normalized in _DUE_ON_RECEIPT:
        return 0
    match = _NET_TERMS.match(normalized)
    if match:
        days = int(match.group(1))
        if days > MAX_DAYS_UNTIL_DUE:
            raise ValueError(
                f"payment terms {text!r} give more than {MAX_DAYS_UNTIL_DUE} days to pay"
            )
        return days
    raise ValueError(
        f"payment terms {text!r} are not understood; use 'Net <days>' (e.g. 'Net 30') "
        "or 'Due on receipt'"
    )


_METHOD_ALIASES: Mapping[str, tuple[str, ...]] = {
    "ach": ("us_bank_account", "customer_balance"),
    "card": ("card",),
    "cards": ("card",),
    "credit card": ("card",),
    "credit cards": ("card",),
}
_METHOD_SEPARATORS = re.compile(r"[;,/|&+\n]|\band\b")


def parse_payment_method(text: str | None) -> tuple[str, ...] | None:
    """Read the CRM payment method as Stripe ``payment_method_types``.

    "ACH" means ACH debit *and* bank-transfer details on the invoice
    (``us_bank_account`` + ``customer_balance``), because customers who pay by ACH often push
    a wire or ACH credit instead of authorising a debit. "Credit Card"/"Card" → ``card``.
    Several values (a Salesforce multi-select "ACH;Credit Card", or "ACH, Credit Card") are
    combined. The result is always in the order of ``PAYMENT_METHOD_TYPES`` so that the same
    deal always yields the same plan. ``None``/blank → ``None``; unknown → ``ValueError``.
    """
    if text is None or not text.strip():
        return None
    chosen: set[str] = set()
    unknown: list[str] = []
    for raw in _METHOD_SEPARATORS.split(text.lower()):
        token = " ".join(raw.split())
        if not token:
            continue
        types = _METHOD_ALIASES.get(token)
        if types is None:
            unknown.append(raw.strip())
        else:
            chosen.update(types)
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise ValueError(
            f"payment method {listed} is not understood; use 'ACH', 'Credit Card' or both"
        )
    if not chosen:
        return None
    return tuple(t for t in PAYMENT_METHOD_TYPES if t in chosen)


PaymentCollection = Literal["charge_automatically", "send_invoice"]
_COLLECTION_ALIASES: Mapping[str, PaymentCollection] = {
    "charge automatically": "charge_automatically",
    "charge_automatically": "charge_automatically",
    "automatic": "charge_automatically",
    "automatic charge": "charge_automatically",
    "auto-charge": "charge_automatically",
    "autopay": "charge_automatically",
    "send invoice": "send_invoice",
    "send_invoice": "send_invoice",
    "invoice": "send_invoice",
}
#: Stripe refuses a trial longer than this (``trial_end`` at most 730 days ahead).
MAX_TRIAL_DAYS = 730


def parse_payment_collection(text: str | None) -> PaymentCollection | None:
    """Read how the CRM asks for payment as Stripe's ``collection_method``.

    "Charge automatically" (also "Automatic", "Auto-charge", "Autopay") → the customer's
    payment method on file is charged; "Send invoice" (or "Invoice") → invoices are emailed.
    ``None``/blank → ``None`` (not asked: invoices are sent). Anything else raises
    ``ValueError`` rather than guessing whether to take money from a card.
    """
    if text is None or not text.strip():
        return None
    found = _COLLECTION_ALIASES.get(" ".join(text.strip().lower().split()))
    if found is None:
        raise ValueError(
            f"payment collection {text!r} is not understood; use 'Charge automatically' or "
            "'Send invoice'"
        )
    return found


# --------------------------------------------------------------------------------------------
# Parsing the canonical deal JSON.
# --------------------------------------------------------------------------------------------


def parse_date(value: object) -> date:
    """Parse a strict ``YYYY-MM-DD`` date; raise ``ValueError`` with a readable message."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
        raise ValueError(f"{value!r} is not a real calendar date")
    raise ValueError(f"{value!r} is not a date; expected YYYY-MM-DD, e.g. 2025-01-31")


class _Collector:
    """Gathers problems while parsing so a rep sees all of them in one go."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def text(self, data: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = data.get(key)
        if value is None or (isinstance(value, str) and not value.strip() and required):
            if required:
                self.add(path, "is missing")
            return None
        if not isinstance(value, str):
            self.add(path, f"must be text, got {_describe(value)}")
            return None
        return value.strip()

    def whole_number(
        self, data: Mapping[str, Any], key: str, path: str, *, minimum: int, what: str
    ) -> int | None:
        value = data.get(key)
        if value is None:
            self.add(path, "is missing")
            return None
        number = _as_whole_number(value)
        if number is None:
            self.add(path, f"must be a whole number, got {_describe(value)}")
            return None
        if number < minimum:
            self.add(path, f"{what}, got {number}")
            return None
        return number

    def mapping(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(path, f"must be an object, got {_describe(value)}")
            return None
        return value


def _as_whole_number(value: object) -> int | None:
    """Accept ints and integral numbers (Salesforce sends quantities as ``3.0``), nothing else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        try:
            if value == int(value):
                return int(value)
        except (OverflowError, ValueError, ArithmeticError):
            return None
    return None


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal | str):
        return repr(value) if isinstance(value, str) else str(value)
    return f"a {type(value).__name__}"


#: The keys each object of the canonical deal JSON may carry; any other key is refused by
#: name (a ``discount_percent`` on the deal or a ``contract_days`` would otherwise be ignored
#: and billed as if it were not there).
DEAL_KEYS: tuple[str, ...] = (
    "id", "name", "currency", "contract_start", "contract_months", "payment_terms",
    "payment_method", "billing_contact", "account", "line_items",
    # The CRM's deal type and the kind of change the mapping reads it as (upgrade, renewal,
    # ...): read by ``domain/amendment``, not billed from the deal itself.
    "type", "change_type",
    # How invoices are paid, a free trial and a deal-level discount (percent or amount).
    "payment_collection", "trial_days", "discount_percent", "discount_amount",
)  # fmt: skip
CONTACT_KEYS: tuple[str, ...] = ("name", "email")
ACCOUNT_KEYS: tuple[str, ...] = ("id", "name", "address")
ADDRESS_KEYS: tuple[str, ...] = ("line1", "line2", "city", "state", "postal_code", "country")
LINE_ITEM_KEYS: tuple[str, ...] = (
    "product", "sku", "product_id", "quantity", "unit_amount", "pricing_schedule",
    "discount_percent",
    "discount_amount",
)  # fmt: skip


def _unknown_keys(
    c: _Collector, data: Mapping[str, Any], known: tuple[str, ...], path: str
) -> None:
    for key in data:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            c.add(
                where,
                "is not a field dealbridge knows, so it cannot be billed as the CRM meant; "
                f"remove it or use one of {', '.join(known)}",
            )


def parse_deal(data: Mapping[str, Any]) -> Deal:
    """Validate canonical deal JSON and build a ``Deal``; raise ``InvalidDeal`` with all problems.

    Payment terms and payment method are only checked for being text here: whether they can be
    *read* is a billing-plan question (``suggest_plan``), where a person may also override them
    on the review page instead of fixing the CRM.
    """
    if not isinstance(data, Mapping):
        raise InvalidDeal([Problem("deal", f"must be an object, got {_describe(data)}")])
    c = _Collector()
    _unknown_keys(c, data, DEAL_KEYS, "")

    deal_id = c.text(data, "id", "id", required=True)
    name = c.text(data, "name", "name", required=False)

    currency: str | None = None
    raw_currency = c.text(data, "currency", "currency", required=True)
    if raw_currency is not None:
        if raw_currency.lower() in STRIPE_CURRENCIES:
            currency = raw_currency.lower()
        else:
            c.add("currency", f"{raw_currency!r} is not a currency Stripe can bill in")

    contract_start: date | None = None
    if data.get("contract_start") is None:
        c.add("contract_start", "is missing; expected a date like 2025-01-31")
    else:
        try:
            contract_start = parse_date(data["contract_start"])
        except ValueError as exc:
            c.add("contract_start", str(exc))

    contract_months = c.whole_number(
        data,
        "contract_months",
        "contract_months",
        minimum=1,
        what="the contract must last at least one month",
    )
    payment_terms = c.text(data, "payment_terms", "payment_terms", required=False)
    payment_method = c.text(data, "payment_method", "payment_method", required=False)
    payment_collection = c.text(data, "payment_collection", "payment_collection", required=False)
    trial_days = _trial_days(c, data.get("trial_days"))
    discount = _plain(_discount_percent(c, data.get("discount_percent"), "discount_percent"))
    discount_amount = _deal_discount_amount(c, data.get("discount_amount"), discount)

    billing_contact = _parse_contact(c, data)
    account = _parse_account(c, data)
    line_items = _parse_line_items(c, data)

    if c.problems:
        raise InvalidDeal(c.problems)
    assert deal_id is not None and currency is not None and contract_start is not None
    assert contract_months is not None and account is not None
    return Deal(
        id=deal_id,
        name=name or None,
        currency=currency,
        contract_start=contract_start,
        contract_months=contract_months,
        payment_terms=payment_terms or None,
        payment_method=payment_method or None,
        billing_contact=billing_contact,
        account=account,
        line_items=line_items,
        payment_collection=payment_collection or None,
        trial_days=trial_days,
        discount_percent=discount,
        discount_amount=discount_amount,
    )


def _deal_discount_amount(c: _Collector, value: object, percent: Decimal | None) -> int | None:
    """The deal's amount off the contract in minor units: a whole number, 0 (none) or more.
    With a percent discount too it is refused by name: which one the rep meant (or whether
    both, and in which order) is a question for the CRM, not a guess."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    amount = _as_whole_number(value)
    if amount is None and isinstance(value, str) and value.strip().isdigit():
        amount = int(value.strip())
    if amount is None:
        c.add(
            "discount_amount",
            f"must be a whole number of minor units (cents), got {_describe(value)}",
        )
        return None
    if amount < 0:
        c.add("discount_amount", f"the discount cannot be negative, got {amount}")
        return None
    if amount and percent is not None:
        c.add(
            "discount_amount",
            f"the deal has a discount_percent ({percent}%) too; give one deal discount, "
            "a percent or an amount",
        )
        return None
    return amount or None


def _trial_days(c: _Collector, value: object) -> int | None:
    """A trial length in whole days, 0 to 730; 0 (or none) means no trial."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _as_whole_number(value)
    if number is None and isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None:
        c.add("trial_days", f"must be a whole number of days, got {_describe(value)}")
        return None
    if not 0 <= number <= MAX_TRIAL_DAYS:
        c.add("trial_days", f"must be from 0 to {MAX_TRIAL_DAYS} days, got {number}")
        return None
    return number or None


def _parse_contact(c: _Collector, data: Mapping[str, Any]) -> BillingContact | None:
    contact = c.mapping(data, "billing_contact", "billing_contact")
    if contact is None:
        if "billing_contact" not in data or data["billing_contact"] is None:
            c.add(
                "billing_contact.email",
                "the deal has no billing email; add a billing contact with an email address "
                "so invoices can be sent",
            )
        return None
    _unknown_keys(c, contact, CONTACT_KEYS, "billing_contact")
    name = c.text(contact, "name", "billing_contact.name", required=False)
    email_value = contact.get("email")
    email: str | None = None
    if email_value is None or (isinstance(email_value, str) and not email_value.strip()):
        c.add(
            "billing_contact.email",
            "the deal has no billing email; add an email address to the billing contact so "
            "invoices can be sent",
        )
    elif not isinstance(email_value, str) or not _EMAIL.match(email_value.strip()):
        c.add(
            "billing_contact.email",
            f"{email_value!r} is not a valid email address; invoices could not be delivered",
        )
    else:
        email = email_value.strip()
    if email is None:
        return None
    return BillingContact(name=name or "", email=email)


def _parse_account(c: _Collector, data: Mapping[str, Any]) -> AccountRef | None:
    account = c.mapping(data, "account", "account")
    if account is None:
        if data.get("account") is None:
            c.add("account", "the deal is not linked to an account")
        return None
    _unknown_keys(c, account, ACCOUNT_KEYS, "account")
    account_id = c.text(account, "id", "account.id", required=True)
    account_name = c.text(account, "name", "account.name", required=True)
    address: Address | None = None
    raw_address = c.mapping(account, "address", "account.address")
    if raw_address is not None:
        _unknown_keys(c, raw_address, ADDRESS_KEYS, "account.address")
        parts = {
            key: c.text(raw_address, key, f"account.address.{key}", required=False) or None
            for key in ("line1", "line2", "city", "state", "postal_code", "country")
        }
        address = Address(**parts)
    if account_id is None or account_name is None:
        return None
    return AccountRef(id=account_id, name=account_name, address=address)


def _parse_line_items(c: _Collector, data: Mapping[str, Any]) -> tuple[LineItem, ...]:
    raw = data.get("line_items")
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        c.add("line_items", "the deal has no products; add at least one line item")
        return ()
    if not isinstance(raw, list | tuple):
        c.add("line_items", f"must be a list, got {_describe(raw)}")
        return ()
    items: list[LineItem] = []
    for index, entry in enumerate(raw):
        path = f"line_items[{index}]"
        if not isinstance(entry, Mapping):
            c.add(path, f"must be an object, got {_describe(entry)}")
            continue
        item = _parse_line_item(c, entry, path)
        if item is not None:
            items.append(item)
    return tuple(items)


def _parse_line_item(c: _Collector, entry: Mapping[str, Any], path: str) -> LineItem | None:
    _unknown_keys(c, entry, LINE_ITEM_KEYS, path)
    product = c.text(entry, "product", f"{path}.product", required=True)
    sku = c.text(entry, "sku", f"{path}.sku", required=False)
    product_id = c.text(entry, "product_id", f"{path}.product_id", required=False)
    quantity = c.whole_number(
        entry,
        "quantity",
        f"{path}.quantity",
        minimum=1,
        what="the quantity must be at least 1",
    )
    unit_amount = c.whole_number(
        entry,
        "unit_amount",
        f"{path}.unit_amount",
        minimum=0,
        what="the price cannot be negative",
    )
    schedule: PricingSchedule | None = None
    raw_schedule = entry.get("pricing_schedule")
    allowed = ", ".join(PRICING_SCHEDULES)
    if raw_schedule is None:
        c.add(f"{path}.pricing_schedule", f"is missing; use one of {allowed}")
    elif isinstance(raw_schedule, str) and raw_schedule.strip().lower() in PRICING_SCHEDULES:
        schedule = _as_schedule(raw_schedule.strip().lower())
    else:
        c.add(
            f"{path}.pricing_schedule",
            f"{raw_schedule!r} is not a pricing schedule dealbridge knows; use one of {allowed}",
        )
    discount = _discount_percent(c, entry.get("discount_percent"), f"{path}.discount_percent")
    discount_amount = _discount_amount(c, entry, path, quantity, unit_amount, discount)
    if product is None or quantity is None or unit_amount is None or schedule is None:
        return None
    return LineItem(
        product=product,
        sku=sku or None,
        quantity=quantity,
        unit_amount=unit_amount,
        pricing_schedule=schedule,
        product_id=product_id or None,
        discount_percent=discount,
        discount_amount=discount_amount,
    )


def _discount_amount(
    c: _Collector,
    entry: Mapping[str, Any],
    path: str,
    quantity: int | None,
    unit_amount: int | None,
    percent: Decimal | None,
) -> int | None:
    """A line discount as an amount off the whole line per pricing period, in minor units:
    a whole number from 0 to what the line bills (a larger one would bill a negative line)."""
    if entry.get("discount_amount") is None:
        return None
    where = f"{path}.discount_amount"
    amount = c.whole_number(
        entry, "discount_amount", where, minimum=0, what="the discount cannot be negative"
    )
    if amount is None:
        return None
    if percent is not None and amount:
        c.add(where, "the line has a discount_percent too; give one discount per line")
        return None
    if quantity is not None and unit_amount is not None and amount > quantity * unit_amount:
        c.add(
            where,
            f"the discount {amount} is more than the line bills ({quantity} x {unit_amount}, "
            "in minor units)",
        )
        return None
    return amount or None


def _discount_percent(c: _Collector, value: object, path: str) -> Decimal | None:
    """A line discount in percent: text or a whole number (never a float), 0 to 100."""
    if value is None:
        return None
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            number = None
    if number is None or not number.is_finite():
        c.add(path, f"must be a percentage given as text or a whole number, got {_describe(value)}")
        return None
    if not Decimal(0) <= number <= Decimal(100):
        c.add(path, f"must be from 0 to 100 percent, got {number}")
        return None
    return number if number else None


def _plain(value: Decimal | None) -> Decimal | None:
    """A percentage written without trailing zeros (CRMs send 20.0 or 20.00000 for 20), so
    the same discount is always the same coupon and reads the same on the page."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _as_schedule(value: str) -> PricingSchedule:
    for schedule in PRICING_SCHEDULES:
        if schedule == value:
            return schedule
    raise ValueError(value)


def deal_to_json(deal: Deal) -> dict[str, Any]:
    """The canonical deal JSON for ``deal``; ``parse_deal(deal_to_json(d)) == d``."""
    contact = deal.billing_contact
    address = deal.account.address
    return {
        "id": deal.id,
        "name": deal.name,
        "currency": deal.currency,
        "contract_start": deal.contract_start.isoformat(),
        "contract_months": deal.contract_months,
        "payment_terms": deal.payment_terms,
        "payment_method": deal.payment_method,
        "payment_collection": deal.payment_collection,
        "trial_days": deal.trial_days,
        "discount_percent": None if deal.discount_percent is None else str(deal.discount_percent),
        # Only when there is one: deals stored before it existed read the same.
        **({"discount_amount": deal.discount_amount} if deal.discount_amount is not None else {}),
        "billing_contact": (
            None if contact is None else {"name": contact.name, "email": contact.email}
        ),
        "account": {
            "id": deal.account.id,
            "name": deal.account.name,
            "address": None
            if address is None
            else {
                "line1": address.line1,
                "line2": address.line2,
                "city": address.city,
                "state": address.state,
                "postal_code": address.postal_code,
                "country": address.country,
            },
        },
        "line_items": [
            {
                "product": item.product,
                "sku": item.sku,
                "quantity": item.quantity,
                "unit_amount": item.unit_amount,
                "pricing_schedule": item.pricing_schedule,
                "product_id": item.product_id,
                "discount_percent": (
                    None if item.discount_percent is None else str(item.discount_percent)
                ),
                # Only when there is one: deals stored before it existed read the same.
                **(
                    {"discount_amount": item.discount_amount}
                    if item.discount_amount is not None
                    else {}
                ),
            }
            for item in deal.line_items
        ],
    }
