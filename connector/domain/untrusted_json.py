"""Reading JSON from outside (a webhook body, a stored payload): an object, nested sanely.

``json.loads`` recurses once per level, so a body of ten thousand ``[`` raises
``RecursionError`` -- an exception nobody catches as "bad input" -- and a body nested a few
hundred levels parses but then breaks whatever walks it. No event dealbridge receives
(a Stripe event, a Dataverse RemoteExecutionContext) nests anywhere near ``MAX_DEPTH``, so
anything deeper is refused as malformed, with a reason a person understands.
"""

from __future__ import annotations

import json
from typing import Any

#: Deeper than any Stripe event or Dataverse context (they nest about ten levels).
MAX_DEPTH = 64


class UntrustedJsonError(ValueError):
    """The text is not a JSON object dealbridge accepts; ``reason`` says why, in words."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``{}`` is 1), without recursion; stops
    counting once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if depth + 1 > limit:
            return depth + 1  # deep enough to refuse; no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_object(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The JSON object in ``text``, or ``UntrustedJsonError`` (never ``RecursionError``)."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise UntrustedJsonError(
            "too_deeply_nested", f"the JSON nests deeper than {max_depth} levels"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise UntrustedJsonError("malformed_json", "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise UntrustedJsonError("malformed_json", "the body is not a JSON object")
    if depth_of(value, max_depth) > max_depth:
        raise UntrustedJsonError(
            "too_deeply_nested", f"the JSON nests deeper than {max_depth} levels"
        )
    return value
