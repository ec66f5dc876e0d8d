"""The fake environment's tables, read from the adapter tests' ``EntityDefinitions`` fixtures.

The fixtures in ``tests/crm/dynamics/fixtures/entity_definition__<table>.json`` are what a
real environment answers once the definitions script has run; the fake serves them for the
schema check *and* builds its tables from them, so a column the fake stores is a column the
environment really has. What ``EntityDefinitions`` does not carry in those payloads (choice
labels, primary name columns, which lookup a collection follows, date-only behaviour) is
listed here, taken from the definitions script and Dataverse's own tables.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.crm.dynamics.definitions import (
    OPTION_VALUE_PREFIX,
    PAYMENT_METHODS,
    PAYMENT_TERMS,
    PRICING_SCHEDULES,
)

ADAPTER_FIXTURES = Path(__file__).resolve().parents[2] / "crm" / "dynamics" / "fixtures"
FIXTURE_ENV_URL = "https://contoso.crm.dynamics.com"
TABLES = (
    "account",
    "contact",
    "opportunity",
    "opportunityproduct",
    "product",
    "transactioncurrency",
    "db_stripeinvoice",
    "uomschedule",
    "uom",
    "pricelevel",
    "productpricelevel",
)


def _options(labels: tuple[str, ...]) -> dict[int, str]:
    base = OPTION_VALUE_PREFIX * 10000
    return {base + i: label for i, label in enumerate(labels)}


#: Choice labels per table and column (state and status codes are choices too).
CHOICES: dict[str, dict[str, dict[int, str]]] = {
    "opportunity": {
        "statecode": {0: "Open", 1: "Won", 2: "Lost"},
        "statuscode": {1: "In Progress", 2: "On Hold", 3: "Won", 4: "Canceled", 5: "Out-Sold"},
        "db_paymentterms": _options(PAYMENT_TERMS),
        "db_paymentmethod": _options(PAYMENT_METHODS),
    },
    "opportunityproduct": {"db_pricingschedule": _options(PRICING_SCHEDULES)},
    "productpricelevel": {
        "pricingmethodcode": {
            1: "Currency Amount",
            2: "Percent of List",
            3: "Percent Markup - Current Cost",
            4: "Percent Margin - Current Cost",
            5: "Percent Markup - Standard Cost",
            6: "Percent Margin - Standard Cost",
        }
    },
}
DEFAULT_STATES = {
    "statecode": {0: "Active", 1: "Inactive"},
    "statuscode": {1: "Active", 2: "Inactive"},
}

#: The column a lookup to the table shows as its label (``..._value@...FormattedValue``).
PRIMARY_NAME = {
    "account": "name",
    "contact": "fullname",
    "opportunity": "name",
    "opportunityproduct": "productdescription",
    "product": "name",
    "transactioncurrency": "currencyname",
    "db_stripeinvoice": "db_name",
    "uomschedule": "name",
    "uom": "name",
    "pricelevel": "name",
    "productpricelevel": "productidname",
}

#: Collection-valued navigation properties: (table, property) -> (related table, its lookup).
COLLECTIONS = {
    ("opportunity", "product_opportunities"): ("opportunityproduct", "opportunityid"),
    ("account", "opportunity_parent_account"): ("opportunity", "parentaccountid"),
    ("account", "db_account_db_stripeinvoice"): ("db_stripeinvoice", "db_accountid"),
    ("opportunity", "db_opportunity_db_stripeinvoice"): ("db_stripeinvoice", "db_opportunityid"),
    ("product", "product_opportunities"): ("opportunityproduct", "productid"),
    ("pricelevel", "price_level_product_price_levels"): ("productpricelevel", "pricelevelid"),
}

#: DateTime columns with the *Date Only* behaviour: stored and served as ``2026-01-31``.
DATE_ONLY = {"db_contractstart", "db_issuedate", "db_duedate", "db_paiddate", "actualclosedate"}

#: Columns Dataverse maintains itself: a client may not write them.
SYSTEM_COLUMNS = {"createdon", "modifiedon", "versionnumber"}


@dataclass
class Lookup:
    column: str
    targets: dict[str, str]  # target table -> navigation property


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_key: str
    definition: dict[str, Any]  # the EntityDefinitions payload, served as is
    columns: dict[str, str] = field(default_factory=dict)  # logical name -> attribute type
    lookups: dict[str, Lookup] = field(default_factory=dict)
    keys: list[list[str]] = field(default_factory=list)
    change_tracking: bool = True
    #: Choice options added to this environment (an admin adding "Weekly"), per column.
    added_choices: dict[str, dict[int, str]] = field(default_factory=dict)

    def navigation(self, name: str) -> tuple[str, str] | None:
        """``(lookup column, target table)`` of a single-valued navigation property."""
        for lookup in self.lookups.values():
            for target, navigation in lookup.targets.items():
                if navigation == name:
                    return lookup.column, target
        return None

    def kind(self, column: str) -> str | None:
        return self.columns.get(column)

    def choices(self, column: str) -> dict[int, str] | None:
        per_table = CHOICES.get(self.logical_name, {})
        if column in per_table:
            return {**per_table[column], **self.added_choices.get(column, {})}
        if column in DEFAULT_STATES and column in self.columns:
            return DEFAULT_STATES[column]
        return None

    def add_choice(self, column: str, label: str) -> int:
        """A new option on a choice column (value after the last one); returns its value."""
        options = self.choices(column)
        assert options is not None, f"{self.logical_name}.{column} is not a choice column"
        for value, text in options.items():
            if text == label:
                return value
        value = max(options) + 1
        self.added_choices.setdefault(column, {})[value] = label
        return value

    def drop_column(self, column: str) -> None:
        """Take a column out of the definition (an environment that lacks it)."""
        self.columns.pop(column, None)
        self.lookups.pop(column, None)
        self.definition["Attributes"] = [
            a for a in self.definition["Attributes"] if a.get("LogicalName") != column
        ]
        self.definition["ManyToOneRelationships"] = [
            r
            for r in self.definition.get("ManyToOneRelationships", [])
            if r.get("ReferencingAttribute") != column
        ]


def load_table(name: str, env_url: str) -> Table:
    text = (ADAPTER_FIXTURES / f"entity_definition__{name}.json").read_text(encoding="utf-8")
    definition = json.loads(text.replace(FIXTURE_ENV_URL, env_url))
    table = Table(
        logical_name=definition["LogicalName"],
        entity_set=definition["EntitySetName"],
        primary_key=f"{name}id",
        definition=copy.deepcopy(definition),
    )
    for attribute in definition["Attributes"]:
        kind = attribute["@odata.type"].rsplit(".", 1)[-1].removesuffix("AttributeMetadata")
        table.columns[attribute["LogicalName"]] = kind
    for relation in definition.get("ManyToOneRelationships", []):
        column = relation["ReferencingAttribute"]
        if column not in table.columns:
            continue  # a relationship whose lookup column the definition leaves out
        lookup = table.lookups.setdefault(column, Lookup(column, {}))
        lookup.targets[relation["ReferencedEntity"]] = relation[
            "ReferencingEntityNavigationPropertyName"
        ]
    for key in definition.get("Keys", []):
        table.keys.append(list(key["KeyAttributes"]))
    return table


def load_tables(env_url: str) -> dict[str, Table]:
    return {name: load_table(name, env_url) for name in TABLES}
