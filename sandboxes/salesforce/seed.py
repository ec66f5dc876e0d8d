"""Seed data: records from YAML/JSON (or a dict), linked by symbolic refs, dated relative to today.

Format::

    records:                      # object name -> list of records, loaded in file order
      Account:
        - ref: acme               # symbolic key, resolved to the generated id
          Name: Acme Corp
      Opportunity:
        - ref: acme_renewal
          AccountId: {ref: acme}  # a reference to an earlier record
          CloseDate: today-3d     # relative date: today, today+14d, today-1m, today+2w, today+1y
          Contract_Start_Date__c: today+14d

An optional ``updates:`` section (same shape, each item naming an existing ``ref``) is applied
after all records exist, for references that would otherwise be circular (an account's billing
contact is a contact of that account).

Date fields take ``today[+-N(d|w|m|y)]``, datetime fields ``now[+-N(d|w|m|y|h)]``; both are
computed from the sandbox clock at load time. Predefined refs: ``standard_pricebook`` (the
org's Standard Price Book) and ``integration_user`` (the API user).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .._seed import SeedError as SeedError  # re-exported: the loader raises it
from .._seed import read, relative
from .errors import ApiError
from .schema import ObjectDef
from .store import Store

TEMPORAL = ("date", "datetime")


class SeedLoader:
    def __init__(self, store: Store, now: Callable[[], datetime], refs: dict[str, str]) -> None:
        self.store = store
        self.now = now
        self.refs = refs

    def load(self, source: str | Path | dict[str, Any]) -> dict[str, str]:
        data = read(source)
        records = data.get("records")
        if not isinstance(records, dict):
            raise SeedError("the seed needs a 'records' mapping of object name to record list")
        for sobject, items in records.items():
            obj = self.store.schema.get(str(sobject))
            if obj is None:
                raise SeedError(f"unknown object {sobject!r} in seed")
            if not isinstance(items, list):
                raise SeedError(f"{sobject}: expected a list of records")
            for position, item in enumerate(items):
                self._load_one(obj, position, item)
        updates = data.get("updates") or {}
        if not isinstance(updates, dict):
            raise SeedError("'updates' must map object names to record lists")
        for sobject, items in updates.items():
            obj = self.store.schema.get(str(sobject))
            if obj is None or not isinstance(items, list):
                raise SeedError(f"updates: unknown object {sobject!r} or not a list")
            for position, item in enumerate(items):
                self._update_one(obj, position, item)
        return dict(self.refs)

    def _update_one(self, obj: ObjectDef, position: int, item: Any) -> None:
        if not isinstance(item, dict) or str(item.get("ref")) not in self.refs:
            raise SeedError(f"updates.{obj.name}[{position}]: needs the ref of a seeded record")
        body = self._body(obj, item)
        try:
            self.store.update(obj.name, self.refs[str(item["ref"])], body)
        except ApiError as exc:
            raise SeedError(
                f"updates.{obj.name} {item['ref']}: {exc.error_code}: {exc.message}"
            ) from exc

    def _load_one(self, obj: ObjectDef, position: int, item: Any) -> None:
        if not isinstance(item, dict):
            raise SeedError(f"{obj.name}[{position}]: expected a mapping")
        ref = item.get("ref")
        body = self._body(obj, item)
        try:
            record_id = self.store.create(obj.name, body, seed=True)
        except ApiError as exc:
            raise SeedError(
                f"{obj.name} {ref or position}: {exc.error_code}: {exc.message}"
            ) from exc
        if ref is not None:
            if str(ref) in self.refs:
                raise SeedError(f"{obj.name}: duplicate ref {ref!r}")
            self.refs[str(ref)] = record_id

    def _body(self, obj: ObjectDef, item: dict[str, Any]) -> dict[str, Any]:
        """The record's fields with refs resolved and relative dates computed."""
        ref = item.get("ref")
        body: dict[str, Any] = {}
        now = self.now()
        for key, value in item.items():
            if key == "ref":
                continue
            field = obj.field(key)
            if isinstance(value, dict) and set(value) == {"ref"}:
                target = str(value["ref"])
                if target not in self.refs:
                    raise SeedError(f"{obj.name} {ref or '?'}: unknown ref {target!r}")
                value = self.refs[target]
            elif isinstance(value, str) and field is not None and field.type in TEMPORAL:
                moment = relative(value, now)
                if moment is not None:
                    value = _iso(moment, field.type)
            elif isinstance(value, date) and field is not None:
                value = _iso(value, field.type)
            elif isinstance(value, float):
                value = repr(value)  # YAML floats: keep the written digits, never binary floats
            elif isinstance(value, list) and field is not None and field.type == "multipicklist":
                value = ";".join(str(v) for v in value)
            body[key] = value
        return body


def _iso(value: date | datetime, field_type: str) -> str:
    if isinstance(value, datetime):
        return value.isoformat() if field_type == "datetime" else value.date().isoformat()
    if field_type == "datetime":
        return datetime(value.year, value.month, value.day).isoformat() + "Z"
    return value.isoformat()
