import copy
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from connector.domain.deal import (
    AccountRef,
    Address,
    BillingContact,
    Deal,
    InvalidDeal,
    LineItem,
    Problem,
    deal_to_json,
    parse_deal,
    parse_payment_method,
    parse_payment_terms,
)

from .builders import deal_json, line_item


def test_a_valid_deal_parses_into_the_canonical_dataclasses() -> None:
    assert parse_deal(deal_json()) == Deal(
        id="006000000000001",
        name="Acme renewal 2025",
        currency="usd",
        contract_start=date(2025, 3, 1),
        contract_months=12,
        payment_terms="Net 30",
        payment_method="Credit Card",
        billing_contact=BillingContact(name="Ada Payer", email="ap@acme.example"),
        account=AccountRef(
            id="001000000000001",
            name="Acme Corp",
            address=Address(
                line1="1 Market St",
                city="San Francisco",
                state="CA",
                postal_code="94105",
                country="US",
            ),
        ),
        line_items=(
            LineItem(
                product="Platform license",
                sku="PLAT-1",
                quantity=10,
                unit_amount=12000,
                pricing_schedule="monthly",
                product_id="prod_123",
            ),
        ),
    )


@pytest.mark.parametrize(
    ("changes", "attribute", "expected"),
    [
        pytest.param({"currency": "USD"}, "currency", "usd", id="currency-any-case-lowercased"),
        pytest.param({"currency": " Eur "}, "currency", "eur", id="currency-whitespace-trimmed"),
        pytest.param({"name": None}, "name", None, id="name-optional"),
        pytest.param({"payment_terms": None}, "payment_terms", None, id="terms-optional"),
        pytest.param({"payment_terms": "  "}, "payment_terms", None, id="blank-terms-are-none"),
        pytest.param({"payment_method": None}, "payment_method", None, id="method-optional"),
        pytest.param(
            {"payment_terms": "Net 30 EOM"},
            "payment_terms",
            "Net 30 EOM",
            id="terms-text-kept-for-the-plan-to-judge",
        ),
        pytest.param(
            {"contract_start": date(2025, 3, 1)},
            "contract_start",
            date(2025, 3, 1),
            id="date-object-accepted-from-python-callers",
        ),
        pytest.param(
            {"contract_months": 24.0}, "contract_months", 24, id="integral-float-months-accepted"
        ),
    ],
)
def test_accepted_variations(changes: dict[str, Any], attribute: str, expected: object) -> None:
    assert getattr(parse_deal(deal_json(**changes)), attribute) == expected


@pytest.mark.parametrize(
    ("item", "attribute", "expected"),
    [
        pytest.param(
            line_item(quantity=3.0), "quantity", 3, id="salesforce-style-integral-float-quantity"
        ),
        pytest.param(line_item(unit_amount=0), "unit_amount", 0, id="free-item-allowed"),
        pytest.param(
            line_item(pricing_schedule="Annual"),
            "pricing_schedule",
            "annual",
            id="schedule-any-case",
        ),
        pytest.param(line_item(sku=None), "sku", None, id="sku-optional"),
        pytest.param(line_item(), "product_id", None, id="product-id-optional"),
    ],
)
def test_accepted_line_item_variations(
    item: dict[str, Any], attribute: str, expected: object
) -> None:
    deal = parse_deal(deal_json(line_items=[item]))
    assert getattr(deal.line_items[0], attribute) == expected


