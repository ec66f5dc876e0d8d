"""Run parsed SOQL against the store and page results the way ``/query`` and ``queryMore`` do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from . import ids
from .errors import ApiError
from .ids import IdGenerator
from .schema import FieldDef, ObjectDef
from .soql import (
    BoolOp,
    Comparison,
    Condition,
    CountAll,
    DateRange,
    FieldRef,
    Not,
    Query,
    SoqlError,
    SubQuery,
    Value,
    date_range,
    like_pattern,
    parse,
)
from .store import Record, Store
from .values import render

MAX_OFFSET = 2000


@dataclass
class ResolvedPath:
    """A dotted field path: the reference fields to follow, then the final field."""

    hops: list[FieldDef]
    field: FieldDef

    @property
    def relationship_names(self) -> list[str]:
        return [hop.relationship_name or "" for hop in self.hops]


class Executor:
    """Evaluates one query text; raises ApiError with Salesforce's codes and messages."""

    def __init__(self, store: Store, text: str, version: str, today: date) -> None:
        self.store = store
        self.text = text
        self.version = version
        self.today = today

    def error(self, code: str, detail: str, pos: int) -> ApiError:
        return ApiError(400, code, SoqlError(code, detail, pos).message(self.text))

    def run(self, *, include_deleted: bool) -> tuple[int, list[dict[str, Any]]]:
        try:
            query = parse(self.text)
        except SoqlError as exc:
            raise ApiError(400, exc.code, exc.message(self.text)) from None
        obj = self.object(query.sobject, query.sobject_pos)
        rows = self.select_rows(
            obj,
            query,
            self.store.rows(obj.name, include_deleted=True),
            include_deleted=include_deleted,
        )
        if query.is_count:
            if len(query.select) > 1:
                raise self.error(
                    "MALFORMED_QUERY",
                    "COUNT() must be the only element in the SELECT list.",
                    query.select[1].pos,
                )
            return len(rows), []
        return len(rows), [self.render(obj, query, row) for row in rows]

    # ----------------------------------------------------------- resolution

    def object(self, name: str, pos: int) -> ObjectDef:
        obj = self.store.schema.get(name)
        if obj is None:
            raise self.error(
                "INVALID_TYPE",
                f"sObject type '{name}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
                pos,
            )
        return obj

    def resolve(self, obj: ObjectDef, ref: FieldRef) -> ResolvedPath:
        path = list(ref.path)
        if (
            len(path) > 1
            and path[0].lower() == obj.name.lower()
            and obj.relationship(path[0]) is None
        ):
            path = path[1:]
        hops: list[FieldDef] = []
        current = obj
        for part in path[:-1]:
            hop = current.relationship(part)
            if hop is None:
                raise self.error(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{part}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                    ref.pos,
                )
            hops.append(hop)
            current = self.store.object(hop.reference_to[0])
        field = current.field(path[-1])
        if field is None:
            raise self.error(
                "INVALID_FIELD",
                f"No such column '{path[-1]}' on entity '{current.name}'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
                ref.pos,
            )
        return ResolvedPath(hops, field)

    def value_of(self, row: Record | None, path: ResolvedPath) -> Any:
        for hop in path.hops:
            if row is None:
                return None
            parent_id = row.get(hop.name)
            if parent_id is None:
                return None
            row = self.store.get(hop.reference_to[0], parent_id)
        return None if row is None else row.get(path.field.name)

    # ------------------------------------------------------------ filtering

    def select_rows(
        self, obj: ObjectDef, query: Query, rows: list[Record], *, include_deleted: bool
    ) -> list[Record]:
        if not include_deleted:
            rows = [r for r in rows if not r["IsDeleted"]]
        if query.where is not None:
            test = self.compile(obj, query.where)
            rows = [r for r in rows if test(r)]
        rows = self.order(obj, query, rows)
        if query.offset is not None:
            if query.offset > MAX_OFFSET:
                raise ApiError(
                    400,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                )
            rows = rows[query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        return rows

    def compile(self, obj: ObjectDef, cond: Condition) -> Callable[[Record], bool]:
        if isinstance(cond, BoolOp):
            parts = [self.compile(obj, item) for item in cond.items]
            if cond.op == "AND":
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(cond, Not):
            inner = self.compile(obj, cond.item)
            return lambda row: not inner(row)
        return self.compile_comparison(obj, cond)

    def compile_comparison(self, obj: ObjectDef, cond: Comparison) -> Callable[[Record], bool]:
        path = self.resolve(obj, cond.field)
        field = path.field
        op = cond.op
        if cond.subquery is not None:
            allowed = self.semi_join(cond)
            wanted = op == "IN"
            return lambda row: (self.value_of(row, path) in allowed) == wanted
        literals = [self.literal(field, value, op) for value in cond.values]
        if op == "LIKE":
            if not field.is_text and field.type not in ("id", "reference"):
                raise self.error(
                    "INVALID_FIELD",
                    f"invalid operator on {field.type} field: LIKE",
                    cond.field.pos,
                )
            pattern = like_pattern(str(literals[0]))
            return lambda row: (
                (v := self.value_of(row, path)) is not None and bool(pattern.match(str(v)))
            )
        if op in ("INCLUDES", "EXCLUDES"):
            if field.type != "multipicklist":
                raise self.error(
                    "INVALID_FIELD",
                    f"{op.lower()} operator is only valid on multipicklist fields",
                    cond.field.pos,
                )
            terms = [{p.strip().lower() for p in str(t).split(";")} for t in literals]

            def includes(row: Record) -> bool:
                value = self.value_of(row, path)
                chosen = {p.lower() for p in str(value).split(";")} if value else set()
                return any(term <= chosen for term in terms)

            if op == "INCLUDES":
                return includes
            return lambda row: not includes(row)
        if op in ("IN", "NOT IN"):
            wanted = op == "IN"
            return lambda row: (
                any(self.equal(field, self.value_of(row, path), lit) for lit in literals) == wanted
            )
        literal = literals[0]

        def test(row: Record) -> bool:
            value = self.value_of(row, path)
            if op == "=":
                return self.equal(field, value, literal)
            if op == "!=":
                return not self.equal(field, value, literal)
            if value is None or literal is None:
                return False
            return self.ordered(field, value, literal, op)

        return test

    def semi_join(self, cond: Comparison) -> set[Any]:
        sub = cond.subquery
        assert sub is not None
        sub_obj = self.object(sub.sobject, sub.sobject_pos)
        if len(sub.select) != 1 or not isinstance(sub.select[0], FieldRef):
            raise self.error(
                "MALFORMED_QUERY",
                "semi join sub-selects can only query one id field",
                cond.field.pos,
            )
        sub_path = self.resolve(sub_obj, sub.select[0])
        if sub_path.field.type not in ("id", "reference"):
            raise self.error(
                "INVALID_FIELD",
                "The selected field in a semi join sub-select must be an id or a reference",
                sub.select[0].pos,
            )
        rows = self.select_rows(sub_obj, sub, self.store.rows(sub_obj.name), include_deleted=False)
        return {self.value_of(r, sub_path) for r in rows} - {None}

    def literal(self, field: FieldDef, value: Value, op: str) -> Any:
        """Check a filter value's type against the field, as Salesforce does; normalise it."""
        if value.kind == "null":
            return None
        kind = field.type
        quoted = value.kind == "string"

        def wrong(expected: str, should_quote: bool) -> ApiError:
            return self.error(
                "INVALID_FIELD",
                f"value of filter criterion for field '{field.name}' must be of type {expected} "
                f"and should {'' if should_quote else 'not '}be enclosed in quotes",
                value.pos,
            )

        if kind in ("id", "reference"):
            if not quoted:
                raise wrong("id", True)
            if op == "LIKE":
                return value.value
            try:
                return ids.to18(value.value)
            except ValueError:
                raise self.error(
                    "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value.value}", value.pos
                ) from None
        if field.is_text:
            if not quoted:
                raise wrong("string", True)
            return value.value
        if kind == "boolean":
            if value.kind != "boolean":
                raise wrong("boolean", False)
            return value.value
        if field.is_numeric:
            if value.kind != "number":
                raise wrong("double" if kind != "int" else "int", False)
            return Decimal(value.value)
        if kind == "date":
            if value.kind == "date_literal":
                return value.value
            if value.kind != "date":
                raise wrong("date", False)
            return value.value
        if kind == "datetime":
            if value.kind == "date_literal":
                return value.value
            if value.kind != "datetime":
                raise wrong("dateTime", False)
            return value.value
        raise wrong(kind, False)

    def equal(self, field: FieldDef, value: Any, literal: Any) -> bool:
        if literal is None or value is None:
            return value is None and literal is None
        if isinstance(literal, DateRange):
            first, last = self.bounds(field, literal)
            return bool(first <= self.comparable(field, value) <= last)
        if field.type == "multipicklist":
            return {p.lower() for p in str(value).split(";")} == {
                p.strip().lower() for p in str(literal).split(";")
            }
        if field.is_text:
            return str(value).lower() == str(literal).lower()
        if field.is_numeric:
            return Decimal(value) == Decimal(literal)
        return bool(value == literal)

    def ordered(self, field: FieldDef, value: Any, literal: Any, op: str) -> bool:
        if isinstance(literal, DateRange):
            first, last = self.bounds(field, literal)
            current = self.comparable(field, value)
            return {
                "<": current < first,
                "<=": current <= last,
                ">": current > last,
                ">=": current >= first,
            }[op]
        left, right = (
            (str(value).lower(), str(literal).lower()) if field.is_text else (value, literal)
        )
        if field.is_numeric:
            left, right = Decimal(left), Decimal(right)
        return bool(
            {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        )

    def bounds(self, field: FieldDef, literal: DateRange) -> tuple[date, date]:
        return date_range(literal, self.today)

    @staticmethod
    def comparable(field: FieldDef, value: Any) -> date:
        if isinstance(value, datetime):
            return value.astimezone(UTC).date()
        assert isinstance(value, date)
        return value

    # ------------------------------------------------------------- ordering

    def order(self, obj: ObjectDef, query: Query, rows: list[Record]) -> list[Record]:
        if not query.order_by:
            return sorted(rows, key=lambda r: (r["CreatedDate"], r["Id"]))
        rows = sorted(rows, key=lambda r: (r["CreatedDate"], r["Id"]))
        for item in reversed(query.order_by):
            path = self.resolve(obj, item.field)
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [r for r in rows if self.value_of(r, path) is not None]
            absent = [r for r in rows if self.value_of(r, path) is None]

            def key(row: Record, path: ResolvedPath = path) -> Any:
                value = self.value_of(row, path)
                return value.lower() if isinstance(value, str) else value

            present.sort(key=key, reverse=item.descending)
            rows = present + absent if nulls_last else absent + present
        return rows

    # ------------------------------------------------------------ rendering

    def render(self, obj: ObjectDef, query: Query, row: Record) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": self.attributes(obj, row)}
        seen: set[str] = set()
        for item in query.select:
            if isinstance(item, CountAll):
                continue
            if isinstance(item, SubQuery):
                self.render_children(obj, item, row, out)
                continue
            path = self.resolve(obj, item)
            key = ".".join([*path.relationship_names, path.field.name]).lower()
            if key in seen:
                raise self.error(
                    "MALFORMED_QUERY", f"duplicate field selected: {item.text}", item.pos
                )
            seen.add(key)
            self.place(out, obj, row, path)
        return out

    def attributes(self, obj: ObjectDef, row: Record) -> dict[str, str]:
        return {
            "type": obj.name,
            "url": f"/services/data/v{self.version}/sobjects/{obj.name}/{row['Id']}",
        }

    def place(self, out: dict[str, Any], obj: ObjectDef, row: Record, path: ResolvedPath) -> None:
        target = out
        current_row: Record | None = row
        for hop in path.hops:
            name = hop.relationship_name or hop.name
            parent_obj = self.store.object(hop.reference_to[0])
            parent_id = current_row.get(hop.name) if current_row is not None else None
            parent = self.store.get(parent_obj.name, parent_id) if parent_id else None
            if parent is None:
                if name not in target:
                    target[name] = None
                return
            existing = target.get(name)
            if existing is None:
                existing = {"attributes": self.attributes(parent_obj, parent)}
                target[name] = existing
            target = existing
            current_row = parent
        assert current_row is not None
        target[path.field.name] = render(path.field, current_row.get(path.field.name))

    def render_children(
        self, obj: ObjectDef, item: SubQuery, row: Record, out: dict[str, Any]
    ) -> None:
        sub = item.query
        rel = obj.child_relationship(sub.sobject)
        if rel is None:
            raise self.error(
                "INVALID_TYPE",
                f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. "
                "If you are attempting to use a custom relationship, be sure to append the '__r' "
                "after the custom relationship name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
                sub.sobject_pos,
            )
        if sub.is_count:
            raise self.error("MALFORMED_QUERY", "COUNT() is not allowed in a sub-query", item.pos)
        child_obj = self.store.object(rel.child_sobject)
        children = [r for r in self.store.rows(child_obj.name) if r.get(rel.field) == row["Id"]]
        children = self.select_rows(child_obj, sub, children, include_deleted=False)
        name = rel.relationship_name
        if not children:
            # validate the sub-select even when there is nothing to show
            for sel in sub.select:
                if isinstance(sel, FieldRef):
                    self.resolve(child_obj, sel)
            out[name] = None
            return
        out[name] = {
            "totalSize": len(children),
            "done": True,
            "records": [self.render(child_obj, sub, child) for child in children],
        }


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    total: int
    endpoint: str


class Cursors:
    """Server-side query cursors behind ``nextRecordsUrl`` (``/query/01g...-2000``)."""

    def __init__(self, id_generator: IdGenerator) -> None:
        self._ids = id_generator
        self._open: dict[str, Cursor] = {}
        self._lock = threading.Lock()

    def page(
        self,
        records: list[dict[str, Any]],
        total: int,
        batch_size: int,
        version: str,
        endpoint: str,
    ) -> dict[str, Any]:
        if len(records) <= batch_size:
            return {"totalSize": total, "done": True, "records": records}
        locator = self._ids.new("01g")
        with self._lock:
            self._open[locator] = Cursor(records, total, endpoint)
        return self._page(locator, 0, batch_size, version)

    def more(self, locator_and_position: str, batch_size: int, version: str) -> dict[str, Any]:
        locator, _, position = locator_and_position.partition("-")
        with self._lock:
            cursor = self._open.get(locator)
        if cursor is None or not position.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(locator, int(position), batch_size, version)

    def _page(self, locator: str, start: int, batch_size: int, version: str) -> dict[str, Any]:
        cursor = self._open[locator]
        end = start + batch_size
        batch = cursor.records[start:end]
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.records)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{locator}-{end}"
        else:
            with self._lock:
                self._open.pop(locator, None)
        body["records"] = batch
        return body
