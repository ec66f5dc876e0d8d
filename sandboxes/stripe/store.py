"""In-memory objects: ids, lookup, rendering, list pagination and ``expand``."""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import os
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import StripeError, invalid_param, no_such
from .params import Params

JSON = dict[str, Any]
Renderer = Callable[[JSON], JSON]

_ALPHABET = string.ascii_letters + string.digits
#: Each byte value to a letter or digit (byte % 62: a bias too small to matter for ids).
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[value % 62]) for value in range(256))

#: The noun Stripe uses in "No such ...: 'id'" messages, by object type.
KIND_NAMES = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "subscription": "subscription",
    "subscription_item": "subscription_item",
    "subscription_schedule": "subscription_schedule",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "credit_note": "credit_note",
    "customer_balance_transaction": "customer_balance_transaction",
    "event": "event",
    "webhook_endpoint": "webhook_endpoint",
    "test_helpers.test_clock": "test_clock",
    "payment_method": "PaymentMethod",
    "setup_intent": "setup_intent",
    "payment_intent": "payment_intent",
    "charge": "charge",
    "refund": "refund",
    "invoice_payment": "invoice_payment",
    "card": "source",
    "coupon": "coupon",
    "promotion_code": "promotion_code",
    "tax_rate": "tax_rate",
    "plan": "plan",
}


def random_token(length: int) -> str:
    """Letters and digits from one read of the OS's random source (the kernel's CSPRNG):
    object ids, request ids, client and webhook secrets. Seeding 50,000 invoices mints
    hundreds of thousands, so it is one system call each."""
    return os.urandom(length).translate(_BYTE_TO_CHAR).decode()


def strip_private(value: Any) -> Any:
    """A deep copy of an API-shaped record without its private (``_``) keys.

    Private keys live at the top level of a record only, so the rest is copied by a JSON
    round trip (C code: several times faster than a recursive copy in Python). Money is
    integers and every value is JSON, so nothing changes on the way.
    """
    if isinstance(value, dict):
        public = {k: v for k, v in value.items() if k[0] != "_"}
        return json.loads(json.dumps(public))
    if isinstance(value, list):
        return [strip_private(v) for v in value]
    return value


#: Fields Stripe returns only when asked (``expand[]``), by object: asking for one an object
#: does not have (``tiers`` of a per-unit price) is not an error.
_INCLUDABLE: dict[str, tuple[str, ...]] = {"price": ("tiers",), "plan": ("tiers",)}


