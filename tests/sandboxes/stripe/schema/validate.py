"""Check API objects against the compact schema generated from stripe-node's types.

A problem is reported once per place in the schema (``Invoice.lines.data[].taxes``), not once
per object, so a scenario that returns a thousand invoices reports a missing field once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("objects.json")


@cache
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return document


@cache
def _by_object() -> dict[tuple[str, bool], str]:
    """(``object`` value, deleted) → schema name, for the top-level resources."""
    found: dict[tuple[str, bool], str] = {}
    for name, body in schema()["objects"].items():
        literal = body.get("fields", {}).get("object", [False, None])[1]
        if (
            isinstance(literal, dict)
            and "lit" in literal
            and "." not in name.replace("TestHelpers.", "").replace("Billing.", "")
        ):
            deleted = _deleted_type(body)
            found.setdefault((literal["lit"], deleted), name)
    found[("event", False)] = "EventBase"
    return found


def _deleted_type(body: dict[str, Any]) -> bool:
    """Whether a schema type is a ``Deleted*`` one (``deleted: true``; the live type declares
    ``deleted?: void``)."""
    return bool(body["fields"].get("deleted", [False, None])[1] == {"lit": True})


@dataclass
class Report:
    missing: set[str] = field(default_factory=set)
    wrong: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    checked: int = 0

    def lines(self) -> list[str]:
        return [f"missing {m}" for m in sorted(self.missing)] + [
            f"wrong type {w}" for w in sorted(self.wrong)
        ]


def schema_name(obj: dict[str, Any]) -> str | None:
    return _by_object().get((str(obj.get("object")), bool(obj.get("deleted"))))


def check(obj: dict[str, Any], report: Report) -> None:
    """Validate one API object (a resource, a list of them, or an event) into ``report``."""
    if obj.get("object") in ("list", "search_result"):
        for item in obj.get("data", []):
            check(item, report)
        return
    name = schema_name(obj)
    if name is None:
        report.unknown.add(f"object {obj.get('object')!r}")
        return
    report.checked += 1
    _object(obj, name, name, report)
    if obj.get("object") == "event":
        inner = obj.get("data", {}).get("object")
        if isinstance(inner, dict):
            check(inner, report)


def _object(value: dict[str, Any], name: str, where: str, report: Report) -> None:
    body = schema()["objects"][name]
    if "map" in body:
        for item in value.values():
            _value(item, body["map"], f"{where}[]", report)
        return
    fields = body["fields"]
    for key, (required, kind) in fields.items():
        if key == "[key]":
            continue
        if key not in value:
            if required:
                report.missing.add(f"{where}.{key}")
            continue
        _value(value[key], kind, f"{where}.{key}", report)
    for key in value:
        if key not in fields and "[key]" not in fields:
            report.unknown.add(f"{where}.{key}")


def _matches(value: Any, kind: Any) -> bool:
    """A shallow test: could ``value`` be of ``kind`` (used to pick a union's option)?"""
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if "lit" in kind:
        return bool(value == kind["lit"])
    if "array" in kind:
        return isinstance(value, list)
    if "list" in kind:
        return isinstance(value, dict) and value.get("object") == "list"
    if "map" in kind or "opaque" in kind or "object" in kind:
        return isinstance(value, dict)
    if "ref" in kind:
        if not isinstance(value, dict):
            return False
        body = schema()["objects"][kind["ref"]]
        literal = body.get("fields", {}).get("object", [False, None])[1]
        if isinstance(literal, dict) and "lit" in literal:
            if value.get("object") != literal["lit"]:
                return False
            return bool(value.get("deleted")) == _deleted_type(body)
        return True
    if "union" in kind:
        return any(_matches(value, option) for option in kind["union"])
    raise ValueError(f"unknown schema type {kind!r}")


def _value(value: Any, kind: Any, where: str, report: Report) -> None:
    if isinstance(kind, dict) and "union" in kind:
        options = [option for option in kind["union"] if _matches(value, option)]
        if not options:
            report.wrong.add(f"{where}: {_describe(value)} is not {_show(kind)}")
            return
        _value(value, options[0], where, report)
        return
    if not _matches(value, kind):
        report.wrong.add(f"{where}: {_describe(value)} is not {_show(kind)}")
        return
    if not isinstance(kind, dict):
        return
    if "array" in kind:
        for item in value:
            _value(item, kind["array"], f"{where}[]", report)
    elif "map" in kind:
        for item in value.values():
            _value(item, kind["map"], f"{where}[]", report)
    elif "list" in kind:
        for item in value.get("data", []):
            _value(item, kind["list"], f"{where}.data[]", report)
    elif "ref" in kind:
        _object(value, kind["ref"], where, report)
    elif "object" in kind:
        for key, (required, inner) in kind["object"].items():
            if key not in value:
                if required:
                    report.missing.add(f"{where}.{key}")
            else:
                _value(value[key], inner, f"{where}.{key}", report)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"object {value.get('object', '')}".strip()
    return type(value).__name__ if value is not None else "null"


def _show(kind: Any) -> str:
    if isinstance(kind, str):
        return kind
    if "union" in kind:
        return " | ".join(_show(k) for k in kind["union"])
    key = next(iter(kind))
    return f"{key} {kind[key]}" if key in ("ref", "opaque", "lit") else key
