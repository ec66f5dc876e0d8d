"""Standard objects and their standard fields, as a multi-currency org describes them.

Only the fields dealbridge and its demo touch are modelled; the rest of a real org's several
hundred standard fields are absent (querying them answers ``INVALID_FIELD``).
"""

from __future__ import annotations

from .schema import FieldDef, FieldType, ObjectDef, PicklistValue

CURRENCIES = ("USD", "EUR", "GBP")
CORPORATE_CURRENCY = "USD"


def picklist(*values: str, default: str | None = None) -> list[PicklistValue]:
    return [PicklistValue(value=v, label=v, default=v == default) for v in values]


def _f(
    name: str,
    type_: FieldType,
    label: str,
    **kwargs: object,
) -> FieldDef:
    defaults: dict[str, object] = {}
    if type_ in ("string", "email", "phone", "url", "picklist"):
        defaults["length"] = 40 if type_ in ("phone",) else 255
    if type_ == "textarea":
        defaults["length"] = 255
    if type_ == "multipicklist":
        defaults["length"] = 4099
    if type_ in ("currency", "double", "percent"):
        defaults.update(precision=18, scale=2)
    if type_ == "int":
        defaults.update(digits=9)
    if type_ == "boolean":
        defaults.update(nillable=False, defaulted_on_create=True, default_value=False)
    if type_ in ("id", "reference"):
        defaults["length"] = 18
    defaults.update(kwargs)
    return FieldDef(name=name, type=type_, label=label, **defaults)  # type: ignore[arg-type]


def ref(
    name: str,
    label: str,
    to: str,
    relationship: str,
    child: str | None,
    *,
    cascade: bool = False,
    required: bool = False,
    updateable: bool = True,
) -> FieldDef:
    return _f(
        name,
        "reference",
        label,
        reference_to=[to],
        relationship_name=relationship,
        child_relationship_name=child,
        cascade_delete=cascade,
        nillable=not required,
        updateable=updateable,
    )


def system_fields(owned: bool = True) -> list[FieldDef]:
    """Id, audit fields and (for owned objects) OwnerId, the same on every object."""
    readonly = {"createable": False, "updateable": False}
    fields = [
        _f(
            "Id",
            "id",
            "Record ID",
            nillable=False,
            defaulted_on_create=True,
            id_lookup=True,
            **readonly,
        ),
        _f("IsDeleted", "boolean", "Deleted", **readonly),
        _f(
            "CreatedDate",
            "datetime",
            "Created Date",
            nillable=False,
            defaulted_on_create=True,
            **readonly,
        ),
        ref("CreatedById", "Created By ID", "User", "CreatedBy", None, updateable=False),
        _f(
            "LastModifiedDate",
            "datetime",
            "Last Modified Date",
            nillable=False,
            defaulted_on_create=True,
            **readonly,
        ),
        ref(
            "LastModifiedById",
            "Last Modified By ID",
            "User",
            "LastModifiedBy",
            None,
            updateable=False,
        ),
        _f(
            "SystemModstamp",
            "datetime",
            "System Modstamp",
            nillable=False,
            defaulted_on_create=True,
            **readonly,
        ),
    ]
    for f in fields:
        if f.name in ("CreatedById", "LastModifiedById"):
            f.createable = False
            f.nillable = False
            f.defaulted_on_create = True
    if owned:
        owner = ref("OwnerId", "Owner ID", "User", "Owner", None)
        owner.nillable = False
        owner.defaulted_on_create = True
        fields.append(owner)
    return fields


def currency_field() -> FieldDef:
    return _f(
        "CurrencyIsoCode",
        "picklist",
        "Currency ISO Code",
        length=3,
        picklist_values=picklist(*CURRENCIES, default=CORPORATE_CURRENCY),
        restricted_picklist=True,
        defaulted_on_create=True,
        default_value=CORPORATE_CURRENCY,
    )


def address(prefix: str, label: str) -> list[FieldDef]:
    return [
        _f(f"{prefix}Street", "textarea", f"{label} Street"),
        _f(f"{prefix}City", "string", f"{label} City", length=40),
        _f(f"{prefix}State", "string", f"{label} State/Province", length=80),
        _f(f"{prefix}PostalCode", "string", f"{label} Zip/Postal Code", length=20),
        _f(f"{prefix}Country", "string", f"{label} Country", length=80),
    ]


OPPORTUNITY_STAGES: dict[str, int] = {
    "Prospecting": 10,
    "Qualification": 10,
    "Needs Analysis": 20,
    "Value Proposition": 50,
    "Id. Decision Makers": 60,
    "Perception Analysis": 70,
    "Proposal/Price Quote": 75,
    "Negotiation/Review": 90,
    "Closed Won": 100,
    "Closed Lost": 0,
}


def user() -> ObjectDef:
    return ObjectDef("User", "User", "Users", "005").add(
        *system_fields(owned=False),
        _f(
            "Username", "string", "Username", length=80, nillable=False, unique=True, id_lookup=True
        ),
        _f("FirstName", "string", "First Name", length=40),
        _f("LastName", "string", "Last Name", length=80, nillable=False),
        _f(
            "Name",
            "string",
            "Full Name",
            length=121,
            createable=False,
            updateable=False,
            name_field=True,
        ),
        _f("Email", "email", "Email", length=128, nillable=False),
        _f("Alias", "string", "Alias", length=8, nillable=False),
        _f("IsActive", "boolean", "Active", default_value=True),
    )


