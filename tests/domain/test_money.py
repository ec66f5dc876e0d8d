from decimal import Decimal
from fractions import Fraction

import pytest

from connector.domain.money import (
    STRIPE_CURRENCIES,
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    format_money,
    from_minor_units,
    minor_units_exponent,
    normalize_currency,
    round_half_up,
    to_field_scale,
    to_minor_units,
)


def test_zero_and_three_decimal_currencies_are_all_stripe_currencies() -> None:
    assert ZERO_DECIMAL_CURRENCIES <= STRIPE_CURRENCIES
    assert THREE_DECIMAL_CURRENCIES <= STRIPE_CURRENCIES


def test_stripe_currencies_are_lowercase_iso_codes() -> None:
    assert all(len(c) == 3 and c.isascii() and c.islower() for c in STRIPE_CURRENCIES)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        pytest.param("usd", 2, id="usd-two-decimals"),
        pytest.param("EUR", 2, id="upper-case-accepted"),
        pytest.param("jpy", 0, id="jpy-zero-decimals"),
        pytest.param("krw", 0, id="krw-zero-decimals"),
        pytest.param("kwd", 3, id="kwd-three-decimals"),
        pytest.param("bhd", 3, id="bhd-three-decimals"),
    ],
)
def test_minor_units_exponent(currency: str, exponent: int) -> None:
    assert minor_units_exponent(currency) == exponent


@pytest.mark.parametrize(
    "currency",
    [
        pytest.param("xyz", id="unknown-code"),
        pytest.param("dollars", id="not-a-code"),
        pytest.param("", id="empty"),
    ],
)
def test_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(ValueError, match="not a currency Stripe can charge in"):
        minor_units_exponent(currency)


def test_normalize_currency_lowercases_and_strips() -> None:
    assert normalize_currency(" USD ") == "usd"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        pytest.param("1200.50", "usd", 120050, id="usd-string"),
        pytest.param(Decimal("1200.5"), "usd", 120050, id="usd-decimal-one-place"),
        pytest.param(12, "usd", 1200, id="usd-int"),
        pytest.param("0", "usd", 0, id="zero"),
        pytest.param("-5.25", "usd", -525, id="negative-credit"),
        pytest.param("500", "jpy", 500, id="jpy-no-multiplication"),
        pytest.param("500.0", "jpy", 500, id="jpy-trailing-zero-is-exact"),
        pytest.param("5.125", "kwd", 5125, id="kwd-three-places"),
        pytest.param(" 10.00 ", "USD", 1000, id="whitespace-and-upper-case"),
    ],
)
def test_to_minor_units(amount: Decimal | int | str, currency: str, minor: int) -> None:
    assert to_minor_units(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        pytest.param("10.005", "usd", "not a whole number of minor units", id="usd-third-place"),
        pytest.param("500.5", "jpy", "not a whole number of minor units", id="jpy-fraction"),
        pytest.param("1.0001", "kwd", "not a whole number of minor units", id="kwd-fourth"),
        pytest.param("ten", "usd", "not a number", id="not-a-number"),
        pytest.param("NaN", "usd", "not a finite amount", id="nan"),
        pytest.param("Infinity", "usd", "not a finite amount", id="infinity"),
    ],
)
def test_to_minor_units_refuses_inexact_or_invalid(
    amount: str, currency: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        to_minor_units(amount, currency)


@pytest.mark.parametrize(
    "amount",
    [pytest.param(10.5, id="float"), pytest.param(True, id="bool")],
)
def test_to_minor_units_refuses_floats_and_bools(amount: object) -> None:
    with pytest.raises(TypeError):
        to_minor_units(amount, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        pytest.param(120050, "usd", "1200.50", id="usd"),
        pytest.param(5, "usd", "0.05", id="usd-cents"),
        pytest.param(500, "jpy", "500", id="jpy"),
        pytest.param(5125, "kwd", "5.125", id="kwd"),
        pytest.param(-525, "usd", "-5.25", id="negative"),
    ],
)
def test_from_minor_units(minor: int, currency: str, major: str) -> None:
    result = from_minor_units(minor, currency)
    assert result == Decimal(major)
    assert str(result) == major


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        pytest.param(120050, "usd", "USD 1,200.50", id="usd-thousands"),
        pytest.param(0, "usd", "USD 0.00", id="usd-zero"),
        pytest.param(100000000, "eur", "EUR 1,000,000.00", id="eur-million"),
        pytest.param(1234567, "jpy", "JPY 1,234,567", id="jpy-no-decimals"),
        pytest.param(5125, "kwd", "KWD 5.125", id="kwd-three-decimals"),
        pytest.param(-525, "usd", "USD -5.25", id="negative"),
    ],
)
def test_format_money(minor: int, currency: str, text: str) -> None:
    assert format_money(minor, currency) == text


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        pytest.param(Fraction(5, 2), 3, id="half-rounds-up"),
        pytest.param(Fraction(7, 2), 4, id="half-rounds-up-not-to-even"),
        pytest.param(Fraction(-5, 2), -3, id="negative-half-away-from-zero"),
        pytest.param(Fraction(249, 100), 2, id="below-half-down"),
        pytest.param(Fraction(251, 100), 3, id="above-half-up"),
        pytest.param(Fraction(10000, 3), 3333, id="thirds"),
        pytest.param(Fraction(4), 4, id="integer-unchanged"),
    ],
)
def test_round_half_up(value: Fraction, rounded: int) -> None:
    assert round_half_up(value) == rounded


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        pytest.param("1234.56", "usd", id="usd"),
        pytest.param("98765", "jpy", id="jpy"),
        pytest.param("0.001", "omr", id="omr"),
    ],
)
def test_minor_units_round_trip(amount: str, currency: str) -> None:
    assert from_minor_units(to_minor_units(amount, currency), currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "scale", "expected"),
    [
        pytest.param(1_010, "kwd", 2, Decimal("1.01"), id="kwd-that-fits"),
        pytest.param(120_050, "usd", 2, Decimal("1200.50"), id="usd"),
        pytest.param(33_333, "jpy", 2, Decimal("33333"), id="jpy-has-no-decimals"),
        pytest.param(1_005, "kwd", 3, Decimal("1.005"), id="kwd-in-a-3-place-field"),
        pytest.param(-1_010, "kwd", 2, Decimal("-1.01"), id="negative"),
    ],
)  # fmt: skip
def test_to_field_scale(amount: int, currency: str, scale: int, expected: Decimal) -> None:
    assert to_field_scale(amount, currency, scale) == expected


@pytest.mark.parametrize(("amount", "currency"), [(1_005, "kwd"), (-1_001, "bhd")])
def test_to_field_scale_refuses_what_the_field_would_round(amount: int, currency: str) -> None:
    with pytest.raises(ValueError, match="needs 3 decimal places; MRR__c holds 2"):
        to_field_scale(amount, currency, 2, "MRR__c")
