"""What the scenario tests do to and read from "the CRM", in canonical names.

Scenarios speak canonical fields (``plan_status``, ``credit_hold``, ``stripe_customer_id``)
and seed refs (``acme_platform``); a driver per CRM maps them through that CRM's mapping
file, so one scenario runs unchanged against Salesforce and Dynamics 365.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from connector.mappings import CrmMapping, load_mapping
from sandboxes.salesforce import SalesforceSandbox

REPO = Path(__file__).resolve().parents[2]


class CrmDriver(Protocol):
    kind: str

    def ref(self, name: str) -> str:
        """The CRM id of a seed record (``acme``, ``acme_platform``, ``stark_contact``)."""
        ...

    def deal(self, ref: str) -> dict[str, Any]:
        """The deal's write-back fields, canonical names (``plan_status``, ...)."""
        ...

    def account(self, ref: str) -> dict[str, Any]:
        """The account's credit and write-back fields, canonical names."""
        ...

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice record, canonical names (``stripe_invoice_id``, ``status``, ...)."""
        ...

    def accounts(self) -> list[dict[str, Any]]:
        """Every account: ``id``, ``name``, ``stripe_customer_id``."""
        ...

    def products(self) -> list[dict[str, Any]]:
        """Every product: ``stripe_product_id``, ``name``, ``active``..."""
        ...

    def price_entries(self) -> list[dict[str, Any]]:
        """Every price book entry (price list item) made from a Stripe price:
        ``stripe_price_id``, ``stripe_product_id``, ``unit_price`` (Decimal), ``active``."""
        ...

    def update_deal(self, ref: str, **canonical: Any) -> None:
        """Change deal fields as a rep would (``closed=True``, ``payment_terms=...``,
        ``billing_contact=<contact ref>``)."""
        ...

    def force_deal_values(self, ref: str, **canonical: Any) -> None:
        """Write values the CRM's own validation would refuse (bad data already in an org)."""
        ...

    def update_line(self, deal_ref: str, index: int, **canonical: Any) -> None:
        """Change the deal's index-th line item (``quantity``, ``pricing_schedule``)."""
        ...

    def set_credit(
        self, account_ref: str, *, hold: bool | None = None, limit: Decimal | None = None
    ) -> None:
        """Finance toggles credit hold / sets the credit limit on the account."""
        ...

    def update_contact(self, ref: str, **canonical: Any) -> None:
        """Edit a contact as a person would: ``email``, ``name`` ("First Last")."""
        ...

    def update_account(self, ref: str, **canonical: Any) -> None:
        """Edit an account's mapped fields as a person would (``name``, ``city``...)."""
        ...

    def set_down(self, down: bool) -> None:
        """Simulate a CRM outage."""
        ...

    def deliver_pushes(self) -> int:
        """Send every pending push (Outbound Message, Dataverse webhook) to dealbridge now."""
        ...

    def expire_sessions(self) -> None:
        """Invalidate every session/token the CRM has issued to dealbridge."""
        ...

    def logins(self) -> int:
        """How many times dealbridge has authenticated to the CRM so far."""
        ...


class SalesforceDriver:
    kind = "salesforce"

    def __init__(self, sandbox: SalesforceSandbox, client: Any) -> None:
        self.sandbox = sandbox
        self.client = client
        self.mapping: CrmMapping = load_mapping(REPO / "mappings" / "salesforce.yaml")

    def ref(self, name: str) -> str:
        return self.sandbox.ids_by_ref()[name]

    def _get(self, sobject: str, record_id: str) -> dict[str, Any]:
        return dict(self.client.restful(f"sobjects/{sobject}/{record_id}") or {})

    def deal(self, ref: str) -> dict[str, Any]:
        record = self._get(self.mapping.deal["object"], self.ref(ref))
        return {k: record.get(v) for k, v in self.mapping.deal["writeback"].items() if v}

    def account(self, ref: str) -> dict[str, Any]:
        record = self._get(self.mapping.account["object"], self.ref(ref))
        fields = {**self.mapping.account_fields, **self.mapping.account["writeback"]}
        out = {k: record.get(v) for k, v in fields.items() if v}
        source = out.get("credit_hold_source")
        out["credit_hold_source"] = source.lower() if isinstance(source, str) else source
        return out

    def invoices(self) -> list[dict[str, Any]]:
        inv = self.mapping.invoice
        fields = {"stripe_invoice_id": inv["external_id"], **self.mapping.invoice_fields}
        records = self.sandbox.records(inv["object"])
        return [{k: r.get(v) for k, v in fields.items() if v} for r in records]

    def accounts(self) -> list[dict[str, Any]]:
        stripe_field = self.mapping.account["writeback"]["stripe_customer_id"]
        name_field = self.mapping.account_fields["name"]
        return [
            {"id": r["Id"], "name": r.get(name_field), "stripe_customer_id": r.get(stripe_field)}
            for r in self.sandbox.records(self.mapping.account["object"])
        ]

    def products(self) -> list[dict[str, Any]]:
        product = self.mapping.product
        fields = {"stripe_product_id": product["external_id"], **product["fields_"]}
        records = self.sandbox.records(product["object"])
        return [{k: r.get(v) for k, v in fields.items()} for r in records]

    def price_entries(self) -> list[dict[str, Any]]:
        ext = self.mapping.product["external_id"]
        products = {r["Id"]: r.get(ext) for r in self.sandbox.records("Product2")}
        return [
            {
                "stripe_price_id": r["Stripe_Price_Id__c"],
                "stripe_product_id": products.get(r["Product2Id"]),
                "unit_price": r["UnitPrice"],
                "currency": str(r["CurrencyIsoCode"]).lower(),
                "active": r["IsActive"],
            }
            for r in self.sandbox.records("PricebookEntry")
            if r.get("Stripe_Price_Id__c")
        ]

    def _deal_fields(self, canonical: dict[str, Any]) -> dict[str, Any]:
        m = self.mapping
        out: dict[str, Any] = {}
        for key, value in canonical.items():
            if key == "closed":
                field = m.deal["closed_when"]["field"]
                out[field] = m.deal["closed_when"]["equals"] if value else "Negotiation/Review"
            elif key == "billing_contact":
                out[m.deal["billing_contact"]["lookup_field"]] = self.ref(value) if value else None
            else:
                field = m.deal_fields[key]
                assert field, key
                out[field] = value.isoformat() if hasattr(value, "isoformat") else value
        return out

    def update_deal(self, ref: str, **canonical: Any) -> None:
        self.client.restful(
            f"sobjects/{self.mapping.deal['object']}/{self.ref(ref)}",
            method="PATCH",
            json=self._deal_fields(canonical),
        )

    def force_deal_values(self, ref: str, **canonical: Any) -> None:
        self.sandbox.store.put_raw(
            self.mapping.deal["object"], {"Id": self.ref(ref), **self._deal_fields(canonical)}
        )

    def update_line(self, deal_ref: str, index: int, **canonical: Any) -> None:
        lines = [
            r
            for r in self.sandbox.records(self.mapping.line_item["object"])
            if r["OpportunityId"] == self.ref(deal_ref)
        ]
        lf = self.mapping.line_item_fields
        reverse = {v: k for k, v in self.mapping.line_item["pricing_schedule_values"].items()}
        values: dict[str, Any] = {}
        for key, value in canonical.items():
            if key == "pricing_schedule":
                value = reverse.get(value, value)
            values[lf[key] or key] = value
        self.sandbox.store.put_raw(
            self.mapping.line_item["object"], {"Id": lines[index]["Id"], **values}
        )

    def set_credit(
        self, account_ref: str, *, hold: bool | None = None, limit: Decimal | None = None
    ) -> None:
        af = self.mapping.account_fields
        values: dict[str, Any] = {}
        if hold is not None:
            values[af["credit_hold"] or ""] = hold
            if af.get("credit_hold_source"):
                values[af["credit_hold_source"] or ""] = "Person" if hold else None
        if limit is not None:
            values[af["credit_limit"] or ""] = str(limit)
        self.client.restful(
            f"sobjects/{self.mapping.account['object']}/{self.ref(account_ref)}",
            method="PATCH",
            json=values,
        )

    def update_contact(self, ref: str, **canonical: Any) -> None:
        values = _contact_values(canonical, self.mapping.contact_fields["email"])
        values = {{"firstname": "FirstName", "lastname": "LastName"}.get(k, k): v
                  for k, v in values.items()}  # fmt: skip
        self.client.restful(
            f"sobjects/{self.mapping.contact['object']}/{self.ref(ref)}", method="PATCH",
            json=values,
        )  # fmt: skip

    def update_account(self, ref: str, **canonical: Any) -> None:
        fields = self.mapping.account_fields
        self.client.restful(
            f"sobjects/{self.mapping.account['object']}/{self.ref(ref)}",
            method="PATCH",
            json={str(fields[k]): v for k, v in canonical.items()},
        )

    def set_down(self, down: bool) -> None:
        self.sandbox.set_down(down)

    def deliver_pushes(self) -> int:
        return self.sandbox.deliver_outbound_messages()

    def expire_sessions(self) -> None:
        self.sandbox.expire_sessions()

    def logins(self) -> int:
        counts = self.sandbox.request_counts()
        return sum(n for (_method, path), n in counts.items() if "Soap" in path or "oauth2" in path)


def _contact_values(canonical: dict[str, Any], email_field: str) -> dict[str, Any]:
    """``email`` and ``name`` as a contact's columns: the mapped email, and the name's parts
    (the mapped name is the full name both CRMs compute from them), ``firstname`` and
    ``lastname`` here, renamed by each driver."""
    values: dict[str, Any] = {}
    for key, value in canonical.items():
        if key == "email":
            values[email_field] = value
        elif key == "name":
            first, _, last = str(value).rpartition(" ")
            values.update(firstname=first or None, lastname=last)
        else:
            raise KeyError(f"update_contact: no canonical contact field {key!r}")
    return values