def account() -> ObjectDef:
    return ObjectDef("Account", "Account", "Accounts", "001").add(
        *system_fields(),
        _f("Name", "string", "Account Name", nillable=False, name_field=True),
        _f("AccountNumber", "string", "Account Number", length=40),
        _f(
            "Type",
            "picklist",
            "Account Type",
            length=255,
            picklist_values=picklist(
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Channel Partner / Reseller",
                "Installation Partner",
                "Technology Partner",
                "Other",
            ),
        ),
        _f(
            "Industry",
            "picklist",
            "Industry",
            picklist_values=picklist(
                "Agriculture",
                "Banking",
                "Biotechnology",
                "Construction",
                "Consulting",
                "Education",
                "Electronics",
                "Energy",
                "Finance",
                "Healthcare",
                "Hospitality",
                "Manufacturing",
                "Media",
                "Retail",
                "Technology",
                "Telecommunications",
                "Transportation",
                "Other",
            ),
        ),
        ref("ParentId", "Parent Account ID", "Account", "Parent", "ChildAccounts"),
        *address("Billing", "Billing"),
        *address("Shipping", "Shipping"),
        _f("Phone", "phone", "Account Phone"),
        _f("Website", "url", "Website"),
        _f("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        _f("NumberOfEmployees", "int", "Employees", digits=8),
        _f("Description", "textarea", "Account Description", length=32000),
        currency_field(),
    )


def contact() -> ObjectDef:
    return ObjectDef("Contact", "Contact", "Contacts", "003").add(
        *system_fields(),
        ref("AccountId", "Account ID", "Account", "Account", "Contacts", cascade=True),
        _f(
            "Salutation",
            "picklist",
            "Salutation",
            length=40,
            picklist_values=picklist("Mr.", "Ms.", "Mrs.", "Dr.", "Prof."),
        ),
        _f("FirstName", "string", "First Name", length=40),
        _f("LastName", "string", "Last Name", length=80, nillable=False),
        _f(
            "Name",
            "string",
            "Full Name",
            length=121,
            createable=False,
            updateable=False,
            name_field=True,
        ),
        _f("Title", "string", "Title", length=128),
        _f("Email", "email", "Email", length=80, id_lookup=True),
        _f("Phone", "phone", "Business Phone"),
        *address("Mailing", "Mailing"),
        currency_field(),
    )


def opportunity() -> ObjectDef:
    return ObjectDef("Opportunity", "Opportunity", "Opportunities", "006").add(
        *system_fields(),
        ref("AccountId", "Account ID", "Account", "Account", "Opportunities", cascade=True),
        _f("Name", "string", "Name", length=120, nillable=False, name_field=True),
        _f("Description", "textarea", "Description", length=32000),
        _f(
            "StageName",
            "picklist",
            "Stage",
            nillable=False,
            picklist_values=picklist(*OPPORTUNITY_STAGES),
            restricted_picklist=True,
        ),
        _f("Amount", "currency", "Amount", precision=18, scale=2),
        _f(
            "Probability",
            "percent",
            "Probability (%)",
            precision=3,
            scale=0,
            defaulted_on_create=True,
        ),
        _f("CloseDate", "date", "Close Date", nillable=False),
        _f(
            "Type",
            "picklist",
            "Opportunity Type",
            picklist_values=picklist(
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ),
        ),
        _f("NextStep", "string", "Next Step"),
        _f(
            "LeadSource",
            "picklist",
            "Lead Source",
            picklist_values=picklist(
                "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"
            ),
        ),
        _f("IsClosed", "boolean", "Closed", createable=False, updateable=False),
        _f("IsWon", "boolean", "Won", createable=False, updateable=False),
        _f(
            "HasOpportunityLineItem", "boolean", "Has Line Item", createable=False, updateable=False
        ),
        ref("Pricebook2Id", "Price Book ID", "Pricebook2", "Pricebook2", "Opportunities"),
        currency_field(),
    )


def product2() -> ObjectDef:
    return ObjectDef("Product2", "Product", "Products", "01t").add(
        *system_fields(owned=False),
        _f("Name", "string", "Product Name", nillable=False, name_field=True),
        _f("ProductCode", "string", "Product Code"),
        _f("Description", "textarea", "Product Description", length=4000),
        _f("IsActive", "boolean", "Active"),
        _f(
            "Family",
            "picklist",
            "Product Family",
            picklist_values=picklist("Platform", "Services", "Support", "Licences", "None"),
        ),
        _f(
            "QuantityUnitOfMeasure",
            "picklist",
            "Quantity Unit Of Measure",
            picklist_values=picklist("Each", "Seat", "Hour"),
        ),
        currency_field(),
    )


def pricebook2() -> ObjectDef:
    return ObjectDef("Pricebook2", "Price Book", "Price Books", "01s").add(
        *system_fields(owned=False),
        _f("Name", "string", "Price Book Name", nillable=False, name_field=True),
        _f("Description", "string", "Description"),
        _f("IsActive", "boolean", "Active"),
        _f("IsStandard", "boolean", "Is Standard Price Book", createable=False, updateable=False),
    )


def pricebook_entry() -> ObjectDef:
    return ObjectDef("PricebookEntry", "Price Book Entry", "Price Book Entries", "01u").add(
        *system_fields(owned=False),
        _f("Name", "string", "Product Name", createable=False, updateable=False, name_field=True),
        ref(
            "Pricebook2Id",
            "Price Book ID",
            "Pricebook2",
            "Pricebook2",
            "PricebookEntries",
            cascade=True,
            required=True,
            updateable=False,
        ),
        ref(
            "Product2Id",
            "Product ID",
            "Product2",
            "Product2",
            "PricebookEntries",
            cascade=True,
            required=True,
            updateable=False,
        ),
        _f("UnitPrice", "currency", "List Price", nillable=False),
        _f("IsActive", "boolean", "Active"),
        _f("UseStandardPrice", "boolean", "Use Standard Price"),
        _f("ProductCode", "string", "Product Code", createable=False, updateable=False),
        currency_field(),
    )


def opportunity_line_item() -> ObjectDef:
    return ObjectDef(
        "OpportunityLineItem", "Opportunity Product", "Opportunity Product", "00k"
    ).add(
        *system_fields(owned=False),
        ref(
            "OpportunityId",
            "Opportunity ID",
            "Opportunity",
            "Opportunity",
            "OpportunityLineItems",
            cascade=True,
            required=True,
            updateable=False,
        ),
        ref(
            "PricebookEntryId",
            "Price Book Entry ID",
            "PricebookEntry",
            "PricebookEntry",
            "OpportunityLineItems",
            updateable=False,
        ),
        ref("Product2Id", "Product ID", "Product2", "Product2", None, updateable=False),
        _f(
            "Name",
            "string",
            "Opportunity Product Name",
            length=376,
            createable=False,
            updateable=False,
            name_field=True,
        ),
        _f("ProductCode", "string", "Product Code", createable=False, updateable=False),
        _f("Quantity", "double", "Quantity", precision=12, scale=2, nillable=False),
        _f("UnitPrice", "currency", "Sales Price", precision=18, scale=2),
        _f("ListPrice", "currency", "List Price", createable=False, updateable=False),
        _f("TotalPrice", "currency", "Total Price", precision=18, scale=2),
        _f("Discount", "percent", "Discount", precision=18, scale=2),
        _f("ServiceDate", "date", "Date"),
        _f("Description", "string", "Line Description"),
        _f("SortOrder", "int", "Sort Order", digits=9),
        currency_field(),
    )


def opportunity_contact_role() -> ObjectDef:
    obj = ObjectDef(
        "OpportunityContactRole", "Opportunity Contact Role", "Opportunity Contact Role", "00K"
    ).add(
        *system_fields(owned=False),
        ref(
            "OpportunityId",
            "Opportunity ID",
            "Opportunity",
            "Opportunity",
            "OpportunityContactRoles",
            cascade=True,
            required=True,
            updateable=False,
        ),
        ref(
            "ContactId",
            "Contact ID",
            "Contact",
            "Contact",
            "OpportunityContactRoles",
            cascade=True,
            required=True,
        ),
        # "Billing Contact" is the value dealbridge asks admins to add (docs/salesforce-setup.md);
        # the standard Role picklist is unrestricted, so the API accepts any value anyway.
        _f(
            "Role",
            "picklist",
            "Role",
            length=40,
            picklist_values=picklist(
                "Business User",
                "Decision Maker",
                "Economic Buyer",
                "Economic Decision Maker",
                "Evaluator",
                "Executive Sponsor",
                "Influencer",
                "Technical Buyer",
                "Billing Contact",
                "Other",
            ),
        ),
        _f("IsPrimary", "boolean", "Primary"),
    )
    return obj


def iso_4217_codes() -> list[str]:
    """The currency codes ``CurrencyType.IsoCode`` accepts (ISO 4217)."""
    import pycountry

    return sorted(str(c.alpha_3) for c in pycountry.currencies)


def currency_type() -> ObjectDef:
    """The org's currencies (multi-currency orgs): inserting one makes it a ``CurrencyIsoCode``
    value everywhere (once active); it cannot be deleted, only deactivated."""
    fields = [f for f in system_fields(owned=False) if f.name != "IsDeleted"]
    return ObjectDef("CurrencyType", "Currency Type", "Currency Types", "01L", deletable=False).add(
        *fields,
        _f(
            "IsoCode",
            "picklist",
            "Currency ISO Code",
            length=40,
            picklist_values=picklist(*iso_4217_codes()),
            restricted_picklist=True,
            nillable=False,
            unique=True,
            updateable=False,
        ),
        _f("ConversionRate", "double", "Conversion Rate", precision=18, scale=6, nillable=False),
        _f("DecimalPlaces", "int", "Decimal Places", nillable=False),
        _f("IsActive", "boolean", "Active"),
        _f("IsCorporate", "boolean", "Corporate Currency", createable=False, updateable=False),
    )


def standard_objects() -> list[ObjectDef]:
    return [
        currency_type(),
        user(),
        account(),
        contact(),
        opportunity(),
        product2(),
        pricebook2(),
        pricebook_entry(),
        opportunity_line_item(),
        opportunity_contact_role(),
    ]
