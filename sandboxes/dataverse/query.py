"""The OData query options the sandbox understands, parsed strictly.

``$select`` of columns and ``_<lookup>_value``; ``$expand`` of navigation properties with
nested ``$select``/``$expand``/``$filter``/``$orderby``/``$top`` (separated by ``;``);
``$filter`` comparisons (``eq ne gt ge lt le``) of a column, a lookup value or a
``navigation/column`` path with string, number, boolean, ``null``, GUID, date and date-time
literals, the functions ``contains``, ``startswith`` and ``endswith``, joined by
``and``/``or``/``not`` and parentheses; ``$orderby``, ``$top`` and ``$count``. A request the
Web API would refuse is refused (400); one it would serve but the sandbox does not answers
501, never a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .errors import DataverseError, NotImplementedBySandbox
from .values import Ref


class QueryError(DataverseError):
    """A query Dataverse itself would refuse (HTTP 400)."""

    def __init__(self, message: str, code: str = "0x80060888") -> None:
        super().__init__(400, code, message)


@dataclass
class Options:
    select: list[str] | None = None
    expand: dict[str, Options] = field(default_factory=dict)
    filter: str | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending)
    top: int | None = None
    count: bool = False


def split_top_level(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current = ""
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_options(params: dict[str, str]) -> Options:
    options = Options()
    for name, value in params.items():
        if name == "$select":
            options.select = [c.strip() for c in value.split(",") if c.strip()]
        elif name == "$expand":
            for item in split_top_level(value, ","):
                match = re.fullmatch(r"([A-Za-z0-9_]+)(?:\((.*)\))?", item, re.DOTALL)
                if not match:
                    raise QueryError(f"Syntax error in $expand at '{item}'.", "0x0")
                nested = dict(
                    part.split("=", 1) for part in split_top_level(match.group(2) or "", ";")
                )
                options.expand[match.group(1)] = parse_options(nested)
        elif name == "$filter":
            options.filter = value
        elif name == "$orderby":
            for item in value.split(","):
                words = item.split()
                if (
                    not words
                    or len(words) > 2
                    or (len(words) == 2 and words[1] not in ("asc", "desc"))
                ):
                    raise QueryError(f"Syntax error in $orderby at '{item}'.", "0x0")
                options.orderby.append((words[0], len(words) == 2 and words[1] == "desc"))
        elif name == "$top":
            if not value.isdigit():
                raise QueryError(f"Invalid value '{value}' for $top query option found.", "0x0")
            options.top = int(value)
        elif name == "$count":
            if value not in ("true", "false"):
                raise QueryError(f"'{value}' is not a valid count option.", "0x0")
            options.count = value == "true"
        elif name in ("$skiptoken", "$deltatoken"):
            continue
        elif name.startswith("$"):
            if name in ("$apply", "$search", "$skip", "$format", "$compute", "$levels"):
                raise NotImplementedBySandbox(f"The query option {name}")
            raise QueryError(f"The query parameter {name} is not supported", "0x80060888")
        elif name in ("fetchXml", "savedQuery", "userQuery"):
            raise NotImplementedBySandbox(f"The {name} parameter")
        # other (non-$) parameters are ignored, as OData services do
    return options


# ---------------------------------------------------------------------- $filter

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![\dT])"
    r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<paren>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))"
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}

Resolve = Callable[[str], Any]  # a property path -> its value on the row being tested


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"Syntax error at position {position} in '{text}'.", "0x0")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("Syntax error: the $filter ends too soon.", "0x0")
        self.position += 1
        return token

    def expression(self) -> Callable[[Resolve], bool]:
        left = self.conjunction()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conjunction(self) -> Callable[[Resolve], bool]:
        left = self.unary()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def unary(self) -> Callable[[Resolve], bool]:
        if self.peek() == ("word", "not"):
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        if self.peek() == ("paren", "("):
            self.take()
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise QueryError("Syntax error: ')' expected.", "0x0")
            return inner
        return self.comparison()

    def comparison(self) -> Callable[[Resolve], bool]:
        kind, path = self.take()
        if kind != "word":
            raise QueryError(f"Syntax error at '{path}': a property was expected.", "0x0")
        if self.peek() == ("paren", "("):
            return self.function(path)
        kind, operator = self.take()
        if kind != "word" or operator not in _COMPARISONS:
            raise QueryError(f"Syntax error at '{operator}': an operator was expected.", "0x0")
        literal = self.literal()
        return lambda resolve: compare(resolve(path), operator, literal)

    def function(self, name: str) -> Callable[[Resolve], bool]:
        """``contains(col,'x')``, ``startswith(…)``, ``endswith(…)``: case-insensitive, as the
        database collation compares text."""
        tests: dict[str, Callable[[str, str], bool]] = {
            "contains": lambda value, text: text in value,
            "startswith": lambda value, text: value.startswith(text),
            "endswith": lambda value, text: value.endswith(text),
        }
        if name not in tests:
            raise NotImplementedBySandbox(f"The $filter function {name}()")
        self.take()  # (
        kind, path = self.take()
        if kind != "word":
            raise QueryError(f"Syntax error at '{path}': a property was expected.", "0x0")
        if self.take() != ("paren", ","):
            raise QueryError(f"Syntax error: {name}() takes a property and a string.", "0x0")
        text = self.literal()
        if self.take() != ("paren", ")"):
            raise QueryError("Syntax error: ')' expected.", "0x0")
        if not isinstance(text, str):
            raise QueryError(f"{name}() compares text with a string literal.", "0x0")
        test = tests[name]

        def matches(resolve: Resolve) -> bool:
            value = resolve(path)
            return isinstance(value, str) and test(value.casefold(), text.casefold())

        return matches

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return Decimal(text)
        if kind == "guid":
            return text.lower()
        if kind == "date":
            return text
        if kind == "datetime":
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "word" and text in ("true", "false"):
            return text == "true"
        if kind == "word" and text == "null":
            return None
        raise QueryError(f"Syntax error at '{text}': a literal was expected.", "0x0")


def compile_filter(text: str) -> Callable[[Resolve], bool]:
    parser = _Parser(text)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise QueryError(f"Syntax error at '{parser.peek()}' in $filter.", "0x0")
    return predicate


def _comparable(value: Any) -> Any:
    if isinstance(value, Ref):
        return value.id
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return value


def compare(value: Any, operator: str, literal: Any) -> bool:
    """Dataverse compares strings case-insensitively (the database collation)."""
    left, right = _comparable(value), _comparable(literal)
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.casefold(), right.casefold()
    if operator == "eq":
        return bool(left == right)
    if operator == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        return bool(
            {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[
                operator
            ]
        )
    except TypeError as exc:
        raise QueryError(f"The operator '{operator}' cannot compare these types.", "0x0") from exc
