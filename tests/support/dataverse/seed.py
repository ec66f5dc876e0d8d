"""The Salesforce sample org, translated into Dataverse rows with the same refs.

``sandboxes/salesforce/sample_org.yaml`` is the one seed: a ref like
``acme_platform`` must mean the same deal on both CRMs, so this module reads that file and
writes what a Dynamics 365 Sales org holding the same business would contain:

* currencies (``transactioncurrency``) for every ``CurrencyIsoCode`` used;
* the unit group every Dynamics org ships with (``uomschedule`` "Default Unit", base unit
  ``uom`` "Primary Unit") and one price list (``pricelevel`` "Stripe Prices", USD, empty)
  for ``dealbridge import stripe`` to fill (docs/dynamics-setup.md §8);
* products (``Product2`` → ``product``, in the default unit group; price book entries have
  no row of their own: an opportunity product carries its ``priceperunit``);
* accounts with ``creditonhold``/``creditlimit`` and ``primarycontactid`` (the account's
  billing contact, ``Billing_Contact__c`` in Salesforce);
* contacts (``parentcustomerid`` → their account);
* opportunities, won ones as ``statecode`` 1 / ``statuscode`` 3, with the choice values the
  definitions script creates for payment terms and methods; Dynamics has no contact roles,
  so a Salesforce ``Billing Contact`` role becomes the opportunity's ``db_billingcontactid``;
* opportunity products with ``db_pricingschedule`` choice values; a Salesforce line discount
  (percent) is folded into ``priceperunit``, the net price both CRMs then bill.

Ids are stable (``uuid5`` of the ref), so a failing test names the same GUIDs every run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from connector.demo import SAMPLE_ORG
from sandboxes.salesforce.seed import relative
from tests.support.dataverse.fake import DataverseFake
from tests.support.dataverse.query import Ref
from tests.support.dataverse.schema import CHOICES

NAMESPACE = uuid.UUID("6f3c2d1e-8b7a-4c5d-9e0f-1a2b3c4d5e6f")
CURRENCIES = {
    "USD": ("US Dollar", "$", Decimal("1.0000000000")),
    "EUR": ("Euro", "€", Decimal("0.9200000000")),
    "GBP": ("Pound Sterling", "£", Decimal("0.7900000000")),
}


def guid_for(ref: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ref))


def choice_value(table: str, column: str, label: str) -> int:
    for value, text in CHOICES[table][column].items():
        if text == label:
            return value
    raise KeyError(f"{table}.{column} has no choice labelled {label!r}")


def _relative_date(text: Any, now: datetime) -> str | None:
    """``today``, ``today+14d``, ``today-1m`` (the sample org's notation) → ISO date, computed
    exactly as the Salesforce sandbox computes it."""
    if text is None:
        return None
    if isinstance(text, date):
        return text.isoformat()
    value = relative(str(text), now)
    if value is None:
        return str(text)
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def _ref(value: Any) -> str | None:
    return str(value["ref"]) if isinstance(value, Mapping) and "ref" in value else None


class SampleOrg:
    """Loads the sample org into a fake; ``ids`` maps every ref to its row id."""

    def __init__(self, fake: DataverseFake, now: Callable[[], datetime]) -> None:
        self.fake = fake
        self.now = now
        self.ids: dict[str, str] = {}
        self.currencies: dict[str, str] = {}
        self.unit_group = guid_for("uomschedule:Default Unit")
        self.unit = guid_for("uom:Primary Unit")
        self.price_list = guid_for("pricelevel:Stripe Prices")

    def _catalog(self) -> None:
        """The default unit group and unit, and the (empty) price list in USD."""
        self.fake.insert(
            "uomschedule",
            {
                "uomscheduleid": self.unit_group,
                "name": "Default Unit",
                "baseuomname": "Primary Unit",
            },
        )
        self.fake.insert(
            "uom",
            {
                "uomid": self.unit,
                "name": "Primary Unit",
                "quantity": Decimal("1.0000000000"),
                "isschedulebaseuom": True,
                "uomscheduleid": Ref("uomschedule", self.unit_group),
            },
        )
        self.fake.insert(
            "pricelevel",
            {
                "pricelevelid": self.price_list,
                "name": "Stripe Prices",
                "transactioncurrencyid": self.currency("USD"),
            },
        )

    def currency(self, code: str) -> Ref:
        code = code.upper()
        if code not in self.currencies:
            name, symbol, rate = CURRENCIES.get(code, (code, code, Decimal("1.0000000000")))
            self.currencies[code] = self.fake.insert(
                "transactioncurrency",
                {
                    "transactioncurrencyid": guid_for(f"currency:{code}"),
                    "isocurrencycode": code,
                    "currencyname": name,
                    "currencysymbol": symbol,
                    "exchangerate": rate,
                },
            )
        return Ref("transactioncurrency", self.currencies[code])

    def load(self, path: str | Path = SAMPLE_ORG) -> dict[str, str]:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        records: Mapping[str, list[dict[str, Any]]] = data["records"]
        today = self.now()
        self.currency("USD")  # the organization's base currency
        self._catalog()
        products: dict[str, str] = {}
        for product in records.get("Product2", []):
            products[product["ref"]] = self._add(
                "product",
                product["ref"],
                {
                    "name": product["Name"],
                    "productnumber": product.get("ProductCode"),
                    "description": product.get("Description"),
                    "statecode": 0 if product.get("IsActive", True) else 1,
                    "defaultuomscheduleid": Ref("uomschedule", self.unit_group),
                    "defaultuomid": Ref("uom", self.unit),
                },
            )
        entries = {e["ref"]: _ref(e["Product2Id"]) for e in records.get("PricebookEntry", [])}
        for account in records.get("Account", []):
            limit = account.get("Credit_Limit__c")
            self._add(
                "account",
                account["ref"],
                {
                    "name": account["Name"],
                    "address1_line1": account.get("BillingStreet"),
                    "address1_city": account.get("BillingCity"),
                    "address1_stateorprovince": account.get("BillingState"),
                    "address1_postalcode": account.get("BillingPostalCode"),
                    "address1_country": account.get("BillingCountry"),
                    "transactioncurrencyid": self.currency(account.get("CurrencyIsoCode", "USD")),
                    "creditonhold": bool(account.get("Credit_Hold__c", False)),
                    "creditlimit": Decimal(str(limit)).quantize(Decimal("0.0001"))
                    if limit
                    else None,
                    "db_creditholdsource": account.get("Credit_Hold_Source__c"),
                    "db_creditnote": account.get("Credit_Note__c"),
                },
            )
        for contact in records.get("Contact", []):
            account_ref = _ref(contact.get("AccountId"))
            self._add(
                "contact",
                contact["ref"],
                {
                    "firstname": contact.get("FirstName"),
                    "lastname": contact.get("LastName"),
                    "emailaddress1": contact.get("Email"),
                    "parentcustomerid": Ref("account", self.ids[account_ref])
                    if account_ref
                    else None,
                },
            )
        billing_roles = {
            _ref(role["OpportunityId"]): _ref(role["ContactId"])
            for role in records.get("OpportunityContactRole", [])
            if role.get("Role") == "Billing Contact"
        }
        for deal in records.get("Opportunity", []):
            won = deal.get("StageName") == "Closed Won"
            contact_ref = _ref(deal.get("Billing_Contact__c")) or billing_roles.get(deal["ref"])
            terms = deal.get("Payment_Terms__c")
            methods = deal.get("Payment_Method__c")
            self._add(
                "opportunity",
                deal["ref"],
                {
                    "name": deal["Name"],
                    "parentaccountid": Ref("account", self.ids[str(_ref(deal["AccountId"]))]),
                    "transactioncurrencyid": self.currency(deal.get("CurrencyIsoCode", "USD")),
                    "statecode": 1 if won else 0,
                    "statuscode": 3 if won else 1,
                    "actualclosedate": _relative_date(deal.get("CloseDate"), today)
                    if won
                    else None,
                    "db_contractstart": _relative_date(deal.get("Contract_Start_Date__c"), today),
                    "db_termmonths": deal.get("Contract_Term_Months__c"),
                    "db_paymentterms": choice_value("opportunity", "db_paymentterms", terms)
                    if terms
                    else None,
                    "db_paymentmethod": ",".join(
                        str(choice_value("opportunity", "db_paymentmethod", m.strip()))
                        for m in methods.split(";")
                    )
                    if methods
                    else None,
                    "db_billingcontactid": Ref("contact", self.ids[contact_ref])
                    if contact_ref
                    else None,
                },
            )
        for index, line in enumerate(records.get("OpportunityLineItem", [])):
            deal_ref = str(_ref(line["OpportunityId"]))
            product_ref = entries[str(_ref(line["PricebookEntryId"]))]
            price = Decimal(str(line["UnitPrice"]))
            if line.get("Discount"):
                price = price * (100 - Decimal(str(line["Discount"]))) / 100
            schedule = line.get("Pricing_Schedule__c")
            deal_row = self.fake.row("opportunity", self.ids[deal_ref])
            self._add(
                "opportunityproduct",
                line.get("ref") or f"{deal_ref}:line{index}",
                {
                    "opportunityid": Ref("opportunity", self.ids[deal_ref]),
                    "productid": Ref("product", products[str(product_ref)]),
                    "quantity": Decimal(str(line["Quantity"])).quantize(Decimal("0.00001")),
                    "priceperunit": price.quantize(Decimal("0.0001")),
                    "db_pricingschedule": choice_value(
                        "opportunityproduct", "db_pricingschedule", schedule
                    )
                    if schedule
                    else None,
                    "transactioncurrencyid": deal_row.get("transactioncurrencyid"),
                },
            )
        for table, updates in (data.get("updates") or {}).items():
            for update in updates:
                if table == "Account" and _ref(update.get("Billing_Contact__c")):
                    contact = self.ids[str(_ref(update["Billing_Contact__c"]))]
                    self.fake.row("account", self.ids[update["ref"]])["primarycontactid"] = Ref(
                        "contact", contact
                    )
        return self.ids

    def _add(self, table: str, ref: str, values: dict[str, Any]) -> str:
        definition = self.fake.tables[table]
        known = {
            k: v
            for k, v in values.items()
            if k in definition.columns or k == "transactioncurrencyid"
        }
        record_id = self.fake.insert(table, {definition.primary_key: guid_for(ref), **known})
        self.ids[ref] = record_id
        return record_id


def load_sample_org(
    fake: DataverseFake, now: Callable[[], datetime] | None = None
) -> dict[str, str]:
    return SampleOrg(fake, now or (lambda: datetime.now(UTC))).load()
