"""The standard tables of a Dynamics 365 Sales environment, with the columns the sandbox serves.

Only a subset of each table's columns is modelled (a real account has about 150); the names,
types, lengths, choices and relationship names are Dataverse's. A column that is not here
is "Could not find a property named …", as it would be in an environment without it.
"""

from __future__ import annotations

from decimal import Decimal

from .schema import Column, Relationship, Schema, Table, system_columns

MONEY_MIN = Decimal("-922337203685477")
MONEY_MAX = Decimal("922337203685477")


def text(name: str, length: int = 100, **extra: object) -> Column:
    return Column(name, "String", max_length=length, **extra)  # type: ignore[arg-type]


def memo(name: str, length: int = 2000) -> Column:
    return Column(name, "Memo", max_length=length)


def money(name: str, **extra: object) -> Column:
    return Column(
        name, "Money", precision=2, precision_source=2, min_value=MONEY_MIN,
        max_value=MONEY_MAX, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def decimal(name: str, precision: int, **extra: object) -> Column:
    return Column(name, "Decimal", precision=precision, **extra)  # type: ignore[arg-type]


def whole(name: str, low: int = -2147483648, high: int = 2147483647) -> Column:
    return Column(name, "Integer", min_value=Decimal(low), max_value=Decimal(high))


def yes_no(name: str, yes: str = "Yes", no: str = "No") -> Column:
    return Column(name, "Boolean", options={1: yes, 0: no})


def date_only(name: str) -> Column:
    return Column(name, "DateTime", date_only=True)


def when(name: str) -> Column:
    return Column(name, "DateTime")


def lookup(name: str, kind: str = "Lookup") -> Column:
    return Column(name, kind)


def choice(name: str, options: dict[int, str], kind: str = "Picklist") -> Column:
    return Column(name, kind, options=dict(options))


def _table(
    logical: str,
    entity_set: str,
    primary_name: str | None,
    columns: list[Column],
    *,
    ownership: str = "UserOwned",
    states: dict[int, str] | None = None,
    statuses: dict[int, str] | None = None,
    stateless: bool = False,
    change_tracking: bool = False,
    display: str = "",
) -> Table:
    table = Table(
        logical, entity_set, primary_name, ownership=ownership,
        change_tracking=change_tracking, display_name=display or logical,
    )  # fmt: skip
    table.add(Column(table.primary_key, "Uniqueidentifier", valid_for_update=False))
    for column in columns:
        table.add(column)
    for column in system_columns(ownership):
        if stateless and column.kind in ("State", "Status"):
            continue
        if column.logical_name == "statecode" and states:
            column.options = dict(states)
        if column.logical_name == "statuscode" and statuses:
            column.options = dict(statuses)
        table.add(column)
    return table


def _rel(
    schema: str, referenced: str, referencing: str, column: str, navigation: str | None = None
) -> Relationship:
    return Relationship(
        schema_name=schema,
        referenced_entity=referenced,
        referenced_attribute=f"{referenced}id",
        referencing_entity=referencing,
        referencing_attribute=column,
        referenced_navigation=schema,
        referencing_navigation=navigation or column,
    )


def standard_schema() -> Schema:
    tables = [
        _table(
            "systemuser",
            "systemusers",
            "fullname",
            [
                text("fullname", 200, valid_for_create=False, valid_for_update=False),
                text("firstname", 64),
                text("lastname", 64),
                text("internalemailaddress", 100),
                text("domainname", 1024),
                Column("applicationid", "Uniqueidentifier"),
                Column("azureactivedirectoryobjectid", "Uniqueidentifier"),
                yes_no("isdisabled", "Disabled", "Enabled"),
            ],
            ownership="BusinessOwned",
            stateless=True,
            display="User",
        ),
        _table(
            "transactioncurrency",
            "transactioncurrencies",
            "currencyname",
            [
                text("isocurrencycode", 5, required=True),
                text("currencyname", 100, required=True),
                text("currencysymbol", 10, required=True),
                decimal(
                    "exchangerate",
                    10,
                    required=True,
                    min_value=Decimal("0.0000000001"),
                    max_value=Decimal("100000000000"),
                ),
                whole("currencyprecision", 0, 4),
            ],
            ownership="OrganizationOwned",
            display="Currency",
        ),
        _table(
            "account",
            "accounts",
            "name",
            [
                text("name", 160, required=True),
                text("accountnumber", 20),
                text("telephone1", 50),
                text("websiteurl", 200, format="Url"),
                text("emailaddress1", 100, format="Email"),
                memo("description"),
                text("address1_line1", 250),
                text("address1_line2", 250),
                text("address1_city", 80),
                text("address1_stateorprovince", 50),
                text("address1_postalcode", 20),
                text("address1_country", 80),
                yes_no("creditonhold"),
                money("creditlimit"),
                money("revenue"),
                lookup("transactioncurrencyid"),
                lookup("primarycontactid"),
                lookup("parentaccountid"),
            ],
            display="Account",
        ),
        _table(
            "contact",
            "contacts",
            "fullname",
            [
                text("fullname", 160, valid_for_create=False, valid_for_update=False),
                text("firstname", 50),
                text("lastname", 50, required=True),
                text("jobtitle", 100),
                text("emailaddress1", 100, format="Email"),
                text("telephone1", 50),
                lookup("parentcustomerid", "Customer"),
                lookup("transactioncurrencyid"),
            ],
            display="Contact",
        ),
        _table(
            "opportunity",
            "opportunities",
            "name",
            [
                text("name", 300, required=True),
                memo("description", 2000),
                lookup("transactioncurrencyid"),
                lookup("parentaccountid"),
                lookup("parentcontactid"),
                lookup("customerid", "Customer"),
                lookup("pricelevelid"),
                money("estimatedvalue"),
                money("actualvalue"),
                money("totalamount", valid_for_create=False, valid_for_update=False),
                money("discountamount"),
                date_only("estimatedclosedate"),
                date_only("actualclosedate"),
                whole("closeprobability", 0, 100),
            ],
            states={0: "Open", 1: "Won", 2: "Lost"},
            statuses={1: "In Progress", 2: "On Hold", 3: "Won", 4: "Canceled", 5: "Out-Sold"},
            display="Opportunity",
        ),
        _table(
            "opportunityproduct",
            "opportunityproducts",
            "productdescription",
            [
                lookup("opportunityid"),
                lookup("productid"),
                lookup("uomid"),
                text("productdescription", 500),
                decimal("quantity", 5, required=True),
                money("priceperunit"),
                yes_no("isproductoverridden", "Write-In", "Existing"),
                yes_no("ispriceoverridden", "Override Price", "Use Default"),
                money("manualdiscountamount"),
                money("baseamount", valid_for_create=False, valid_for_update=False),
                money("extendedamount", valid_for_create=False, valid_for_update=False),
                lookup("transactioncurrencyid"),
            ],
            ownership="UserOwned",
            stateless=True,
            display="Opportunity Product",
        ),
        _table(
            "product",
            "products",
            "name",
            [
                text("name", 100, required=True),
                text("productnumber", 100),
                memo("description", 2000),
                lookup("defaultuomscheduleid"),
                lookup("defaultuomid"),
                lookup("pricelevelid"),
                lookup("transactioncurrencyid"),
                whole("quantitydecimal", 0, 5),
                money("price"),
            ],
            ownership="OrganizationOwned",
            states={0: "Active", 1: "Retired", 2: "Draft", 3: "Under Revision"},
            statuses={1: "Active", 2: "Retired", 0: "Draft", 3: "Under Revision"},
            display="Product",
        ),
        _table(
            "uomschedule",
            "uomschedules",
            "name",
            [
                text("name", 200, required=True),
                text("baseuomname", 100, required=True),
                memo("description", 2000),
            ],
            ownership="OrganizationOwned",
            display="Unit Group",
        ),
        _table(
            "uom",
            "uoms",
            "name",
            [
                text("name", 100, required=True),
                decimal("quantity", 10, required=True),
                yes_no("isschedulebaseuom"),
                lookup("uomscheduleid"),
                lookup("baseuom"),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Unit",
        ),
        _table(
            "pricelevel",
            "pricelevels",
            "name",
            [
                text("name", 100, required=True),
                memo("description", 200),
                date_only("begindate"),
                date_only("enddate"),
                lookup("transactioncurrencyid"),
            ],
            ownership="OrganizationOwned",
            display="Price List",
        ),
        _table(
            "productpricelevel",
            "productpricelevels",
            None,
            [
                lookup("pricelevelid"),
                lookup("productid"),
                lookup("uomid"),
                lookup("uomscheduleid"),
                lookup("transactioncurrencyid"),
                money("amount"),
                choice(
                    "pricingmethodcode",
                    {
                        1: "Currency Amount",
                        2: "Percent of List",
                        3: "Percent Markup - Current Cost",
                        4: "Percent Margin - Current Cost",
                        5: "Percent Markup - Standard Cost",
                        6: "Percent Margin - Standard Cost",
                    },
                ),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Price List Item",
        ),
        _table(
            "publisher",
            "publishers",
            "friendlyname",
            [
                text("uniquename", 256, required=True),
                text("friendlyname", 256),
                memo("description", 2000),
                text("customizationprefix", 8),
                whole("customizationoptionvalueprefix", 10000, 99999),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Publisher",
        ),
        _table(
            "solution",
            "solutions",
            "friendlyname",
            [
                text("uniquename", 65, required=True),
                text("friendlyname", 256),
                memo("description", 2000),
                text("version", 256),
                lookup("publisherid"),
                yes_no("ismanaged", "Managed", "Unmanaged"),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Solution",
        ),
        _table(
            "serviceendpoint",
            "serviceendpoints",
            "name",
            [
                text("name", 256, required=True),
                memo("description", 2000),
                text("url", 2000),
                choice(
                    "contract",
                    {
                        1: "OneWay",
                        2: "Queue",
                        3: "Rest",
                        4: "TwoWay",
                        5: "Topic",
                        6: "Queue_Persistent",
                        7: "EventHub",
                        8: "Webhook",
                        9: "EventGrid",
                    },
                ),
                choice(
                    "authtype",
                    {
                        1: "ACS",
                        2: "SASKey",
                        3: "SASToken",
                        4: "WebhookKey",
                        5: "HttpHeader",
                        6: "HttpQueryString",
                    },
                ),
                memo("authvalue", 4000),
                choice("messageformat", {1: ".NETBinary", 2: "Json", 3: "XML"}),
                choice("userclaim", {1: "None", 2: "UserId", 3: "UserInfo"}),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Service Endpoint",
        ),
        _table(
            "sdkmessage",
            "sdkmessages",
            "name",
            [text("name", 256, required=True)],
            ownership="OrganizationOwned",
            stateless=True,
            display="Sdk Message",
        ),
        _table(
            "sdkmessagefilter",
            "sdkmessagefilters",
            None,
            [
                lookup("sdkmessageid"),
                text("primaryobjecttypecode", 100),
                text("secondaryobjecttypecode", 100),
            ],
            ownership="OrganizationOwned",
            stateless=True,
            display="Sdk Message Filter",
        ),
        _table(
            "sdkmessageprocessingstep",
            "sdkmessageprocessingsteps",
            "name",
            [
                text("name", 256, required=True),
                memo("description", 256),
                lookup("sdkmessageid"),
                lookup("sdkmessagefilterid"),
                lookup("eventhandler"),
                choice(
                    "stage",
                    {
                        10: "Pre-validation",
                        20: "Pre-operation",
                        30: "Main Operation",
                        40: "Post-operation",
                    },
                ),
                choice("mode", {0: "Synchronous", 1: "Asynchronous"}),
                whole("rank", 0, 2147483647),
                text("filteringattributes", 100000),
                choice(
                    "supporteddeployment",
                    {
                        0: "Server Only",
                        1: "Microsoft Dynamics 365 Client for Outlook Only",
                        2: "Both",
                    },
                ),
                yes_no("asyncautodelete"),
            ],
            ownership="OrganizationOwned",
            states={0: "Enabled", 1: "Disabled"},
            statuses={1: "Enabled", 2: "Disabled"},
            display="Sdk Message Processing Step",
        ),
    ]
    relationships = [
        _rel("opportunity_parent_account", "account", "opportunity", "parentaccountid"),
        _rel("opportunity_parent_contact", "contact", "opportunity", "parentcontactid"),
        _rel("opportunity_customer_accounts", "account", "opportunity", "customerid",
             "customerid_account"),
        _rel("opportunity_customer_contacts", "contact", "opportunity", "customerid",
             "customerid_contact"),
        _rel("account_primary_contact", "contact", "account", "primarycontactid"),
        _rel("account_parent_account", "account", "account", "parentaccountid"),
        _rel("contact_customer_accounts", "account", "contact", "parentcustomerid",
             "parentcustomerid_account"),
        _rel("contact_customer_contacts", "contact", "contact", "parentcustomerid",
             "parentcustomerid_contact"),
        _rel("product_opportunities", "opportunity", "opportunityproduct", "opportunityid"),
        _rel("opportunityproduct_product", "product", "opportunityproduct", "productid"),
        _rel("unit_of_measurement_opportunity_products", "uom", "opportunityproduct", "uomid"),
        _rel("price_level_opportunties", "pricelevel", "opportunity", "pricelevelid"),
        _rel("unit_of_measure_schedule_product", "uomschedule", "product",
             "defaultuomscheduleid"),
        _rel("unit_of_measurement_products", "uom", "product", "defaultuomid"),
        _rel("price_level_products", "pricelevel", "product", "pricelevelid"),
        _rel("unit_of_measurement_schedule_conversions", "uomschedule", "uom", "uomscheduleid"),
        _rel("unit_of_measurement_base_unit", "uom", "uom", "baseuom"),
        _rel("price_level_product_price_levels", "pricelevel", "productpricelevel",
             "pricelevelid"),
        _rel("product_price_levels", "product", "productpricelevel", "productid"),
        _rel("unit_of_measurement_productpricelevel", "uom", "productpricelevel", "uomid"),
        _rel("unit_of_measure_schedule_productpricelevel", "uomschedule", "productpricelevel",
             "uomscheduleid"),
        _rel("publisher_solution", "publisher", "solution", "publisherid"),
        _rel("sdkmessageid_sdkmessagefilter", "sdkmessage", "sdkmessagefilter", "sdkmessageid"),
        _rel("sdkmessageid_sdkmessageprocessingstep", "sdkmessage", "sdkmessageprocessingstep",
             "sdkmessageid"),
        _rel("sdkmessagefilterid_sdkmessageprocessingstep", "sdkmessagefilter",
             "sdkmessageprocessingstep", "sdkmessagefilterid"),
        _rel("serviceendpoint_sdkmessageprocessingstep", "serviceendpoint",
             "sdkmessageprocessingstep", "eventhandler", "eventhandler_serviceendpoint"),
    ]  # fmt: skip
    for name in ("account", "contact", "opportunity", "opportunityproduct", "pricelevel",
                  "productpricelevel", "product"):  # fmt: skip
        relationships.append(
            _rel(f"TransactionCurrency_{name}", "transactioncurrency", name,
                 "transactioncurrencyid")
        )  # fmt: skip
    for owned in tables:
        if owned.ownership == "UserOwned":
            relationships.append(
                _rel(f"user_{owned.logical_name}", "systemuser", owned.logical_name, "ownerid",
                     "owninguser")
            )  # fmt: skip
    return Schema(tables, relationships)
