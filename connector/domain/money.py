"""Money: integer minor units, currencies Stripe can charge in, exact conversions.

Every amount in dealbridge is an ``int`` of the currency's minor unit (cents for USD, yen for
JPY, fils for KWD), because that is what Stripe's API takes and because integers add up
exactly. ``Decimal`` appears only at the edges (CRM values, display) and ``Fraction`` only
inside calculations that divide; ``float`` never appears, since 0.1 + 0.2 is not 0.3.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

__all__ = [
    "STRIPE_CURRENCIES",
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "format_money",
    "from_minor_units",
    "minor_units_exponent",
    "normalize_currency",
    "round_half_up",
    "to_field_scale",
    "to_minor_units",
]

# Stripe's presentment currencies ("Supported currencies", docs.stripe.com/currencies), in
# lowercase as the API spells them. Kept as a closed list on purpose: a deal in a currency
# Stripe cannot charge must be stopped at validation, not at activation.
# fmt: off
STRIPE_CURRENCIES: frozenset[str] = frozenset(
    {
        "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
        "bdt", "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad",
        "cdf", "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp",
        "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl",
        "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf",
        "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
        "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok",
        "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
        "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl",
        "thb", "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd",
        "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
    }
)
# fmt: on

# Currencies whose amounts Stripe takes without multiplying: 500 JPY is ``500``.
# fmt: off
ZERO_DECIMAL_CURRENCIES: frozenset[str] = frozenset(
    {
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    }
)
# fmt: on

# Currencies with three decimals: 5.125 KWD is ``5125``.
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def normalize_currency(currency: str) -> str:
    """Return the lowercase ISO code Stripe uses, or raise ``ValueError``.

    CRMs hand us "USD", "usd" or " Usd "; Stripe wants "usd". Refusing unknown codes here
    means a wrong exponent can never be guessed for a currency we know nothing about.
    """
    code = currency.strip().lower()
    if code not in STRIPE_CURRENCIES:
        raise ValueError(f"{currency!r} is not a currency Stripe can charge in")
    return code


def minor_units_exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (0, 2 or 3)."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_minor_units(amount: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount (``"1200.50"``) to integer minor units (``120050``).

    Raises ``ValueError`` when the amount is not exact in minor units (10.005 USD), instead of
    rounding, because a silently rounded price is a billing error nobody asked for.
    ``float`` is refused for the same reason: it cannot represent most prices exactly.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"amount must be a Decimal, int or str, not {type(amount).__name__}")
    try:
        value = Decimal(amount.strip()) if isinstance(amount, str) else Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite amount")
    scaled = value.scaleb(minor_units_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{amount} {currency.strip().upper()} is not a whole number of minor units "
            f"(at most {minor_units_exponent(currency)} decimal places)"
        )
    return int(scaled)


def from_minor_units(amount: int, currency: str) -> Decimal:
    """Convert integer minor units to a ``Decimal`` in major units (120050 USD → 1200.50)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int of minor units, not {type(amount).__name__}")
    return Decimal(amount).scaleb(-minor_units_exponent(currency))


def to_field_scale(amount: int, currency: str, scale: int, field: str = "the field") -> Decimal:
    """``from_minor_units`` for a CRM field that holds ``scale`` decimal places, or
    ``ValueError`` when the amount needs more: KWD 1.005 is refused by a field with 2 decimal
    places rather than stored as 1.01 (CRMs round silently). KWD 1.010 fits and is written
    as 1.01."""
    value = from_minor_units(amount, currency)
    if value != value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP):
        raise ValueError(
            f"{format_money(amount, currency)} needs {minor_units_exponent(currency)} decimal "
            f"places; {field} holds {scale}: not written (never rounded)"
        )
    return value


def format_money(amount: int, currency: str) -> str:
    """Format minor units for people: ``format_money(120050, "usd") == "USD 1,200.50"``.

    The ISO code rather than a symbol, because "$" is ambiguous across a dozen currencies and
    the people reading this (RevOps, finance) work with several.
    """
    exponent = minor_units_exponent(currency)
    value = from_minor_units(amount, currency)
    return f"{currency.strip().upper()} {value:,.{exponent}f}"


def round_half_up(value: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (2.5 → 3, -2.5 → -3).

    Python's ``round`` rounds halves to even, which is not what an invoice reader expects.
    """
    numerator, denominator = value.numerator, value.denominator  # denominator > 0
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient
