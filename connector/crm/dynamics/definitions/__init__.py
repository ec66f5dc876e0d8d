"""The Dataverse tables, columns, choices, lookups and alternate keys dealbridge needs.

``python -m connector.crm.dynamics.definitions --print`` prints them as the Web API calls
that create them (JSON); ``--apply`` performs those calls as the configured application user
(see ``docs/dynamics-setup.md``), skipping whatever already exists, so it can be re-run.

What is created, all in a ``dealbridge`` solution of a ``dealbridge`` publisher (prefix
``db``, choice value prefix 41850):

* table ``db_stripeinvoice`` (entity set ``db_stripeinvoices``): one row per Stripe invoice,
  with lookups to account and opportunity and the alternate key ``db_invoiceidkey`` on
  ``db_invoiceid`` (the Stripe invoice id) that upserts address;
* opportunity: contract start, term months, payment terms, payment method, plan status,
  summary and URL, subscription id and status, and the billing contact lookup;
* opportunity product: pricing schedule (a choice whose values ``mappings/dynamics.yaml``
  lists);
* account: Stripe customer id and URL, credit state, note and hold source, open balance, MRR
  and net billing (``creditonhold`` and ``creditlimit`` are native columns);
* product: Stripe product id (with the alternate key ``db_stripeproductidkey``) and active;
* price list item (``productpricelevel``): Stripe price id, with the alternate key
  ``db_stripepriceidkey`` that ``dealbridge import stripe`` upserts price list items by.

Lookups are created with their navigation property equal to their logical name, which is
what the shipped mapping assumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LANGUAGE",
    "OPTION_VALUE_PREFIX",
    "PUBLISHER",
    "SOLUTION",
    "Operation",
    "operations",
]

PUBLISHER = "dealbridge"
SOLUTION = "dealbridge"
PREFIX = "db"
OPTION_VALUE_PREFIX = 41850
LANGUAGE = 1033
#: Placeholder ``--apply`` replaces with the publisher's id once it exists.
PUBLISHER_ID = "{publisherid}"
SOLUTION_HEADER = {"MSCRM.SolutionUniqueName": SOLUTION}


@dataclass(frozen=True)
class Operation:
    """One Web API call; ``exists`` is a GET whose success means "already done"."""

    description: str
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    exists: str | None = None
    #: For ``exists`` on a collection: which item must be present, ``(property, value)``.
    exists_item: tuple[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "body": self.body,
        }


def label(text: str) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                "Label": text,
                "LanguageCode": LANGUAGE,
            }
        ],
    }


def _required(level: str = "None") -> dict[str, Any]:
    return {
        "Value": level,
        "CanBeChanged": True,
        "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
    }


def _column(kind: str, type_name: str, schema: str, display: str, about: str) -> dict[str, Any]:
    return {
        "@odata.type": f"Microsoft.Dynamics.CRM.{kind}AttributeMetadata",
        "AttributeTypeName": {"Value": type_name},
        "SchemaName": schema,
        "DisplayName": label(display),
        "Description": label(about),
        "RequiredLevel": _required(),
    }


def text(
    schema: str, display: str, about: str, length: int = 100, url: bool = False
) -> dict[str, Any]:
    column = _column("String", "StringType", schema, display, about)
    column.update({"MaxLength": length, "FormatName": {"Value": "Url" if url else "Text"}})
    return column


def memo(schema: str, display: str, about: str, length: int = 2000) -> dict[str, Any]:
    column = _column("Memo", "MemoType", schema, display, about)
    column.update({"MaxLength": length, "Format": "TextArea"})
    return column


def whole_number(schema: str, display: str, about: str, low: int, high: int) -> dict[str, Any]:
    column = _column("Integer", "IntegerType", schema, display, about)
    column.update({"Format": "None", "MinValue": low, "MaxValue": high})
    return column


def decimal(schema: str, display: str, about: str) -> dict[str, Any]:
    column = _column("Decimal", "DecimalType", schema, display, about)
    column.update({"Precision": 3, "MinValue": -100000000000, "MaxValue": 100000000000})
    return column


def money(schema: str, display: str, about: str) -> dict[str, Any]:
    column = _column("Money", "MoneyType", schema, display, about)
    column.update({"PrecisionSource": 2, "MinValue": -922337203685477, "MaxValue": 922337203685477})
    return column


def date_only(schema: str, display: str, about: str) -> dict[str, Any]:
    column = _column("DateTime", "DateTimeType", schema, display, about)
    column.update({"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}})
    return column


def yes_no(schema: str, display: str, about: str) -> dict[str, Any]:
    column = _column("Boolean", "BooleanType", schema, display, about)
    column.update(
        {
            "DefaultValue": True,
            "OptionSet": {
                "@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata",
                "OptionSetType": "Boolean",
                "TrueOption": {"Value": 1, "Label": label("Yes")},
                "FalseOption": {"Value": 0, "Label": label("No")},
            },
        }
    )
    return column


def _options(labels: Sequence[str]) -> dict[str, Any]:
    base = OPTION_VALUE_PREFIX * 10000
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
        "IsGlobal": False,
        "OptionSetType": "Picklist",
        "Options": [{"Value": base + i, "Label": label(text)} for i, text in enumerate(labels)],
    }


def choice(schema: str, display: str, about: str, labels: Sequence[str]) -> dict[str, Any]:
    column = _column("Picklist", "PicklistType", schema, display, about)
    column["OptionSet"] = _options(labels)
    return column


def choices(schema: str, display: str, about: str, labels: Sequence[str]) -> dict[str, Any]:
    column = _column("MultiSelectPicklist", "MultiSelectPicklistType", schema, display, about)
    column["OptionSet"] = _options(labels)
    return column


def _table_path(table: str) -> str:
    return f"EntityDefinitions(LogicalName='{table}')"


def add_column(table: str, column: Mapping[str, Any]) -> Operation:
    logical = str(column["SchemaName"]).lower()
    return Operation(
        description=f"column {table}.{logical}",
        method="POST",
        path=f"{_table_path(table)}/Attributes",
        body=column,
        headers=SOLUTION_HEADER,
        exists=f"{_table_path(table)}/Attributes(LogicalName='{logical}')?$select=LogicalName",
    )


def add_lookup(
    table: str, schema: str, target: str, target_key: str, display: str, about: str
) -> Operation:
    logical = schema.lower()
    relationship = f"{PREFIX}_{target}_{table}_{logical.removeprefix(PREFIX + '_')}"
    return Operation(
        description=f"lookup {table}.{logical} → {target}",
        method="POST",
        path="RelationshipDefinitions",
        body={
            "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "SchemaName": relationship,
            "ReferencedEntity": target,
            "ReferencedAttribute": target_key,
            "ReferencingEntity": table,
            "ReferencedEntityNavigationPropertyName": relationship,
            "ReferencingEntityNavigationPropertyName": logical,
            "CascadeConfiguration": {
                "Assign": "NoCascade",
                "Delete": "RemoveLink",
                "Merge": "NoCascade",
                "Reparent": "NoCascade",
                "Share": "NoCascade",
                "Unshare": "NoCascade",
            },
            "Lookup": {
                "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                "AttributeType": "Lookup",
                "AttributeTypeName": {"Value": "LookupType"},
                "SchemaName": schema,
                "DisplayName": label(display),
                "Description": label(about),
                "RequiredLevel": _required(),
            },
        },
        headers=SOLUTION_HEADER,
        exists=f"RelationshipDefinitions(SchemaName='{relationship}')?$select=SchemaName",
    )


def add_key(table: str, schema: str, column: str, display: str) -> Operation:
    logical = schema.lower()
    return Operation(
        description=f"alternate key {table}.{logical} on {column}",
        method="POST",
        path=f"{_table_path(table)}/Keys",
        body={
            "@odata.type": "Microsoft.Dynamics.CRM.EntityKeyMetadata",
            "SchemaName": schema,
            "DisplayName": label(display),
            "KeyAttributes": [column],
        },
        headers=SOLUTION_HEADER,
        exists=f"{_table_path(table)}?$select=LogicalName&$expand=Keys($select=LogicalName)",
        exists_item=("Keys", logical),
    )


PRICING_SCHEDULES = ("One-Time", "Monthly", "Quarterly", "Semi-Annual", "Annual")
PAYMENT_TERMS = ("Due on receipt", "Net 15", "Net 30", "Net 45", "Net 60")
PAYMENT_METHODS = ("ACH", "Credit Card")
#: How invoices are paid (``payment_collection``): read by its label.
PAYMENT_COLLECTIONS = ("Send invoice", "Charge automatically")
#: The deal types mappings/dynamics.yaml reads as changes to a live subscription.
DEAL_TYPES = (
    "New Customer",
    "Existing Customer - Upgrade",
    "Existing Customer - Downgrade",
    "Existing Customer - Replacement",
)
TOUCHED_TABLES = (
    "db_stripeinvoice",
    "opportunity",
    "opportunityproduct",
    "account",
    "product",
    "productpricelevel",
)


def operations() -> list[Operation]:
    """Every call, in the order they must run."""
    ops: list[Operation] = [
        Operation(
            description=f"publisher {PUBLISHER} (prefix {PREFIX})",
            method="POST",
            path="publishers",
            body={
                "uniquename": PUBLISHER,
                "friendlyname": "dealbridge",
                "description": "Publisher of the dealbridge Stripe Billing connector's columns",
                "customizationprefix": PREFIX,
                "customizationoptionvalueprefix": OPTION_VALUE_PREFIX,
            },
            exists=f"publishers?$select=publisherid&$filter=uniquename eq '{PUBLISHER}'",
        ),
        Operation(
            description=f"solution {SOLUTION}",
            method="POST",
            path="solutions",
            body={
                "uniquename": SOLUTION,
                "friendlyname": "dealbridge",
                "description": "Tables and columns the dealbridge connector reads and writes",
                "version": "1.0.0.0",
                "publisherid@odata.bind": f"/publishers({PUBLISHER_ID})",
            },
            exists=f"solutions?$select=solutionid&$filter=uniquename eq '{SOLUTION}'",
        ),
        Operation(
            description="table db_stripeinvoice",
            method="POST",
            path="EntityDefinitions",
            body={
                "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
                "SchemaName": "db_StripeInvoice",
                "DisplayName": label("Stripe Invoice"),
                "DisplayCollectionName": label("Stripe Invoices"),
                "Description": label("A Stripe invoice, kept up to date by dealbridge"),
                "OwnershipType": "UserOwned",
                "IsActivity": False,
                "HasActivities": False,
                "HasNotes": False,
                "Attributes": [
                    {
                        **text("db_Name", "Name", "Invoice number, or the Stripe id before one"),
                        "IsPrimaryName": True,
                    }
                ],
            },
            headers=SOLUTION_HEADER,
            exists=f"{_table_path('db_stripeinvoice')}?$select=LogicalName",
        ),
    ]
    invoice = "db_stripeinvoice"
    ops += [
        add_column(invoice, text("db_InvoiceId", "Stripe Invoice Id", "in_... (alternate key)")),
        add_column(invoice, text("db_Number", "Number", "Invoice number", 50)),
        add_column(
            invoice,
            text("db_Status", "Status", "draft, open, paid, void, uncollectible, deleted", 30),
        ),
        # Currency columns: the first one gives the table Dataverse's transactioncurrencyid
        # (the row's currency), which dealbridge sets to the invoice's currency, so the
        # amounts show and round in it (JPY without decimals, KWD with three).
        add_column(invoice, money("db_AmountDue", "Amount Due", "In the invoice currency")),
        add_column(invoice, money("db_AmountPaid", "Amount Paid", "In the invoice currency")),
        add_column(
            invoice, money("db_AmountRemaining", "Amount Remaining", "In the invoice currency")
        ),
        add_column(invoice, money("db_AmountCredited", "Amount Credited", "By credit notes")),
        add_column(invoice, text("db_Currency", "Currency", "ISO code, lowercase", 3)),
        add_column(invoice, date_only("db_IssueDate", "Issue Date", "When it was finalized")),
        add_column(invoice, date_only("db_DueDate", "Due Date", "When payment is due")),
        add_column(invoice, date_only("db_PaidDate", "Paid Date", "When it was paid")),
        add_column(
            invoice, text("db_HostedInvoiceUrl", "Invoice Page", "Stripe page", 1000, url=True)
        ),
        add_column(invoice, text("db_InvoicePdf", "Invoice PDF", "PDF link", 1000, url=True)),
        add_column(invoice, text("db_SubscriptionId", "Subscription Id", "sub_...")),
        add_column(invoice, text("db_BillingReason", "Billing Reason", "Why it was made", 50)),
        add_column(invoice, memo("db_LastPaymentError", "Last Payment Error", "Decline reason")),
        add_column(invoice, text("db_StripeCustomerId", "Stripe Customer Id", "cus_...")),
        add_lookup(invoice, "db_AccountId", "account", "accountid", "Account", "Billed account"),
        add_lookup(
            invoice, "db_OpportunityId", "opportunity", "opportunityid", "Opportunity", "Deal"
        ),
        add_key(invoice, "db_InvoiceIdKey", "db_invoiceid", "Stripe Invoice Id"),
    ]
    opportunity = "opportunity"
    ops += [
        add_column(opportunity, date_only("db_ContractStart", "Contract Start", "First day")),
        add_column(
            opportunity, whole_number("db_TermMonths", "Term (Months)", "Contract length", 1, 1200)
        ),
        add_column(
            opportunity,
            choice("db_PaymentTerms", "Payment Terms", "Invoice due date", PAYMENT_TERMS),
        ),
        add_column(
            opportunity,
            choices("db_PaymentMethod", "Payment Method", "How the customer pays", PAYMENT_METHODS),
        ),
        add_column(
            opportunity,
            choice("db_DealType", "Deal Type", "New business or a change", DEAL_TYPES),
        ),
        add_column(
            opportunity,
            choice(
                "db_PaymentCollection",
                "Payment Collection",
                "Charge the payment method on file, or send invoices",
                PAYMENT_COLLECTIONS,
            ),
        ),
        add_column(
            opportunity,
            whole_number("db_TrialDays", "Trial (Days)", "Free days before billing", 0, 730),
        ),
        add_column(
            opportunity, decimal("db_DealDiscount", "Deal Discount (%)", "Off every invoice")
        ),
        add_column(opportunity, text("db_PlanStatus", "Billing Plan Status", "By dealbridge", 50)),
        add_column(opportunity, memo("db_PlanSummary", "Billing Plan Summary", "By dealbridge")),
        add_column(opportunity, text("db_PlanUrl", "Billing Plan", "Review page", 500, url=True)),
        add_column(opportunity, text("db_StripeSubscriptionId", "Stripe Subscription Id", "sub_")),
        add_column(
            opportunity, text("db_SubscriptionStatus", "Subscription Status", "In Stripe", 50)
        ),
        add_lookup(
            opportunity,
            "db_BillingContactId",
            "contact",
            "contactid",
            "Billing Contact",
            "Who receives the invoices",
        ),
        add_column(
            "opportunityproduct",
            choice(
                "db_PricingSchedule",
                "Pricing Schedule",
                "How often the price is charged",
                PRICING_SCHEDULES,
            ),
        ),
    ]
    account = "account"
    ops += [
        add_column(account, text("db_StripeCustomerId", "Stripe Customer Id", "cus_...")),
        add_column(
            account, text("db_StripeCustomerUrl", "Stripe Customer", "Dashboard", 500, url=True)
        ),
        add_column(account, text("db_CreditState", "Credit State", "By dealbridge", 50)),
        add_column(account, memo("db_CreditNote", "Credit Note", "Why, by dealbridge")),
        add_column(
            account, text("db_CreditHoldSource", "Credit Hold Source", "person or dealbridge", 20)
        ),
        add_column(account, money("db_OpenBalance", "Open Balance", "Unpaid Stripe invoices")),
        add_column(account, money("db_MRR", "MRR", "Monthly recurring revenue in Stripe")),
        add_column(account, money("db_NetBilling", "Net Billing", "Billed less refunds")),
    ]
    product = "product"
    ops += [
        add_column(product, text("db_StripeProductId", "Stripe Product Id", "prod_...")),
        add_column(product, yes_no("db_StripeActive", "Active in Stripe", "Sellable in Stripe")),
        add_key(product, "db_StripeProductIdKey", "db_stripeproductid", "Stripe Product Id"),
    ]
    price_item = "productpricelevel"
    ops += [
        add_column(price_item, text("db_StripePriceId", "Stripe Price Id", "price_...")),
        add_key(price_item, "db_StripePriceIdKey", "db_stripepriceid", "Stripe Price Id"),
    ]
    entities = "".join(f"<entity>{t}</entity>" for t in TOUCHED_TABLES)
    publish = f"<importexportxml><entities>{entities}</entities></importexportxml>"
    ops.append(
        Operation(
            description="publish the customizations",
            method="POST",
            path="PublishXml",
            body={"ParameterXml": publish},
        )
    )
    return ops
