"""A SOQL parser for the subset of the language dealbridge and its tests use.

Hand-written recursive descent. There is no maintained SOQL parsing library on PyPI that fits
(the few that exist are abandoned, build SQL for other databases, or pull in a parser
generator and a grammar for the whole language); the subset is small enough to parse directly.

Covered::

    SELECT field, Parent.Field, Parent.Parent.Field, (SELECT ... FROM ChildRelationship ...)
    SELECT COUNT() FROM ...
    FROM Object
    WHERE  =  !=  <>  <  <=  >  >=  IN (...)  NOT IN (...)  IN (SELECT Id FROM ...)  LIKE
           INCLUDES (...)  EXCLUDES (...)  AND / OR / NOT with parentheses
           literals: 'strings' with \\ escapes, numbers, null, true, false,
           2026-11-21, 2026-11-21T05:50:16Z (also +00:00, .000+0000),
           TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n, NEXT_N_DAYS:n, N_DAYS_AGO:n,
           THIS_MONTH, LAST_MONTH, NEXT_MONTH, THIS_YEAR, LAST_YEAR, NEXT_YEAR
    ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...
    LIMIT n  OFFSET n

As in Salesforce, ``a AND b OR c`` without parentheses is a syntax error. Errors carry the
character position so the message can point at it the way Salesforce's do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from .values import parse_datetime

KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES",
        "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL",
        "TRUE", "FALSE",
    }
)  # fmt: skip

DATE_LITERALS = frozenset(
    {
        "TODAY", "YESTERDAY", "TOMORROW", "THIS_MONTH", "LAST_MONTH", "NEXT_MONTH",
        "THIS_YEAR", "LAST_YEAR", "NEXT_YEAR",
    }
)  # fmt: skip
DATE_LITERALS_N = frozenset({"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+))
  | (?P<string>')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),.:])
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
    '"': '"', "'": "'", "\\": "\\", "_": "\\_", "%": "\\%",
}  # fmt: skip


class SoqlError(Exception):
    """A query Salesforce would reject; ``code`` is the REST errorCode."""

    def __init__(self, code: str, detail: str, pos: int) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.pos = pos

    def message(self, text: str) -> str:
        """Salesforce's message: the query line, a caret, the row and column, the problem."""
        before = text[: self.pos]
        row = before.count("\n") + 1
        line_start = before.rfind("\n") + 1
        line_end = text.find("\n", self.pos)
        line = text[line_start : line_end if line_end != -1 else len(text)]
        column = self.pos - line_start
        return f"\n{line}\n{' ' * column}^\nERROR at Row:{row}:Column:{column + 1}\n{self.detail}"


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    value: Any
    pos: int

    def is_kw(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


@dataclass
class FieldRef:
    path: list[str]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass
class CountAll:
    pos: int


@dataclass
class SubQuery:
    query: Query
    pos: int


SelectItem = FieldRef | CountAll | SubQuery


@dataclass
class DateRange:
    """A relative date literal such as ``TODAY`` or ``LAST_N_DAYS:30``."""

    name: str
    n: int | None = None


@dataclass
class Value:
    kind: Literal["string", "number", "null", "boolean", "date", "datetime", "date_literal"]
    value: Any
    pos: int


@dataclass
class Comparison:
    field: FieldRef
    op: str  # = != < <= > >= IN NOT IN LIKE INCLUDES EXCLUDES
    values: list[Value]
    subquery: Query | None = None


@dataclass
class BoolOp:
    op: Literal["AND", "OR"]
    items: list[Condition]


@dataclass
class Not:
    item: Condition


Condition = Comparison | BoolOp | Not


@dataclass
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool | None = None


@dataclass
class Query:
    select: list[SelectItem]
    sobject: str
    sobject_pos: int
    where: Condition | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    @property
    def is_count(self) -> bool:
        return any(isinstance(item, CountAll) for item in self.select)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos]}'", pos)
        kind = match.lastgroup or ""
        if kind == "ws":
            pos = match.end()
            continue
        if kind == "string":
            literal, end = _read_string(text, pos)
            tokens.append(Token("string", text[pos:end], literal, pos))
            pos = end
            continue
        raw = match.group()
        value: Any = raw
        if kind == "number":
            value = Decimal(raw)
        elif kind == "date":
            try:
                value = date.fromisoformat(raw)
            except ValueError:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"line 1:{pos} no viable alternative at character '{raw}'",
                    pos,
                ) from None
        elif kind == "datetime":
            try:
                value = parse_datetime(raw)
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{raw}'", pos) from None
        tokens.append(Token(kind, raw, value, pos))
        pos = match.end()
    tokens.append(Token("eof", "", None, len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text) or text[pos + 1] not in _ESCAPES:
                raise SoqlError(
                    "MALFORMED_QUERY", "Invalid string literal: invalid escape sequence", pos
                )
            out.append(_ESCAPES[text[pos + 1]])
            pos += 2
            continue
        if char == "'":
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>", len(text))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.current
        shown = "<EOF>" if token.kind == "eof" else token.text
        return SoqlError("MALFORMED_QUERY", f"unexpected token: '{shown}'", token.pos)

    def expect_kw(self, word: str) -> Token:
        if not self.current.is_kw(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> Token:
        if self.current.text != char or self.current.kind != "punct":
            raise self.unexpected()
        return self.advance()

    def at_punct(self, char: str) -> bool:
        return self.current.kind == "punct" and self.current.text == char

    # query := SELECT items FROM name [WHERE cond] [ORDER BY ...] [LIMIT n] [OFFSET n]
    def query(self, nested: bool = False) -> Query:
        self.expect_kw("SELECT")
        select = self.select_list()
        self.expect_kw("FROM")
        name_token = self.advance()
        if name_token.kind != "ident" or name_token.text.upper() in KEYWORDS:
            raise self.unexpected(name_token)
        query = Query(select=select, sobject=name_token.text, sobject_pos=name_token.pos)
        if self.current.is_kw("WHERE"):
            self.advance()
            query.where = self.condition()
        if self.current.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            query.order_by = self.order_list()
        if self.current.is_kw("LIMIT"):
            self.advance()
            query.limit = self.integer()
        if self.current.is_kw("OFFSET"):
            self.advance()
            query.offset = self.integer()
        if nested:
            if not self.at_punct(")"):
                raise self.unexpected()
        elif self.current.kind != "eof":
            raise self.unexpected()
        return query

    def integer(self) -> int:
        token = self.advance()
        if token.kind != "number" or not isinstance(token.value, Decimal):
            raise self.unexpected(token)
        if token.value != token.value.to_integral_value() or token.value < 0:
            raise self.unexpected(token)
        return int(token.value)

    def select_list(self) -> list[SelectItem]:
        items: list[SelectItem] = [self.select_item()]
        while self.at_punct(","):
            self.advance()
            items.append(self.select_item())
        return items

    def select_item(self) -> SelectItem:
        token = self.current
        if self.at_punct("("):
            self.advance()
            sub = self.query(nested=True)
            self.expect_punct(")")
            return SubQuery(sub, token.pos)
        if token.is_kw("COUNT") and self.tokens[self.index + 1].text == "(":
            self.advance()
            self.expect_punct("(")
            if not self.at_punct(")"):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "Aggregate functions such as COUNT(field) are not supported by the sandbox; "
                    "use COUNT()",
                    self.current.pos,
                )
            self.expect_punct(")")
            return CountAll(token.pos)
        return self.field_ref()

    def field_ref(self) -> FieldRef:
        token = self.advance()
        if token.kind != "ident" or token.text.upper() in KEYWORDS:
            raise self.unexpected(token)
        path = [token.text]
        while self.at_punct("."):
            self.advance()
            part = self.advance()
            if part.kind != "ident":
                raise self.unexpected(part)
            path.append(part.text)
        return FieldRef(path, token.pos)

    def order_list(self) -> list[OrderItem]:
        items = [self.order_item()]
        while self.at_punct(","):
            self.advance()
            items.append(self.order_item())
        return items

    def order_item(self) -> OrderItem:
        item = OrderItem(self.field_ref())
        if self.current.is_kw("ASC", "DESC"):
            item.descending = self.advance().text.upper() == "DESC"
        if self.current.is_kw("NULLS"):
            self.advance()
            if not self.current.is_kw("FIRST", "LAST"):
                raise self.unexpected()
            item.nulls_last = self.advance().text.upper() == "LAST"
        return item

    # condition := term ((AND|OR) term)*  -- one operator per level, as in SOQL
    def condition(self) -> Condition:
        first = self.term()
        if not self.current.is_kw("AND", "OR"):
            return first
        op: Literal["AND", "OR"] = "AND" if self.current.text.upper() == "AND" else "OR"
        items = [first]
        while self.current.is_kw("AND", "OR"):
            if self.current.text.upper() != op:
                raise self.unexpected()
            self.advance()
            items.append(self.term())
        return BoolOp(op, items)

    def term(self) -> Condition:
        if self.current.is_kw("NOT"):
            self.advance()
            return Not(self.term())
        if self.at_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        ref = self.field_ref()
        token = self.current
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Comparison(ref, op, [self.value()])
        if token.is_kw("LIKE"):
            self.advance()
            return Comparison(ref, "LIKE", [self.value()])
        if token.is_kw("NOT") and self.tokens[self.index + 1].is_kw("IN"):
            self.advance()
            self.advance()
            return self.in_list(ref, "NOT IN")
        if token.is_kw("IN"):
            self.advance()
            return self.in_list(ref, "IN")
        if token.is_kw("INCLUDES", "EXCLUDES"):
            self.advance()
            return self.in_list(ref, token.text.upper())
        raise self.unexpected()

    def in_list(self, ref: FieldRef, op: str) -> Comparison:
        self.expect_punct("(")
        if self.current.is_kw("SELECT") and op in ("IN", "NOT IN"):
            sub = self.query(nested=True)
            self.expect_punct(")")
            return Comparison(ref, op, [], subquery=sub)
        values = [self.value()]
        while self.at_punct(","):
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        return Comparison(ref, op, values)

    def value(self) -> Value:
        token = self.advance()
        if token.kind == "string":
            return Value("string", token.value, token.pos)
        if token.kind == "number":
            return Value("number", token.value, token.pos)
        if token.kind == "date":
            return Value("date", token.value, token.pos)
        if token.kind == "datetime":
            return Value("datetime", token.value, token.pos)
        if token.kind == "ident":
            word = token.text.upper()
            if word == "NULL":
                return Value("null", None, token.pos)
            if word in ("TRUE", "FALSE"):
                return Value("boolean", word == "TRUE", token.pos)
            if word in DATE_LITERALS:
                return Value("date_literal", DateRange(word), token.pos)
            if word in DATE_LITERALS_N:
                self.expect_punct(":")
                n = self.integer()
                return Value("date_literal", DateRange(word, n), token.pos)
        raise self.unexpected(token)


def parse(text: str) -> Query:
    """Parse a SOQL query; raises :class:`SoqlError` for malformed queries."""
    if not text.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>", 0)
    return _Parser(text).query()


def like_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a LIKE pattern (``%`` any run, ``_`` one char, ``\\%``/``\\_`` literal)."""
    out = []
    pos = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\" and pos + 1 < len(pattern) and pattern[pos + 1] in "%_":
            out.append(re.escape(pattern[pos + 1]))
            pos += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        pos += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def date_range(literal: DateRange, today: date) -> tuple[date, date]:
    """Inclusive first and last day a relative date literal covers (org timezone: UTC)."""
    name, n = literal.name, literal.n or 0
    if name == "TODAY":
        return today, today
    if name == "YESTERDAY":
        day = today - timedelta(days=1)
        return day, day
    if name == "TOMORROW":
        day = today + timedelta(days=1)
        return day, day
    if name == "LAST_N_DAYS":
        return today - timedelta(days=n), today
    if name == "NEXT_N_DAYS":
        return today + timedelta(days=1), today + timedelta(days=n)
    if name == "N_DAYS_AGO":
        day = today - timedelta(days=n)
        return day, day
    if name.endswith("_YEAR"):
        year = today.year + {"THIS_YEAR": 0, "LAST_YEAR": -1, "NEXT_YEAR": 1}[name]
        return date(year, 1, 1), date(year, 12, 31)
    shift = {"THIS_MONTH": 0, "LAST_MONTH": -1, "NEXT_MONTH": 1}[name]
    month_index = today.year * 12 + today.month - 1 + shift
    first = date(month_index // 12, month_index % 12 + 1, 1)
    next_index = month_index + 1
    last = date(next_index // 12, next_index % 12 + 1, 1) - timedelta(days=1)
    return first, last


def as_datetime_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    return start, end
