"""dealbridge's side of the Dataverse sandbox: its solution, its webhook and its sample org.

The sandbox (``sandboxes.dataverse``) is a Dynamics 365 Sales environment that knows nothing
of dealbridge. This module does to it what an admin does to a real environment, following
docs/dynamics-setup.md:

* step 3: the tables, columns, choices, lookups and alternate keys of
  ``connector.crm.dynamics.definitions``, sent as the same Web API calls ``--apply`` makes;
* step 4: change tracking on for opportunity and account;
* step 5: the web hook (``WebhookKey`` auth) and its four steps;
* step 8: the catalog an import writes to (a unit group, its base unit, a USD price list).

``sample_org_seed`` translates dealbridge's sample org (``sample_org.yaml``, written for
Salesforce) into the rows a Dynamics 365 org holding the same business would have, under the
same refs, so ``acme_platform`` is the same deal on both CRMs.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from connector.crm.dynamics.definitions import PUBLISHER, PUBLISHER_ID, operations
from connector.demo import SAMPLE_ORG
from sandboxes.dataverse import DataverseSandbox

#: docs/dynamics-setup.md step 5: (message, table, filtering attributes).
WEBHOOK_STEPS: list[tuple[str, str, list[str] | None]] = [
    ("Win", "opportunity", None),
    (
        "Update",
        "opportunity",
        [
            "statecode",
            "db_contractstart",
            "db_termmonths",
            "db_paymentterms",
            "db_paymentmethod",
            "db_billingcontactid",
            "db_dealtype",
            "db_paymentcollection",
            "db_trialdays",
            "db_dealdiscount",
            "discountamount",
        ],
    ),
    (
        "Update",
        "account",
        [
            "creditonhold",
            "creditlimit",
            "name",
            "address1_line1",
            "address1_city",
            "address1_stateorprovince",
            "address1_postalcode",
            "address1_country",
        ],
    ),
    # A billing contact's email or name, or the account it belongs to (the customer follows).
    ("Update", "contact", ["emailaddress1", "firstname", "lastname", "parentcustomerid"]),
]
#: Refs of the catalog rows the sample org adds (docs/dynamics-setup.md step 8).
UNIT_GROUP, UNIT, PRICE_LIST = "default_unit_group", "primary_unit", "stripe_prices"
#: Currencies an admin adds beside the base USD: (name, symbol, exchange rate, precision),
#: as Dynamics 365 offers them (Settings > Business Management > Currencies).
CURRENCIES = {
    "EUR": ("Euro", "€", "0.92", 2),
    "GBP": ("Pound Sterling", "£", "0.79", 2),
    "JPY": ("Japanese Yen", "¥", "151.3", 0),
}
#: Added to every sample org, so invoices in them have a record currency (the overview's
#: book bills a JPY customer).
ALWAYS = {"EUR", "JPY"}


class CustomizationFailed(RuntimeError):
    """The sandbox refused one of the definitions' calls (a bug on one side or the other)."""


def customize(sandbox: DataverseSandbox) -> None:
    """Steps 3 and 4: dealbridge's solution and change tracking, as the admin's calls."""
    for op in operations():
        body = _resolve(sandbox, op.body) if op.body is not None else None
        answer = sandbox.call(op.method, op.path, body, headers=op.headers)
        if answer.status >= 400:
            raise CustomizationFailed(f"{op.description}: {answer.body.decode()}")
    for table in ("opportunity", "account"):
        answer = sandbox.call(
            "PUT", f"EntityDefinitions(LogicalName='{table}')", {"ChangeTrackingEnabled": True}
        )
        if answer.status >= 400:
            raise CustomizationFailed(f"change tracking on {table}: {answer.body.decode()}")


def _resolve(sandbox: DataverseSandbox, body: Any) -> Any:
    """The publisher's id where the definitions leave a placeholder for it."""
    if isinstance(body, Mapping):
        return {key: _resolve(sandbox, value) for key, value in body.items()}
    if isinstance(body, str) and PUBLISHER_ID in body:
        [publisher] = sandbox.find("publisher", uniquename=PUBLISHER)
        return body.replace(PUBLISHER_ID, str(publisher["publisherid"]))
    return body


def register_webhook(sandbox: DataverseSandbox, url: str, key: str) -> str:
    """Step 5: the web hook and its steps; returns the service endpoint's id."""
    return sandbox.register_webhook(url, key=key, steps=WEBHOOK_STEPS, name="dealbridge")


def catalog_options(sandbox: DataverseSandbox) -> dict[str, Any]:
    """The mapping options step 8 has an admin set for the sample org's catalog."""
    refs = sandbox.ids_by_ref()
    return {
        "product_unit_group_id": refs[UNIT_GROUP],
        "product_default_unit_id": refs[UNIT],
        "price_list_id": refs[PRICE_LIST],
        "price_list_currency": "USD",
    }


