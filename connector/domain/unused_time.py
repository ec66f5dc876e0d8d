"""The unused part of a paid period, credited when a subscription is cancelled now.

Counted **per whole UTC day** (the rule in docs/billing-rules.md): a line billed for a period
of ``D`` days (its ``period.end - period.start``, in whole days) is worth ``net / D`` a day,
where ``net`` is the line's amount less its discounts. Cancelling at a moment leaves the
whole days from then to the period's end unused: ``U = floor((end - moment) / 1 day)``, so
the day in progress counts as used. The credit of the line is ``net * U / D``, exact as a
``Fraction``, then rounded half up to the currency's minor unit (each line separately, since a
credit note's lines carry whole minor units); the difference is shown to the person before
anything is sent. Per day rather than per second so the figure shown on the preview is the
figure sent when the person confirms the same day, and reads as "19 of 30 days".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from connector.domain.money import minor_units_exponent, round_half_up

DAY = timedelta(days=1)


class UnusedTimeError(ValueError):
    """The period cannot be credited as given; the message says why."""


@dataclass(frozen=True)
class BilledLine:
    """One invoice line of the period: ``amount`` before discounts, in minor units."""

    line_id: str
    description: str
    amount: int
    discount: int
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class LineCredit:
    line_id: str
    description: str
    net: int
    period_days: int
    unused_days: int
    exact: Fraction
    credit: int

    @property
    def rounding(self) -> Fraction:
        """What rounding added (positive) or dropped (negative), in minor units."""
        return self.credit - self.exact


@dataclass(frozen=True)
class UnusedCredit:
    currency: str
    lines: tuple[LineCredit, ...]

    @property
    def total(self) -> int:
        return sum(line.credit for line in self.lines)

    @property
    def exact(self) -> Fraction:
        return sum((line.exact for line in self.lines), Fraction(0))


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UnusedTimeError(f"{what} has no time zone; give it in UTC.")
    return moment


def _whole_days(span: timedelta) -> int:
    return span // DAY


def line_credit(line: BilledLine, moment: datetime) -> LineCredit:
    """The unused part of one line at ``moment`` (an aware datetime)."""
    start = _aware(line.period_start, "The period's start")
    end = _aware(line.period_end, "The period's end")
    at = _aware(moment, "The cancellation moment")
    if line.amount < 0 or line.discount < 0 or line.discount > line.amount:
        raise UnusedTimeError(
            f"Line {line.line_id} has amount {line.amount} and discount {line.discount}; only "
            "a charge of 0 or more, discounted by at most its amount, can be credited."
        )
    days = _whole_days(end - start)
    if days < 1 or end - start != days * DAY:
        raise UnusedTimeError(
            f"Line {line.line_id} covers {end - start}, not a whole number of days, so its "
            "unused days cannot be counted; credit it by hand in Stripe."
        )
    unused = min(max(_whole_days(end - at), 0), days) if at >= start else days
    net = line.amount - line.discount
    exact = Fraction(net * unused, days)
    return LineCredit(
        line_id=line.line_id, description=line.description, net=net, period_days=days,
        unused_days=unused, exact=exact, credit=round_half_up(exact),
    )  # fmt: skip


def unused_credit(currency: str, lines: list[BilledLine], moment: datetime) -> UnusedCredit:
    """The credit for every line of the period at ``moment``."""
    return UnusedCredit(currency, tuple(line_credit(line, moment) for line in lines))


def exact_text(value: Fraction, currency: str) -> str:
    """An exact amount of minor units in major units, for people: ``USD 1,822.58064516…``
    (six digits past the minor unit, cut, with "…" when it goes on; ``JPY 1.500000``; a
    whole number of minor units plainly: ``USD 190.00``)."""
    exponent = minor_units_exponent(currency)
    places = exponent + 6 if value.denominator != 1 else exponent
    scaled = value / 10**exponent
    digits = scaled.numerator * 10**places // scaled.denominator  # value >= 0: floor cuts
    cut = Fraction(digits, 10**places) != scaled
    return f"{currency.upper()} {Decimal(digits).scaleb(-places):,.{places}f}{'…' if cut else ''}"
