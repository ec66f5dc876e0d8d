"""Declarative CRM field mappings (``mappings/<crm>.yaml``), validated at start-up.

A mapping says which object and field in a CRM holds each canonical field dealbridge
reads or writes. Adapters interpret the field paths (``Account.Name`` is a Salesforce
relationship path; ``parentaccountid`` a Dataverse column); this module only checks the
shape, so a typo stops start-up with a message naming the file, the key and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate

PRICING_SCHEDULES = ("one_time", "monthly", "quarterly", "semiannual", "annual")
FIELD_PATH = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class MappingError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _path(required: bool = True) -> fields.String:
    if required:
        return fields.String(required=True, validate=FIELD_PATH)
    return fields.String(load_default=None, allow_none=True, validate=FIELD_PATH)


class ClosedWhenSchema(_Strict):
    field = _path()
    equals = fields.Raw(required=True)


class DealFieldsSchema(_Strict):
    id = _path()
    name = _path(required=False)
    currency = _path(required=False)
    contract_start = _path()
    contract_months = _path()
    payment_terms = _path(required=False)
    payment_method = _path(required=False)
    # Automatic charging, a trial in days and a deal discount in percent (all optional).
    payment_collection = _path(required=False)
    trial_days = _path(required=False)
    discount_percent = _path(required=False)
    # A deal discount as an amount off the contract (a money/Currency field).
    discount_amount = _path(required=False)
    account_id = _path()
    modified = _path()
    # The deal's type (Salesforce Opportunity.Type): read through ``change_types``.
    type = _path(required=False)


#: What a deal type can mean; ``connector.domain.amendment.CHANGE_KINDS``.
CHANGE_KINDS = ("new", "upgrade", "downgrade", "replacement", "renewal", "cancellation")


class BillingContactSchema(_Strict):
    lookup_field = _path(required=False)
    contact_role = fields.String(load_default=None, allow_none=True)
    account_fallback_field = _path(required=False)


class DealWritebackSchema(_Strict):
    plan_status = _path()
    plan_summary = _path(required=False)
    plan_url = _path(required=False)
    subscription_id = _path(required=False)
    subscription_status = _path(required=False)


class DealSchema(_Strict):
    object = fields.String(required=True)
    entity_set = fields.String(load_default=None, allow_none=True)
    closed_when = fields.Nested(ClosedWhenSchema, required=True)
    default_currency = fields.String(load_default="usd", validate=validate.Length(equal=3))
    fields_ = fields.Nested(DealFieldsSchema, required=True, data_key="fields")
    billing_contact = fields.Nested(BillingContactSchema, required=True)
    writeback = fields.Nested(DealWritebackSchema, required=True)
    # Deal type value (as the CRM holds it) -> the kind of change it is; values not listed
    # are new business.
    change_types = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(CHANGE_KINDS)),
        load_default=dict,
    )


class LineItemFieldsSchema(_Strict):
    product = _path()
    sku = _path(required=False)
    product_id = _path(required=False)
    quantity = _path()
    unit_price = _path()
    discount_percent = _path(required=False)
    # A line discount as an amount off the whole line (Dynamics 365 manualdiscountamount).
    discount_amount = _path(required=False)
    pricing_schedule = _path()


class LineItemSchema(_Strict):
    object = fields.String(required=True)
    relationship = fields.String(required=True)
    fields_ = fields.Nested(LineItemFieldsSchema, required=True, data_key="fields")
    pricing_schedule_values = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(PRICING_SCHEDULES)),
        required=True,
    )


class AccountFieldsSchema(_Strict):
    id = _path()
    name = _path()
    street = _path(required=False)
    city = _path(required=False)
    state = _path(required=False)
    postal_code = _path(required=False)
    country = _path(required=False)
    credit_hold = _path()
    credit_limit = _path()
    credit_hold_source = _path(required=False)
    currency = _path(required=False)
    modified = _path()


class AccountWritebackSchema(_Strict):
    stripe_customer_id = _path()
    stripe_customer_url = _path(required=False)
    credit_state = _path(required=False)
    credit_note = _path(required=False)
    credit_hold = _path()
    credit_hold_source = _path(required=False)
    open_balance = _path(required=False)
    mrr = _path(required=False)
    net_billing = _path(required=False)


class AccountSchema(_Strict):
    object = fields.String(required=True)
    entity_set = fields.String(load_default=None, allow_none=True)
    fields_ = fields.Nested(AccountFieldsSchema, required=True, data_key="fields")
    writeback = fields.Nested(AccountWritebackSchema, required=True)


class ContactSchema(_Strict):
    object = fields.String(required=True)
    entity_set = fields.String(load_default=None, allow_none=True)
    fields_ = fields.Dict(
        keys=fields.String(validate=validate.OneOf(["id", "name", "email"])),
        values=fields.String(validate=FIELD_PATH),
        required=True,
        data_key="fields",
    )


class InvoiceFieldsSchema(_Strict):
    account = _path()
    deal = _path(required=False)
    name = _path(required=False)
    number = _path()
    status = _path()
    amount_due = _path()
    amount_paid = _path()
    amount_remaining = _path()
    amount_credited = _path(required=False)
    currency = _path()
    record_currency = _path(required=False)
    issue_date = _path()
    due_date = _path()
    paid_date = _path()
    hosted_invoice_url = _path()
    invoice_pdf = _path()
    subscription_id = _path()
    billing_reason = _path()
    last_payment_error = _path()
    stripe_customer_id = _path(required=False)


class InvoiceSchema(_Strict):
    object = fields.String(required=True)
    entity_set = fields.String(load_default=None, allow_none=True)
    external_id = _path()
    fields_ = fields.Nested(InvoiceFieldsSchema, required=True, data_key="fields")


class ProductSchema(_Strict):
    object = fields.String(required=True)
    entity_set = fields.String(load_default=None, allow_none=True)
    external_id = _path(required=False)
    fields_ = fields.Dict(keys=fields.String(), values=fields.String(), data_key="fields")


class MappingSchema(_Strict):
    version = fields.Integer(required=True, validate=validate.Equal(1))
    crm = fields.String(required=True, validate=validate.OneOf(["salesforce", "dynamics"]))
    deal = fields.Nested(DealSchema, required=True)
    line_item = fields.Nested(LineItemSchema, required=True)
    account = fields.Nested(AccountSchema, required=True)
    contact = fields.Nested(ContactSchema, required=True)
    invoice = fields.Nested(InvoiceSchema, required=True)
    product = fields.Nested(ProductSchema, load_default=None, allow_none=True)
    options = fields.Dict(keys=fields.String(), load_default=dict)


@dataclass(frozen=True)
class CrmMapping:
    """A validated mapping. Sections are plain dicts keyed by canonical names."""

    path: Path
    crm: str
    deal: Mapping[str, Any]
    line_item: Mapping[str, Any]
    account: Mapping[str, Any]
    contact: Mapping[str, Any]
    invoice: Mapping[str, Any]
    product: Mapping[str, Any] | None
    options: Mapping[str, Any]

    @property
    def deal_fields(self) -> Mapping[str, str | None]:
        return self.deal["fields_"]  # type: ignore[no-any-return]

    @property
    def account_fields(self) -> Mapping[str, str | None]:
        return self.account["fields_"]  # type: ignore[no-any-return]

    @property
    def invoice_fields(self) -> Mapping[str, str | None]:
        return self.invoice["fields_"]  # type: ignore[no-any-return]

    @property
    def line_item_fields(self) -> Mapping[str, str | None]:
        return self.line_item["fields_"]  # type: ignore[no-any-return]

    @property
    def contact_fields(self) -> Mapping[str, str]:
        return self.contact["fields_"]  # type: ignore[no-any-return]


_FIXES = {
    "Missing data for required field.": "required; add it (see the shipped mapping for an example)",
    "Unknown field.": "unknown key; remove it or fix its spelling",
}


def _problems(messages: Any, file: Path, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            key = "fields" if key == "fields_" else key
            path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_problems(value, file, path))
    elif isinstance(messages, list):
        for message in messages:
            out.extend(_problems(message, file, prefix))
    else:
        out.append(f"{file}: {prefix}: {_FIXES.get(str(messages), str(messages))}")
    return out


def load_mapping(path: Path, expected_crm: str | None = None) -> CrmMapping:
    """Read and validate a mapping file; raises MappingError listing every problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(
            [f"{path}: cannot be read ({exc.strerror}); check crm.mapping in the config"]
        ) from exc
    except yaml.YAMLError as exc:
        raise MappingError([f"{path}: is not valid YAML ({exc})"]) from exc
    if not isinstance(data, dict):
        raise MappingError([f"{path}: the top level must be a mapping"])
    try:
        loaded = MappingSchema().load(data)
    except ValidationError as exc:
        raise MappingError(_problems(exc.messages, path)) from exc
    problems: list[str] = []
    if expected_crm and loaded["crm"] != expected_crm:
        problems.append(
            f"{path}: crm: the file maps {loaded['crm']!r} but crm.kind is {expected_crm!r}; "
            f"point crm.mapping at mappings/{expected_crm}.yaml"
        )
    contact = loaded["deal"]["billing_contact"]
    if not any(contact.get(k) for k in ("lookup_field", "contact_role", "account_fallback_field")):
        problems.append(
            f"{path}: deal.billing_contact: name at least one of lookup_field, contact_role, "
            "account_fallback_field, so dealbridge can find who receives invoices"
        )
    for key in ("name", "email"):
        if key not in loaded["contact"]["fields_"]:
            problems.append(f"{path}: contact.fields.{key}: required; add it")
    if problems:
        raise MappingError(problems)
    return CrmMapping(
        path=path,
        crm=loaded["crm"],
        deal=loaded["deal"],
        line_item=loaded["line_item"],
        account=loaded["account"],
        contact=loaded["contact"],
        invoice=loaded["invoice"],
        product=loaded["product"],
        options=loaded["options"],
    )
