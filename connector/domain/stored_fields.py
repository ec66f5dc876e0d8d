"""Reading a value back from JSON dealbridge stored itself (a plan, an amendment): the wrong
type means the row was damaged or written by another version, so it is refused loudly rather
than coerced."""

from __future__ import annotations

from typing import TypeVar

_Choice = TypeVar("_Choice", bound=str)


def as_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def as_whole_number(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def as_choice(value: object, choices: tuple[_Choice, ...]) -> _Choice:
    for choice in choices:
        if value == choice:
            return choice
    raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