def dataverse_sandbox(
    seed: str | Path | Mapping[str, Any] | None = SAMPLE_ORG, **options: Any
) -> DataverseSandbox:
    """A Dataverse sandbox with dealbridge's solution deployed and change tracking on, and (by
    default) the sample org loaded: a Salesforce-format seed is translated first."""
    sandbox = DataverseSandbox(**options)
    customize(sandbox)
    if seed is not None:
        load_seed(sandbox, seed)
    return sandbox


def load_seed(sandbox: DataverseSandbox, seed: str | Path | Mapping[str, Any]) -> dict[str, str]:
    """Load a Dataverse seed, or a Salesforce-format one (the sample org) translated first."""
    data = _read(seed)
    return sandbox.load_seed(sample_org_seed(data) if _is_salesforce(data) else data)


def _read(seed: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(seed, Mapping):
        return dict(seed)
    path = Path(seed).resolve()
    return copy.deepcopy(_parsed(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int) -> dict[str, Any]:
    """A seed file's YAML, parsed once per version of the file: the demo and every test world
    load the same sample org, and pure-Python YAML parsing is most of a sandbox's start-up."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    return dict(loaded or {})


def _is_salesforce(data: Mapping[str, Any]) -> bool:
    records = data.get("records") or {}
    return any(name[:1].isupper() for name in records)


def _ref(value: Any) -> dict[str, str] | None:
    if isinstance(value, Mapping) and "ref" in value:
        return {"ref": str(value["ref"])}
    return None


def sample_org_seed(data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Salesforce sample org as Dataverse seed rows (see the module docstring).

    Differences a Dynamics org imposes: price book entries have no row of their own (an
    opportunity product carries its ``priceperunit``, a Salesforce line discount becomes its
    ``manualdiscountamount``, the amount off the whole line);
    Dynamics has no contact roles, so a ``Billing Contact`` role becomes the opportunity's
    ``db_billingcontactid``; an account's ``Billing_Contact__c`` is its ``primarycontactid``.
    """
    data = data if data is not None else _read(SAMPLE_ORG)
    records: Mapping[str, list[dict[str, Any]]] = data["records"]
    found = {
        str(r.get("CurrencyIsoCode")).upper()
        for rows in records.values()
        for r in rows
        if r.get("CurrencyIsoCode")
    }
    currencies = sorted((found | ALWAYS) - {"USD"})
    seed: dict[str, list[dict[str, Any]]] = {
        "transactioncurrency": [
            {
                "ref": f"currency_{code.lower()}",
                "isocurrencycode": code,
                "currencyname": CURRENCIES.get(code, (code, code, "1", 2))[0],
                "currencysymbol": CURRENCIES.get(code, (code, code, "1", 2))[1],
                "exchangerate": CURRENCIES.get(code, (code, code, "1", 2))[2],
                "currencyprecision": CURRENCIES.get(code, (code, code, "1", 2))[3],
            }
            for code in currencies
        ],
        "uomschedule": [{"ref": UNIT_GROUP, "name": "Default Unit", "baseuomname": "Primary Unit"}],
        "uom": [
            {
                "ref": UNIT,
                "name": "Primary Unit",
                "quantity": "1",
                "isschedulebaseuom": True,
                "uomscheduleid": {"ref": UNIT_GROUP},
            }
        ],
        "pricelevel": [
            {
                "ref": PRICE_LIST,
                "name": "Stripe Prices",
                "transactioncurrencyid": {"ref": "base_currency"},
            }
        ],
    }

    def currency(code: Any) -> dict[str, str]:
        text = str(code or "USD").upper()
        return {"ref": "base_currency" if text == "USD" else f"currency_{text.lower()}"}

    seed["product"] = [
        {
            "ref": p["ref"],
            "name": p["Name"],
            "productnumber": p.get("ProductCode"),
            "description": p.get("Description"),
            "defaultuomscheduleid": {"ref": UNIT_GROUP},
            "defaultuomid": {"ref": UNIT},
            "statecode": 0 if p.get("IsActive", True) else 1,
            "statuscode": 1 if p.get("IsActive", True) else 2,
        }
        for p in records.get("Product2", [])
    ]
    seed["account"] = [
        {
            "ref": a["ref"],
            "name": a["Name"],
            "address1_line1": a.get("BillingStreet"),
            "address1_city": a.get("BillingCity"),
            "address1_stateorprovince": a.get("BillingState"),
            "address1_postalcode": a.get("BillingPostalCode"),
            "address1_country": a.get("BillingCountry"),
            "telephone1": a.get("Phone"),
            "websiteurl": a.get("Website"),
            "transactioncurrencyid": currency(a.get("CurrencyIsoCode")),
            "creditonhold": bool(a.get("Credit_Hold__c", False)),
            "creditlimit": str(a["Credit_Limit__c"]) if a.get("Credit_Limit__c") else None,
            "db_creditholdsource": a.get("Credit_Hold_Source__c"),
            "db_creditnote": a.get("Credit_Note__c"),
        }
        for a in records.get("Account", [])
    ]
    seed["contact"] = [
        {
            "ref": c["ref"],
            "firstname": c.get("FirstName"),
            "lastname": c.get("LastName"),
            "jobtitle": c.get("Title"),
            "emailaddress1": c.get("Email"),
            "parentcustomerid": _ref(c.get("AccountId")),
        }
        for c in records.get("Contact", [])
    ]
    billing_roles = {
        str(role["OpportunityId"]["ref"]): _ref(role["ContactId"])
        for role in records.get("OpportunityContactRole", [])
        if role.get("Role") == "Billing Contact"
    }
    seed["opportunity"] = []
    for deal in records.get("Opportunity", []):
        won = deal.get("StageName") == "Closed Won"
        seed["opportunity"].append(
            {
                "ref": deal["ref"],
                "name": deal["Name"],
                "parentaccountid": _ref(deal["AccountId"]),
                "customerid": _ref(deal["AccountId"]),
                "transactioncurrencyid": currency(deal.get("CurrencyIsoCode")),
                "statecode": 1 if won else 0,
                "statuscode": 3 if won else 1,
                "estimatedclosedate": deal.get("CloseDate"),
                "actualclosedate": deal.get("CloseDate") if won else None,
                "db_contractstart": deal.get("Contract_Start_Date__c"),
                "db_termmonths": deal.get("Contract_Term_Months__c"),
                "db_paymentterms": {"label": deal["Payment_Terms__c"]}
                if deal.get("Payment_Terms__c")
                else None,
                "db_paymentmethod": {"label": deal["Payment_Method__c"]}
                if deal.get("Payment_Method__c")
                else None,
                "db_dealtype": {"label": deal["Type"]} if deal.get("Type") else None,
                "db_paymentcollection": {"label": deal["Payment_Collection__c"]}
                if deal.get("Payment_Collection__c")
                else None,
                "db_trialdays": deal.get("Trial_Days__c"),
                "db_dealdiscount": None
                if deal.get("Deal_Discount__c") is None
                else str(deal["Deal_Discount__c"]),
                "discountamount": None
                if deal.get("Deal_Discount_Amount__c") is None
                else str(deal["Deal_Discount_Amount__c"]),
                "db_billingcontactid": _ref(deal.get("Billing_Contact__c"))
                or billing_roles.get(deal["ref"]),
            }
        )
    entries = {e["ref"]: e["Product2Id"]["ref"] for e in records.get("PricebookEntry", [])}
    seed["opportunityproduct"] = []
    for line in records.get("OpportunityLineItem", []):
        price = Decimal(str(line["UnitPrice"]))
        # Dynamics keeps a line discount as an amount off the whole line.
        discount = price * Decimal(str(line["Quantity"])) * Decimal(str(line.get("Discount") or 0))
        seed["opportunityproduct"].append(
            {
                "opportunityid": _ref(line["OpportunityId"]),
                "productid": {"ref": entries[line["PricebookEntryId"]["ref"]]},
                "uomid": {"ref": UNIT},
                "quantity": str(line["Quantity"]),
                "priceperunit": str(price),
                **({"manualdiscountamount": str(discount / 100)} if discount else {}),
                "db_pricingschedule": {"label": line["Pricing_Schedule__c"]}
                if line.get("Pricing_Schedule__c")
                else None,
            }
        )
    updates = [
        {"ref": u["ref"], "primarycontactid": _ref(u["Billing_Contact__c"])}
        for u in (data.get("updates") or {}).get("Account", [])
        if _ref(u.get("Billing_Contact__c"))
    ]
    return {"records": seed, "updates": {"account": updates}}


def snippet(sandbox: DataverseSandbox) -> str:
    """Python a person pastes to act on the running sandbox with msal and requests."""
    return f'''import msal
from connector.crm.https_rewrite import HttpsRewriteSession

# msal speaks https only: send Entra ID's and the environment's URLs to the sandbox.
session = HttpsRewriteSession("{sandbox.url}")
app = msal.ConfidentialClientApplication(
    "{sandbox.client_id}", client_credential="{sandbox.client_secret}",
    authority="{sandbox.authority}", http_client=session, instance_discovery=False)
token = app.acquire_token_for_client(["{sandbox.environment_url}/.default"])["access_token"]
api = "{sandbox.environment_url}/api/data/v9.2"
headers = {{"Authorization": f"Bearer {{token}}"}}
print(session.get(f"{{api}}/accounts?$select=name,creditonhold,creditlimit",
                  headers=headers).json()["value"])
# Put Umbrella Health on credit hold (the account webhook step fires):
umbrella = session.get(f"{{api}}/accounts?$filter=name eq 'Umbrella Health Ltd'&$select=name",
                       headers=headers).json()["value"][0]["accountid"]
session.patch(f"{{api}}/accounts({{umbrella}})", json={{"creditonhold": True}}, headers=headers)
# Win an open opportunity (the Win webhook step fires):
stark = session.get(f"{{api}}/opportunities?$filter=statecode eq 0&$select=name",
                    headers=headers).json()["value"][0]["opportunityid"]
session.post(f"{{api}}/WinOpportunity", headers=headers, json={{
    "Status": 3, "OpportunityClose": {{
        "subject": "Won", "opportunityid@odata.bind": f"/opportunities({{stark}})"}}}})'''