def test_a_deal_without_account_address_parses() -> None:
    deal = parse_deal(deal_json(account={"id": "001", "name": "Acme"}))
    assert deal.account == AccountRef(id="001", name="Acme", address=None)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        # billing contact
        pytest.param(
            {"billing_contact": None},
            "billing_contact.email",
            "the deal has no billing email",
            id="no-billing-contact",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada"}},
            "billing_contact.email",
            "the deal has no billing email",
            id="contact-without-email",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada", "email": "  "}},
            "billing_contact.email",
            "the deal has no billing email",
            id="blank-email",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada", "email": "ada-at-acme"}},
            "billing_contact.email",
            "'ada-at-acme' is not a valid email address",
            id="invalid-email",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada", "email": "ada@acme"}},
            "billing_contact.email",
            "not a valid email address",
            id="email-without-domain-dot",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada", "email": "ap@bad..example"}},
            "billing_contact.email",
            "'ap@bad..example' is not a valid email address",
            id="email-with-an-empty-domain-label",
        ),
        pytest.param(
            {"billing_contact": {"name": "Ada", "email": "ap@.acme.example"}},
            "billing_contact.email",
            "not a valid email address",
            id="email-domain-starting-with-a-dot",
        ),
        pytest.param(
            {"billing_contact": "ap@acme.example"},
            "billing_contact",
            "must be an object",
            id="contact-not-an-object",
        ),
        # currency
        pytest.param(
            {"currency": "xyz"},
            "currency",
            "'xyz' is not a currency Stripe can bill in",
            id="unsupported-currency",
        ),
        pytest.param({"currency": None}, "currency", "is missing", id="missing-currency"),
        pytest.param({"currency": 840}, "currency", "must be text", id="numeric-currency"),
        # contract start
        pytest.param(
            {"contract_start": "03/01/2025"},
            "contract_start",
            "expected YYYY-MM-DD",
            id="start-us-format",
        ),
        pytest.param(
            {"contract_start": "next monday"},
            "contract_start",
            "expected YYYY-MM-DD",
            id="start-not-a-date",
        ),
        pytest.param(
            {"contract_start": "2025-02-30"},
            "contract_start",
            "not a real calendar date",
            id="start-impossible-date",
        ),
        pytest.param(
            {"contract_start": "2025-03-01T00:00:00Z"},
            "contract_start",
            "expected YYYY-MM-DD",
            id="start-datetime-string",
        ),
        pytest.param(
            {"contract_start": 20250301}, "contract_start", "expected YYYY-MM-DD", id="start-number"
        ),
        pytest.param({"contract_start": None}, "contract_start", "is missing", id="start-missing"),
        # contract length
        pytest.param(
            {"contract_months": 0}, "contract_months", "at least one month", id="zero-months"
        ),
        pytest.param(
            {"contract_months": -12}, "contract_months", "at least one month", id="negative-months"
        ),
        pytest.param(
            {"contract_months": 1.5},
            "contract_months",
            "must be a whole number",
            id="fractional-months",
        ),
        pytest.param(
            {"contract_months": "12"},
            "contract_months",
            "must be a whole number",
            id="months-as-text",
        ),
        pytest.param(
            {"contract_months": True},
            "contract_months",
            "must be a whole number",
            id="months-boolean",
        ),
        pytest.param(
            {"contract_months": None}, "contract_months", "is missing", id="months-missing"
        ),
        # identity and account
        pytest.param({"id": None}, "id", "is missing", id="id-missing"),
        pytest.param({"id": ""}, "id", "is missing", id="id-blank"),
        pytest.param(
            {"account": None}, "account", "not linked to an account", id="account-missing"
        ),
        pytest.param(
            {"account": {"name": "Acme"}}, "account.id", "is missing", id="account-id-missing"
        ),
        pytest.param(
            {"account": {"id": "001"}}, "account.name", "is missing", id="account-name-missing"
        ),
        pytest.param(
            {"account": {"id": "001", "name": "Acme", "address": "1 Market St"}},
            "account.address",
            "must be an object",
            id="address-not-an-object",
        ),
        # optional text fields of the wrong type
        pytest.param({"payment_terms": 30}, "payment_terms", "must be text", id="terms-number"),
        pytest.param(
            {"payment_method": ["ACH"]}, "payment_method", "must be text", id="method-list"
        ),
        # line items as a whole
        pytest.param(
            {"line_items": []}, "line_items", "the deal has no products", id="no-line-items"
        ),
        pytest.param(
            {"line_items": None}, "line_items", "the deal has no products", id="line-items-missing"
        ),
        pytest.param(
            {"line_items": "Platform"}, "line_items", "must be a list", id="line-items-not-a-list"
        ),
        pytest.param(
            {"line_items": ["Platform"]},
            "line_items[0]",
            "must be an object",
            id="line-item-not-an-object",
        ),
    ],
)
def test_each_deal_problem_is_reported(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(deal_json(**changes))
    assert [p.field for p in caught.value.problems] == [field]
    assert message in caught.value.problems[0].message


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        pytest.param(
            line_item(quantity=0), "quantity", "must be at least 1, got 0", id="zero-quantity"
        ),
        pytest.param(
            line_item(quantity=-2), "quantity", "must be at least 1, got -2", id="negative-quantity"
        ),
        pytest.param(
            line_item(quantity=1.5),
            "quantity",
            "must be a whole number, got 1.5",
            id="fractional-quantity",
        ),
        pytest.param(
            line_item(quantity="3"), "quantity", "must be a whole number", id="quantity-as-text"
        ),
        pytest.param(line_item(quantity=None), "quantity", "is missing", id="quantity-missing"),
        pytest.param(
            line_item(unit_amount=-100), "unit_amount", "cannot be negative", id="negative-price"
        ),
        pytest.param(
            line_item(unit_amount=99.5),
            "unit_amount",
            "must be a whole number",
            id="fractional-minor-units",
        ),
        pytest.param(line_item(unit_amount=None), "unit_amount", "is missing", id="price-missing"),
        pytest.param(
            line_item(pricing_schedule="weekly"),
            "pricing_schedule",
            "'weekly' is not a pricing schedule dealbridge knows; use one of "
            "one_time, monthly, quarterly, semiannual, annual",
            id="unknown-pricing-schedule",
        ),
        pytest.param(
            line_item(pricing_schedule=None),
            "pricing_schedule",
            "is missing",
            id="pricing-schedule-missing",
        ),
        pytest.param(line_item(product=""), "product", "is missing", id="product-blank"),
        pytest.param(line_item(sku=12), "sku", "must be text", id="sku-number"),
    ],
)
def test_each_line_item_problem_is_reported_with_its_index(
    item: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(deal_json(line_items=[line_item(), item]))
    assert [p.field for p in caught.value.problems] == [f"line_items[1].{field}"]
    assert message in caught.value.problems[0].message


def test_all_problems_are_reported_at_once() -> None:
    data = deal_json(
        currency="xyz",
        contract_start="soon",
        billing_contact=None,
        line_items=[line_item(quantity=0), line_item(pricing_schedule="weekly")],
    )
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(data)
    assert [p.field for p in caught.value.problems] == [
        "currency",
        "contract_start",
        "billing_contact.email",
        "line_items[0].quantity",
        "line_items[1].pricing_schedule",
    ]


def test_invalid_deal_text_is_one_line_per_problem() -> None:
    error = InvalidDeal([Problem("currency", "bad"), Problem("line_items[0].quantity", "zero")])
    assert str(error) == "currency: bad\nline_items[0].quantity: zero"
    assert isinstance(error, ValueError)


def test_invalid_deal_survives_copying_with_its_problems() -> None:
    error = InvalidDeal([Problem("currency", "bad")])
    assert copy.deepcopy(error).problems == error.problems


def test_a_deal_that_is_not_an_object_is_one_problem() -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(["not", "a", "deal"])  # type: ignore[arg-type]
    assert caught.value.problems == (Problem("deal", "must be an object, got a list"),)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="full-deal"),
        pytest.param(
            {
                "name": None,
                "payment_terms": None,
                "payment_method": None,
                "account": {"id": "001", "name": "Acme", "address": None},
            },
            id="minimal-deal",
        ),
        pytest.param(
            {
                "line_items": [
                    line_item(pricing_schedule="one_time"),
                    line_item(pricing_schedule="annual", product_id="prod_9"),
                ]
            },
            id="several-line-items",
        ),
    ],
)
def test_deal_to_json_is_the_inverse_of_parse_deal(changes: dict[str, Any]) -> None:
    deal = parse_deal(deal_json(**changes))
    assert parse_deal(deal_to_json(deal)) == deal


