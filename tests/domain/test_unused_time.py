"""The unused part of a paid period, per whole UTC day, rounded half up per line."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from connector.domain.unused_time import BilledLine, UnusedTimeError, exact_text, unused_credit

START = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # a 30-day period: Nov 1 → Dec 1, 09:30 UTC
END = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _line(amount: int, discount: int = 0, line_id: str = "il_1") -> BilledLine:
    return BilledLine(line_id, "Platform", amount, discount, START, END)


@pytest.mark.parametrize(
    ("currency", "amount", "discount", "moment", "unused", "exact", "credit"),
    [
        # mid-period: Nov 11 12:00 leaves 19 whole days (Nov 12 09:30 ... Dec 1 09:30)
        ("usd", 30000, 0, datetime(2026, 11, 11, 12, 0, tzinfo=UTC), 19, Fraction(19000), 19000),
        # JPY has no minor unit: 1,000 yen x 19/30 = 633.33 yen -> 633 (0.33 dropped)
        ("jpy", 1000, 0, datetime(2026, 11, 11, 12, 0, tzinfo=UTC), 19,
         Fraction(19000, 30), 633),
        # JPY rounding half up: 45 yen x 1/30 = 1.5 -> 2
        ("jpy", 45, 0, datetime(2026, 11, 30, 9, 0, tzinfo=UTC), 1, Fraction(3, 2), 2),
        # last day: less than a whole day left -> nothing unused
        ("usd", 30000, 0, datetime(2026, 11, 30, 9, 31, tzinfo=UTC), 0, Fraction(0), 0),
        # exactly one day before the end: one whole day unused
        ("usd", 30000, 0, datetime(2026, 11, 30, 9, 30, tzinfo=UTC), 1, Fraction(1000), 1000),
        # at the very start: the whole period
        ("usd", 30000, 0, START, 30, Fraction(30000), 30000),
        # a discounted period credits what was charged: (30000 - 6000) x 19/30
        ("usd", 30000, 6000, datetime(2026, 11, 11, 12, 0, tzinfo=UTC), 19,
         Fraction(15200), 15200),
        # 99.99 USD x 7/30 = 23.331 -> 23.33
        ("usd", 9999, 0, datetime(2026, 11, 23, 23, 59, tzinfo=UTC), 7,
         Fraction(9999 * 7, 30), 2333),
        # after the period's end: nothing unused
        ("usd", 30000, 0, datetime(2026, 12, 2, tzinfo=UTC), 0, Fraction(0), 0),
    ],
)  # fmt: skip
def test_unused_days_and_credit(
    currency: str,
    amount: int,
    discount: int,
    moment: datetime,
    unused: int,
    exact: Fraction,
    credit: int,
) -> None:
    result = unused_credit(currency, [_line(amount, discount)], moment)
    (line,) = result.lines
    assert (line.period_days, line.unused_days) == (30, unused)
    assert (line.exact, line.credit, result.total) == (exact, credit, credit)
    assert line.rounding == credit - exact


def test_each_line_is_rounded_and_the_total_is_their_sum() -> None:
    moment = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)  # 7 of 30 days unused
    result = unused_credit("usd", [_line(9999, line_id="a"), _line(101, line_id="b")], moment)
    assert [line.credit for line in result.lines] == [2333, 24]  # 2333.1, 23.5666...
    assert result.total == 2357
    assert result.exact == Fraction((9999 + 101) * 7, 30)


@pytest.mark.parametrize(
    ("line", "moment", "message"),
    [
        (BilledLine("x", "d", 100, 0, START.replace(tzinfo=None), END), START, "time zone"),
        (BilledLine("x", "d", 100, 0, START, END), START.replace(tzinfo=None), "time zone"),
        (BilledLine("x", "d", 100, 0, START, END.replace(hour=10)), START, "whole number"),
        (BilledLine("x", "d", 100, 200, START, END), START, "discounted by at most"),
        (BilledLine("x", "d", -5, 0, START, END), START, "0 or more"),
    ],
)
def test_periods_that_cannot_be_counted_are_refused(
    line: BilledLine, moment: datetime, message: str
) -> None:
    with pytest.raises(UnusedTimeError, match=message):
        unused_credit("usd", [line], moment)


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        (Fraction(5_650_000, 31), "usd", "USD 1,822.58064516…"),
        (Fraction(19_000, 30), "jpy", "JPY 633.333333…"),
        (Fraction(3, 2), "jpy", "JPY 1.500000"),
        (Fraction(19_000), "usd", "USD 190.00"),
        (Fraction(0), "usd", "USD 0.00"),
        (Fraction(1, 3), "kwd", "KWD 0.000333333…"),
    ],
)
def test_exact_amounts_are_shown_cut_with_an_ellipsis(
    value: Fraction, currency: str, text: str
) -> None:
    assert exact_text(value, currency) == text
