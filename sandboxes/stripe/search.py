"""Stripe's search query language, for ``/v1/customers/search``.

Supported: ``field:'value'`` (exact, case-insensitive), ``field~'value'`` (substring, at least
3 characters), ``-field:'value'`` (negation), ``field>n``/``>=``/``<``/``<=`` on numbers,
``metadata['key']:'value'``, ``field:null``, and clauses joined by ``AND`` or by ``OR``
(not both in one query, as in Stripe).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

from .errors import StripeError

JSON = dict[str, Any]
Predicate = Callable[[JSON], bool]

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?
        (?P<field>metadata\[(?P<q>['"])(?P<mkey>[^'"]+)(?P=q)\]|[a-z_]+)
        (?P<op>:|~|>=|<=|>|<)
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+|null)\s*""",
    re.VERBOSE,
)


def _bad_query(query: str) -> StripeError:
    return StripeError(
        400,
        f'We were unable to parse your search query. Try using the format `metadata["key"]:'
        f'"value"` to query for metadata or `key:"value"` to query for other fields. '
        f"Query: {query}",
        param="query",
    )


def compile_query(query: str, fields: dict[str, str]) -> Predicate:
    """``fields`` maps searchable field names to 'string' or 'number'."""
    has_and, has_or = " AND " in query, " OR " in query
    if has_and and has_or:
        raise StripeError(
            400,
            "We currently do not support using both AND and OR in the same search query.",
            param="query",
        )
    parts = query.split(" OR ") if has_or else query.split(" AND ")
    predicates = [_clause(part, query, fields) for part in parts]
    if has_or:
        return lambda obj: any(p(obj) for p in predicates)
    return lambda obj: all(p(obj) for p in predicates)


def _clause(text: str, query: str, fields: dict[str, str]) -> Predicate:
    match = _CLAUSE.fullmatch(text)
    if match is None:
        raise _bad_query(query)
    field, op, raw = match["field"], match["op"], match["value"]
    negate = match["neg"] is not None
    meta_key = match["mkey"]
    if meta_key is None and field not in fields:
        raise StripeError(400, f"Field `{field}` is an unsupported search field.", param="query")
    if raw == "null":
        value: str | int | None = None
    elif raw[0] in "'\"":
        value = raw[1:-1].replace("\\'", "'").replace('\\"', '"')
    else:
        value = int(raw)
    if op == "~" and (not isinstance(value, str) or len(value) < 3):
        raise StripeError(400, "Substring search requires at least 3 characters.", param="query")

    def get(obj: JSON) -> Any:
        if meta_key is not None:
            return (obj.get("metadata") or {}).get(meta_key)
        return obj.get(field)

    def test(obj: JSON) -> bool:
        actual = get(obj)
        if op == ":":
            if value is None:
                return actual is None
            return actual is not None and str(actual).lower() == str(value).lower()
        if op == "~":
            return actual is not None and str(value).lower() in str(actual).lower()
        if actual is None or not isinstance(value, int):
            return False
        number = int(actual)
        return {
            ">": number > value,
            "<": number < value,
            ">=": number >= value,
            "<=": number <= value,
        }[op]

    return (lambda obj: not test(obj)) if negate else test


def encode_page(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StripeError(400, "Invalid page token.", param="page") from exc
    if not isinstance(offset, int) or offset < 0:
        raise StripeError(400, "Invalid page token.", param="page")
    return offset