def test_deal_to_json_writes_dates_as_iso_strings() -> None:
    assert deal_to_json(parse_deal(deal_json()))["contract_start"] == "2025-03-01"


# --- payment terms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days"),
    [
        pytest.param("Net 30", 30, id="net-30"),
        pytest.param("net30", 30, id="net30-no-space"),
        pytest.param("NET-45", 45, id="net-dash-45"),
        pytest.param("Net 60 days", 60, id="net-60-days"),
        pytest.param("  Net   15 ", 15, id="extra-whitespace"),
        pytest.param("Net 0", 0, id="net-0"),
        pytest.param("Due on receipt", 0, id="due-on-receipt"),
        pytest.param("Due upon receipt", 0, id="due-upon-receipt"),
        pytest.param("DUE ON RECEIPT", 0, id="due-on-receipt-upper"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
    ],
)
def test_parse_payment_terms(text: str | None, days: int | None) -> None:
    assert parse_payment_terms(text) == days


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("Net 30 EOM", "are not understood", id="end-of-month-terms"),
        pytest.param("2/10 Net 30", "are not understood", id="early-payment-discount"),
        pytest.param("30", "are not understood", id="bare-number"),
        pytest.param("Prepaid", "are not understood", id="prepaid"),
        pytest.param("Net 400", "more than 365 days", id="too-long"),
    ],
)
def test_unreadable_payment_terms_are_an_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_payment_terms(text)


# --- payment method --------------------------------------------------------------------------

ACH = ("us_bank_account", "customer_balance")
CARD_AND_ACH = ("card", "us_bank_account", "customer_balance")


