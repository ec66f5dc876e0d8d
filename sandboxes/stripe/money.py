"""Stripe's arithmetic on integer minor units: exact fractions, rounded once, half up.

Stripe rounds a computed amount to the nearest minor unit, halves up ("if the fee is 0.025,
we'll round up to 0.03"), and taxes each line item on its own before adding them up
(support.stripe.com/questions/rounding-rules-for-stripe-fees: 15% of $0.43 is $0.0645 →
$0.06 and of $4.84 is $0.7265 → $0.73, total tax $0.79). Every computation here is on
``Fraction``s of integers and rounds only the final amount, so no float ever touches money.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

_DECIMAL = re.compile(r"^-?\d+(\.\d{1,12})?$")


def parse_decimal(text: str) -> Fraction | None:
    """A decimal string (``"12.5"``, Stripe's ``*_decimal`` fields) as an exact fraction."""
    if not _DECIMAL.match(text):
        return None
    return Fraction(text)


def decimal_text(value: Fraction) -> str:
    """Stripe's rendering of a decimal: no exponent, no trailing zeros (``"12.5"``, ``"3"``)."""
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole = value.numerator // value.denominator
    rest = value - whole
    digits = ""
    while rest and len(digits) < 12:
        rest *= 10
        digit = rest.numerator // rest.denominator
        digits += str(digit)
        rest -= digit
    return f"{sign}{whole}.{digits.rstrip('0')}" if digits.rstrip("0") else f"{sign}{whole}"


def json_number(value: Fraction) -> int | float:
    """A rate (a percentage) as a JSON number: an int when whole. Rates are not money; a
    non-whole one can only be written as a JSON fraction (12.5 is exact in binary)."""
    return value.numerator if value.denominator == 1 else float(value)


def round_half_up(value: Fraction) -> int:
    """The nearest integer, halves away from zero (Stripe's rule for minor units)."""
    if value >= 0:
        return int((value + Fraction(1, 2)) // 1)
    return -int((-value + Fraction(1, 2)) // 1)


def percent_of(amount: int, percent: Fraction) -> int:
    return round_half_up(Fraction(amount) * percent / 100)


def inclusive_tax(gross: int, percent: Fraction) -> int:
    """The tax contained in a tax-inclusive ``gross``: gross - gross / (1 + rate)."""
    return round_half_up(Fraction(gross) - Fraction(gross) / (1 + percent / 100))


def distribute(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights``: each share rounded down, the units left
    over going to the largest remainders (earliest first on ties), so the shares add up to
    ``total`` exactly. How Stripe splits an amount-off discount across lines is not
    documented; this is the usual largest-remainder method."""
    whole = sum(weights)
    if whole <= 0 or total == 0:
        return [0 for _ in weights]
    exact = [Fraction(total * w, whole) for w in weights]
    shares = [int(x // 1) for x in exact]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for index in order[:left]:
        shares[index] += 1
    return shares


def unit_total(unit_amount_decimal: Fraction, quantity: int) -> int:
    """``unit_amount_decimal`` * ``quantity``, rounded once at the end."""
    return round_half_up(unit_amount_decimal * quantity)


def tiered_total(tiers: Sequence[dict[str, object]], mode: str, quantity: int) -> int:
    """A tiered price's amount for ``quantity``: ``volume`` prices all units at the tier the
    quantity falls in; ``graduated`` prices each unit at its own tier; each tier adds its
    flat amount once (docs.stripe.com/products-prices/pricing-models#tiered-pricing)."""
    total = Fraction(0)
    lower = 0
    for tier in tiers:
        up_to = tier["up_to"]
        unit = _tier_decimal(tier, "unit_amount")
        flat = _tier_decimal(tier, "flat_amount")
        top = quantity if up_to is None else min(quantity, int(str(up_to)))
        if mode == "volume":
            if up_to is None or quantity <= int(str(up_to)):
                return round_half_up(unit * quantity + flat) if quantity else 0
            continue
        if top > lower:
            total += unit * (top - lower) + flat
        if up_to is None or quantity <= int(str(up_to)):
            break
        lower = int(str(up_to))
    return round_half_up(total)


def _tier_decimal(tier: dict[str, object], key: str) -> Fraction:
    text = tier.get(f"{key}_decimal")
    if text is None:
        return Fraction(0)
    value = parse_decimal(str(text))
    return value if value is not None else Fraction(0)