class Store:
    """Every object by id. Records are API-shaped dicts; keys starting with '_' are private
    and kept at a record's top level only (``strip_private`` relies on it).

    A write request runs inside a journal (``begin`` ... ``commit`` or ``rollback``): the
    first time the request reaches an object (``objects``, ``get``, ``require``, ``all``,
    ``add``) the journal keeps a copy of it as it was, or notes that it did not exist, so a
    failed request is undone by putting back only what it could have changed. Journals nest
    (a preview runs inside its request)."""

    def __init__(self) -> None:
        self._objects: dict[str, JSON] = {}
        #: The same objects by type, in insertion order: listing one type (and finding the
        #: webhook endpoints for every event) costs that type's size, not the whole store's.
        self._by_kind: dict[str, dict[str, JSON]] = {}
        #: Per type: its objects newest first and their negated sort keys (ascending, for
        #: bisect), rebuilt after the type changes, so a page costs its size, not the list's.
        self._ordered: dict[str, tuple[list[JSON], list[tuple[int, int]]]] = {}
        self._seq = itertools.count(1)
        self.renderers: dict[str, Renderer] = {}
        #: Open journals, innermost last: per object id, its value before the journal began
        #: (a private copy), or None when it did not exist yet.
        self._journals: list[dict[str, JSON | None]] = []

    @property
    def objects(self) -> Mapping[str, JSON]:
        """Every object by id. Read it freely (inside a journal, reading an object records
        it); add objects through ``add``."""
        if self._journals:
            return _JournaledObjects(self)
        return self._objects

    # -- the undo journal --------------------------------------------------------------------

    def begin(self) -> None:
        """Start recording the objects the work that follows reaches."""
        self._journals.append({})

    def commit(self) -> None:
        """Keep what the work since ``begin`` did (an enclosing journal still holds its own
        copies of what it may have to undo)."""
        self._journals.pop()

    def rollback(self) -> None:
        """Put every object the work since ``begin`` reached back as it was; remove the ones
        it created. Ids are never removed otherwise, so an object put back keeps its place in
        the store's order."""
        journal = self._journals.pop()
        for key, old in journal.items():
            current = self._objects.get(key)
            if current is not None:
                self._ordered.pop(current["object"], None)
                if old is None or old["object"] != current["object"]:
                    self._by_kind.get(current["object"], {}).pop(key, None)
            if old is None:
                self._objects.pop(key, None)
                continue
            # The id is still there: assigning keeps its place in both orders.
            self._objects[key] = old
            self._by_kind.setdefault(old["object"], {})[key] = old
            self._ordered.pop(old["object"], None)

    def _touch(self, key: str) -> None:
        """Record ``key``'s current value in every open journal that has not seen it yet."""
        for journal in self._journals:
            if key not in journal:
                obj = self._objects.get(key)
                journal[key] = None if obj is None else copy.deepcopy(obj)

    def new_id(self, prefix: str, length: int = 24) -> str:
        while True:
            candidate = prefix + random_token(length)
            if candidate not in self._objects:
                return candidate

    def add(self, obj: JSON) -> JSON:
        if self._journals:
            self._touch(obj["id"])
        obj["_seq"] = next(self._seq)
        self._objects[obj["id"]] = obj
        self._by_kind.setdefault(obj["object"], {})[obj["id"]] = obj
        self._ordered.pop(obj["object"], None)
        return obj

    def get(self, object_id: str, kind: str, *, include_deleted: bool = False) -> JSON | None:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            return None
        if obj.get("_deleted") and not include_deleted:
            return None
        return obj

    def require(self, object_id: str, kind: str, *, param: str = "id", status: int = 404) -> JSON:
        obj = self.get(object_id, kind)
        if obj is None:
            raise no_such(KIND_NAMES.get(kind, kind), object_id, param=param, status=status)
        return obj

    def all(self, kind: str) -> list[JSON]:
        found = [o for o in self._by_kind.get(kind, {}).values() if not o.get("_deleted")]
        if self._journals:
            for obj in found:
                self._touch(obj["id"])
        return found

    def render_json(self, obj: JSON) -> str:
        """``render(obj)`` as JSON text, without building the copy when no renderer is
        needed."""
        if obj.get("_deleted") or obj["object"] in self.renderers:
            return json.dumps(self.render(obj))
        return json.dumps({k: v for k, v in obj.items() if k[0] != "_"})

    def render(self, obj: JSON) -> JSON:
        if obj.get("_deleted"):
            return {"id": obj["id"], "object": obj["object"], "deleted": True}
        renderer = self.renderers.get(obj["object"])
        if renderer is not None:
            return renderer(obj)
        # strip_private builds new dicts and lists all the way down: a deep copy already.
        result: JSON = strip_private(obj)
        return result

    # -- lists -------------------------------------------------------------------------------

    def list_response(self, objs: Iterable[JSON], params: Params, url: str) -> JSON:
        limit = params.get_int("limit", minimum=1, maximum=100)
        limit = 10 if limit is None else limit
        ordered = sorted(objs, key=_sort_key, reverse=True)
        starting_after = params.get_str("starting_after")
        ending_before = params.get_str("ending_before")
        if starting_after is not None:
            anchor = self._cursor(starting_after, ordered, "starting_after")
            ordered = [o for o in ordered if _sort_key(o) < anchor]
            page = ordered[:limit]
            has_more = len(ordered) > limit
        elif ending_before is not None:
            anchor = self._cursor(ending_before, ordered, "ending_before")
            ordered = [o for o in ordered if _sort_key(o) > anchor]
            page = ordered[-limit:] if limit else []
            has_more = len(ordered) > limit
        else:
            page = ordered[:limit]
            has_more = len(ordered) > limit
        return {
            "object": "list",
            "data": [self.render(o) for o in page],
            "has_more": has_more,
            "url": url,
        }

    def list_kind(self, kind: str, keep: Callable[[JSON], bool], params: Params, url: str) -> JSON:
        """``list_response(o for o in all(kind) if keep(o))``, page by page without filtering
        or sorting the whole type on every call: the type's newest-first order is kept
        between calls, the cursor found by bisection, and ``keep`` asked only until the page
        (and whether more follow) is known."""
        limit = params.get_int("limit", minimum=1, maximum=100)
        limit = 10 if limit is None else limit
        objs, neg_keys = self._ordered_kind(kind)

        def wanted(obj: JSON) -> bool:
            return not obj.get("_deleted") and keep(obj)

        starting_after = params.get_str("starting_after")
        ending_before = params.get_str("ending_before")
        found: list[JSON] = []
        if ending_before is not None:
            anchor = self._kind_cursor(ending_before, kind, objs, wanted, "ending_before")
            # Newer than the anchor: objs[:end]; the page is the oldest ``limit`` of them.
            end = bisect.bisect_left(neg_keys, (-anchor[0], -anchor[1]))
            for index in range(end - 1, -1, -1):
                if wanted(objs[index]):
                    found.append(objs[index])
                    if len(found) > limit:
                        break
            has_more = len(found) > limit
            page = list(reversed(found[:limit]))
        else:
            start = 0
            if starting_after is not None:
                anchor = self._kind_cursor(starting_after, kind, objs, wanted, "starting_after")
                start = bisect.bisect_right(neg_keys, (-anchor[0], -anchor[1]))
            for index in range(start, len(objs)):
                if wanted(objs[index]):
                    found.append(objs[index])
                    if len(found) > limit:
                        break
            has_more = len(found) > limit
            page = found[:limit]
        return {
            "object": "list",
            "data": [self.render(o) for o in page],
            "has_more": has_more,
            "url": url,
        }

    def _ordered_kind(self, kind: str) -> tuple[list[JSON], list[tuple[int, int]]]:
        cached = self._ordered.get(kind)
        if cached is None:
            objs = sorted(self._by_kind.get(kind, {}).values(), key=_sort_key, reverse=True)
            neg_keys = [(-a, -b) for a, b in map(_sort_key, objs)]
            cached = self._ordered[kind] = (objs, neg_keys)
        return cached

    def _kind_cursor(
        self,
        object_id: str,
        kind: str,
        objs: list[JSON],
        wanted: Callable[[JSON], bool],
        param: str,
    ) -> tuple[int, int]:
        obj = self._objects.get(object_id)
        if obj is None:
            named = kind if any(wanted(o) for o in objs) else "object"
            raise no_such(KIND_NAMES.get(named, named), object_id, param=param, status=400)
        return _sort_key(obj)

    def _cursor(self, object_id: str, ordered: list[JSON], param: str) -> tuple[int, int]:
        obj = self._objects.get(object_id)
        if obj is None:
            kind = ordered[0]["object"] if ordered else "object"
            raise no_such(KIND_NAMES.get(kind, kind), object_id, param=param, status=400)
        return _sort_key(obj)

    # -- expand ------------------------------------------------------------------------------

    def expand(self, body: JSON, paths: list[str]) -> JSON:
        for path in paths:
            if path.count(".") > 3:
                raise invalid_param(
                    "expand",
                    f"You cannot expand more than 4 levels of a property. Property: {path}",
                    None,
                )
            self._expand_path(body, path.split("."), path)
        return body

    def _expand_path(self, node: JSON, parts: list[str], full: str) -> None:
        field, rest = parts[0], parts[1:]
        if node.get("object") in ("list", "search_result") and field == "data":
            for item in node.get("data", []):
                if rest:
                    self._expand_path(item, rest, full)
            return
        if field in _INCLUDABLE.get(str(node.get("object")), ()) and not rest:
            # Included on request, and null where it does not apply (a per-unit price has no
            # tiers), as Stripe answers: not an error.
            node.setdefault(field, None)
            return
        if field not in node:
            raise StripeError(400, f"This property cannot be expanded ({field}).", param="expand")
        value = node[field]
        if value is None:
            return
        if isinstance(value, list):
            # A list of ids (``discounts``): each expands, and the rest of the path goes on
            # in each element.
            for index, element in enumerate(value):
                if isinstance(element, str):
                    target = self._objects.get(element)
                    if target is None:
                        raise StripeError(
                            400, f"This property cannot be expanded ({field}).", param="expand"
                        )
                    value[index] = element = self.render(target)
                if rest and isinstance(element, dict):
                    self._expand_path(element, rest, full)
            return
        if isinstance(value, str):
            target = self._objects.get(value)
            if target is None:
                raise StripeError(
                    400, f"This property cannot be expanded ({field}).", param="expand"
                )
            value = self.render(target)
            node[field] = value
        if not isinstance(value, dict):
            raise StripeError(400, f"This property cannot be expanded ({field}).", param="expand")
        if rest:
            self._expand_path(value, rest, full)