@pytest.mark.parametrize(
    ("text", "types"),
    [
        pytest.param("ACH", ACH, id="ach-debit-plus-bank-transfer"),
        pytest.param("ach", ACH, id="ach-lower"),
        pytest.param("Credit Card", ("card",), id="credit-card"),
        pytest.param("Card", ("card",), id="card"),
        pytest.param("credit card", ("card",), id="credit-card-lower"),
        pytest.param("ACH;Credit Card", CARD_AND_ACH, id="salesforce-multiselect"),
        pytest.param("Credit Card;ACH", CARD_AND_ACH, id="multiselect-other-order"),
        pytest.param("ACH, Credit Card", CARD_AND_ACH, id="comma-separated"),
        pytest.param("credit card / ach", CARD_AND_ACH, id="slash-separated"),
        pytest.param("ACH and Card", CARD_AND_ACH, id="and-separated"),
        pytest.param("ACH;ACH", ACH, id="duplicates-collapse"),
        pytest.param("ACH;", ACH, id="trailing-separator"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param(" ; ", None, id="only-separators"),
    ],
)
def test_parse_payment_method(text: str | None, types: tuple[str, ...] | None) -> None:
    assert parse_payment_method(text) == types


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Check", id="check"),
        pytest.param("Wire", id="wire"),
        pytest.param("ACH;Check", id="one-unknown-among-known"),
        pytest.param("PayPal", id="paypal"),
    ],
)
def test_unknown_payment_method_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not understood; use 'ACH', 'Credit Card'"):
        parse_payment_method(text)


# --- unknown fields are refused by name, line discounts are read exactly ---------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(deal_json(discount_total=10), "discount_total", id="deal-discount-total"),
        pytest.param(deal_json(contract_days=45), "contract_days", id="contract-days"),
        pytest.param(
            deal_json(line_items=[line_item(colour="red")]), "line_items[0].colour", id="line"
        ),
        pytest.param(
            deal_json(billing_contact={"name": "A", "email": "a@b.example", "phone": "1"}),
            "billing_contact.phone",
            id="contact",
        ),
        pytest.param(
            deal_json(account={"id": "1", "name": "A", "vat": "X"}), "account.vat", id="account"
        ),
        pytest.param(
            deal_json(account={"id": "1", "name": "A", "address": {"zip": "1"}}),
            "account.address.zip",
            id="address",
        ),
    ],
)
def test_an_unknown_field_is_refused_by_name(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(data)
    assert [p.field for p in caught.value.problems] == [field]
    assert "is not a field dealbridge knows" in caught.value.problems[0].message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10", Decimal("10")), (15, Decimal("15")), ("12.5", Decimal("12.5")), ("0", None),
     (None, None)],
)  # fmt: skip
def test_a_line_discount_percent_is_read_exactly(value: object, expected: Decimal | None) -> None:
    deal = parse_deal(deal_json(line_items=[line_item(discount_percent=value)]))
    assert deal.line_items[0].discount_percent == expected
    assert parse_deal(deal_to_json(deal)) == deal


@pytest.mark.parametrize(
    ("value", "expected"), [(2300, 2300), ("2300", None), (0, None), (None, None), (3.0, 3)]
)
def test_a_line_discount_amount_is_read_as_minor_units(value: object, expected: int | None) -> None:
    data = deal_json(line_items=[line_item(discount_amount=value)])
    if value == "2300":  # text is not a number of minor units
        with pytest.raises(InvalidDeal):
            parse_deal(data)
        return
    deal = parse_deal(data)
    assert deal.line_items[0].discount_amount == expected
    assert parse_deal(deal_to_json(deal)) == deal


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"discount_amount": -1}, "the discount cannot be negative, got -1",
                     id="negative"),
        pytest.param({"discount_amount": 12.5}, "must be a whole number, got 12.5",
                     id="fraction-of-a-minor-unit"),
        pytest.param({"discount_amount": 1000, "discount_percent": "10"},
                     "the line has a discount_percent too; give one discount per line",
                     id="both-kinds"),
        pytest.param({"discount_amount": 20001, "quantity": 2, "unit_amount": 10000},
                     "the discount 20001 is more than the line bills (2 x 10000, in minor units)",
                     id="more-than-the-line"),
    ],
)  # fmt: skip
def test_a_bad_line_discount_amount_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(deal_json(line_items=[line_item(**changes)]))
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("line_items[0].discount_amount", message)
    ]


@pytest.mark.parametrize("value", [12.5, "ten", "-1", "100.5", True])
def test_a_bad_line_discount_is_refused(value: object) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(deal_json(line_items=[line_item(discount_percent=value)]))
    assert [p.field for p in caught.value.problems] == ["line_items[0].discount_percent"]
