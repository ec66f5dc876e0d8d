"""``CrmDriver`` for Dynamics 365: the scenarios' canonical names on the Dataverse sandbox.

Every name goes through ``mappings/dynamics.yaml``, like the adapter's; what a person does
in Dynamics is done to the sandbox's rows the way Dynamics does it: winning an opportunity
is ``WinOpportunity`` (``statecode`` 1, the ``Win`` webhook step), choices are written as
their option values, lookups as references; an edited opportunity product makes the sandbox
recalculate its opportunity, so change tracking sees the deal change.

(Kept beside ``crm_driver.py`` rather than in it so the two drivers can be edited apart.)
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from connector.demo.dataverse import PRICE_LIST
from connector.mappings import CrmMapping, load_mapping
from sandboxes.dataverse import DataverseSandbox, Ref
from tests.e2e.crm_driver import REPO, _contact_values


class DynamicsDriver:
    kind = "dynamics"

    def __init__(self, sandbox: DataverseSandbox) -> None:
        self.fake = sandbox
        self.mapping: CrmMapping = load_mapping(REPO / "mappings" / "dynamics.yaml", "dynamics")

    def ref(self, name: str) -> str:
        return self.fake.ref(name).id

    def _currency(self, code: str, *, force: bool) -> Ref:
        """The currency row of ``code``; with ``force``, one an admin adds if it is missing."""
        found = self.fake.find("transactioncurrency", isocurrencycode=code.upper())
        if found:
            return Ref("transactioncurrency", found[0]["transactioncurrencyid"])
        if not force:
            raise KeyError(f"the org has no currency {code}")
        currency = self.fake.add_currency(code.upper(), code.upper(), code.upper(), 1, 2)
        return Ref("transactioncurrency", currency)

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _plain(value: Any) -> Any:
        return value.id if isinstance(value, Ref) else value

    def _read(self, row: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        return {k: self._plain(row.get(str(v))) for k, v in fields.items() if v}

    def deal(self, ref: str) -> dict[str, Any]:
        row = self.fake.row(self.mapping.deal["object"], self.ref(ref))
        return self._read(row, dict(self.mapping.deal["writeback"]))

    def account(self, ref: str) -> dict[str, Any]:
        row = self.fake.row(self.mapping.account["object"], self.ref(ref))
        out = self._read(row, {**self.mapping.account_fields, **self.mapping.account["writeback"]})
        source = out.get("credit_hold_source")
        out["credit_hold_source"] = source.lower() if isinstance(source, str) else source
        return out

    def invoices(self) -> list[dict[str, Any]]:
        section = self.mapping.invoice
        fields = {"stripe_invoice_id": section["external_id"], **self.mapping.invoice_fields}
        return [self._read(r, fields) for r in self.fake.rows(section["object"])]

    def accounts(self) -> list[dict[str, Any]]:
        fields = self.mapping.account_fields
        stripe = self.mapping.account["writeback"]["stripe_customer_id"]
        return [
            {
                "id": r[str(fields["id"])],
                "name": r.get(str(fields["name"])),
                "stripe_customer_id": r.get(stripe),
            }
            for r in self.fake.rows(self.mapping.account["object"])
        ]

    def products(self) -> list[dict[str, Any]]:
        section = self.mapping.product
        fields = {"stripe_product_id": section["external_id"], **section["fields_"]}
        return [self._read(r, fields) for r in self.fake.rows(section["object"])]

    def price_entries(self) -> list[dict[str, Any]]:
        """Items of the sample org's price list made from a Stripe price
        (``db_stripepriceid``), with their product's Stripe id and the list's currency.
        A Dataverse price list item has no state of its own: ``active`` is None."""
        key = self.mapping.product["external_id"]
        out = []
        for item in self.fake.find("productpricelevel", pricelevelid=self._price_list()):
            if not item.get("db_stripepriceid"):
                continue
            product = self.fake.row("product", item["productid"].id)
            currency = self.fake.row("transactioncurrency", item["transactioncurrencyid"].id)
            out.append(
                {
                    "stripe_price_id": item["db_stripepriceid"],
                    "stripe_product_id": product.get(key),
                    "unit_price": item["amount"],
                    "currency": str(currency["isocurrencycode"]).lower(),
                    "active": None,
                }
            )
        return out

    def _price_list(self) -> Ref:
        return self.fake.ref(PRICE_LIST)

    # ------------------------------------------------------------------ writing

    def _deal_values(self, canonical: dict[str, Any], *, force: bool) -> dict[str, Any]:
        fields = self.mapping.deal_fields
        table = str(self.mapping.deal["object"])
        out: dict[str, Any] = {}
        for key, value in canonical.items():
            if key == "closed":
                continue
            if key == "billing_contact":
                column = self.mapping.deal["billing_contact"]["lookup_field"]
                out[column] = Ref("contact", self.ref(value)) if value else None
            elif key == "currency":
                lookup = str(fields["currency"]).split(".", 1)[0]
                out[lookup] = self._currency(value, force=force) if value else None
            elif key in ("payment_terms", "payment_collection"):
                column = str(fields[key])
                out[column] = self._choice(table, column, value, force=force)
            elif key == "payment_method":
                column = str(fields["payment_method"])
                labels = [v.strip() for v in str(value).split(";")] if value else []
                values = [str(self._choice(table, column, label, force=force)) for label in labels]
                out[column] = ",".join(values) or None
            else:
                column = str(fields[key])
                assert "." not in column, key
                out[column] = value.isoformat() if isinstance(value, date) else value
        return out

    def _choice(self, table: str, column: str, label: str | None, *, force: bool) -> int | None:
        if label is None:
            return None
        try:
            return self.fake.choice_value(table, column, label)
        except KeyError:
            if not force:
                raise
            return self.fake.add_choice(table, column, label)

    def _set_closed(self, deal_id: str, closed: bool) -> None:
        if closed:
            self.fake.win(deal_id)  # WinOpportunity
        else:  # ReopenOpportunity
            self.fake.update(
                self.mapping.deal["object"], deal_id, {"statecode": 0, "statuscode": 1}
            )

    def update_deal(self, ref: str, **canonical: Any) -> None:
        deal_id = self.ref(ref)
        values = self._deal_values(canonical, force=False)
        if values:
            self.fake.update(self.mapping.deal["object"], deal_id, values)
        if "closed" in canonical:
            self._set_closed(deal_id, bool(canonical["closed"]))

    def force_deal_values(self, ref: str, **canonical: Any) -> None:
        deal_id = self.ref(ref)
        values = self._deal_values(canonical, force=True)
        if "closed" in canonical:
            values["statecode"] = 1 if canonical["closed"] else 0
            values["statuscode"] = 3 if canonical["closed"] else 1
        self.fake.update(self.mapping.deal["object"], deal_id, values, fire=False)

    def update_line(self, deal_ref: str, index: int, **canonical: Any) -> None:
        deal_id = self.ref(deal_ref)
        section = self.mapping.line_item
        table = str(section["object"])
        lines = self.fake.find(table, opportunityid=Ref("opportunity", deal_id))
        fields = self.mapping.line_item_fields
        schedules = {
            v: int(k) for k, v in section["pricing_schedule_values"].items() if str(k).isdigit()
        }
        values: dict[str, Any] = {}
        for key, value in canonical.items():
            column = str(fields[key])
            if key == "pricing_schedule":
                # a schedule the mapping does not know is an option an admin added
                values[column] = schedules.get(value) or self.fake.add_choice(
                    table, column, str(value).capitalize()
                )
            elif key in ("quantity", "unit_price"):
                values[column] = Decimal(str(value))
            else:
                values[column] = value
        self.fake.update(table, lines[index][f"{table}id"], values)

    def set_credit(
        self, account_ref: str, *, hold: bool | None = None, limit: Decimal | None = None
    ) -> None:
        fields = self.mapping.account_fields
        values: dict[str, Any] = {}
        if hold is not None:
            values[str(fields["credit_hold"])] = hold
            if fields.get("credit_hold_source"):
                values[str(fields["credit_hold_source"])] = "Person" if hold else None
        if limit is not None:
            values[str(fields["credit_limit"])] = Decimal(str(limit)).quantize(Decimal("0.0001"))
        self.fake.update(self.mapping.account["object"], self.ref(account_ref), values)

    def update_contact(self, ref: str, **canonical: Any) -> None:
        values = _contact_values(canonical, self.mapping.contact_fields["email"])
        self.fake.update(str(self.mapping.contact["object"]), self.ref(ref), values)

    def update_account(self, ref: str, **canonical: Any) -> None:
        fields = self.mapping.account_fields
        values = {str(fields[k]): v for k, v in canonical.items()}
        self.fake.update(str(self.mapping.account["object"]), self.ref(ref), values)

    def set_down(self, down: bool) -> None:
        self.fake.set_down(down)

    def deliver_pushes(self) -> int:
        return self.fake.deliver_webhooks()

    def expire_sessions(self) -> None:
        self.fake.revoke_tokens()

    def logins(self) -> int:
        return self.fake.tokens_issued