class _JournaledObjects(Mapping[str, JSON]):
    """``Store.objects`` while a journal is open: each object read is recorded first."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getitem__(self, key: str) -> JSON:
        obj = self._store._objects[key]
        self._store._touch(key)
        return obj

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._store._objects:
            return default
        self._store._touch(key)
        return self._store._objects[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store._objects

    def __iter__(self) -> Iterator[str]:
        return iter(self._store._objects)

    def __len__(self) -> int:
        return len(self._store._objects)


def _sort_key(obj: JSON) -> tuple[int, int]:
    return (int(obj.get("created") or obj.get("date") or 0), int(obj.get("_seq", 0)))


def created_filter(params: Params, key: str = "created") -> Callable[[int], bool]:
    """Stripe's ``created`` filter: an exact timestamp or ``created[gt|gte|lt|lte]``."""
    if not params.has(key):
        return lambda _value: True
    if isinstance(params.raw(key), str):
        exact = params.get_int(key)
        return lambda value: value == exact
    sub = params.sub(key)
    assert sub is not None
    sub.reject_unknown(["gt", "gte", "lt", "lte"])
    gt, gte = sub.get_int("gt"), sub.get_int("gte")
    lt, lte = sub.get_int("lt"), sub.get_int("lte")

    def check(value: int) -> bool:
        return (
            (gt is None or value > gt)
            and (gte is None or value >= gte)
            and (lt is None or value < lt)
            and (lte is None or value <= lte)
        )

    return check
