"""Decode Stripe's form encoding (``items[0][price]=...``) and read typed parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import StripeError, invalid_param, missing_param, unknown_param

_KEY_PART = re.compile(r"\[([^\]]*)\]")
_MAX_INT = 2**63 - 1


def _split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    parts = [head]
    if bracket:
        parts.extend(_KEY_PART.findall("[" + rest))
    return parts


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``[("a[b][0]", "x")]`` into ``{"a": {"b": ["x"]}}`` (lists from numeric keys)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node: dict[str, Any] = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    result: dict[str, Any] = _listify(root, in_metadata=False)
    return result


def _listify(node: dict[str, Any], *, in_metadata: bool) -> Any:
    converted = {
        key: _listify(value, in_metadata=key == "metadata") if isinstance(value, dict) else value
        for key, value in node.items()
    }
    if not in_metadata and converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class Params:
    """Typed, Stripe-validated access to one level of decoded parameters."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed_set = set(allowed) | {"expand"}
        for key in self.data:
            if key not in allowed_set:
                raise unknown_param(self.name(key))

    def require(self, key: str) -> None:
        value = self.data.get(key)
        if value is None or value == "" or value == {} or value == []:
            raise missing_param(self.name(key))

    def get_str(self, key: str, *, required: bool = False, allow_empty: bool = False) -> str | None:
        if key not in self.data:
            if required:
                raise missing_param(self.name(key))
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise invalid_param(self.name(key), f"Invalid string: {_show(value)}")
        if value == "" and not allow_empty:
            raise StripeError(
                400,
                f"You passed an empty string for '{self.name(key)}'. We assume empty values are "
                "an attempt to unset a parameter; however "
                f"'{self.name(key)}' cannot be unset. You should remove '{self.name(key)}' from "
                "your request or supply a non-empty value.",
                code="parameter_invalid_empty",
                param=self.name(key),
            )
        return value

    def get_nullable_str(self, key: str) -> tuple[bool, str | None]:
        """(given, value) where an empty string means 'unset' (value None)."""
        if key not in self.data:
            return False, None
        value = self.get_str(key, allow_empty=True)
        return True, (value or None)

    def get_int(
        self,
        key: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        text = self.get_str(key, required=required)
        if text is None:
            return None
        if not re.fullmatch(r"-?\d+", text) or abs(int(text)) > _MAX_INT:
            raise invalid_param(
                self.name(key), f"Invalid integer: {text}", code="parameter_invalid_integer"
            )
        value = int(text)
        if minimum is not None and value < minimum:
            raise invalid_param(
                self.name(key),
                f"This value must be greater than or equal to {minimum}.",
                code="parameter_invalid_integer",
            )
        if maximum is not None and value > maximum:
            raise invalid_param(
                self.name(key),
                f"This value must be less than or equal to {maximum} (it currently is '{value}').",
                code="parameter_invalid_integer",
            )
        return value

    def get_bool(self, key: str) -> bool | None:
        text = self.get_str(key)
        if text is None:
            return None
        if text not in ("true", "false"):
            raise invalid_param(self.name(key), f"Invalid boolean: {text}", code=None)
        return text == "true"

    def get_enum(self, key: str, choices: Sequence[str], *, required: bool = False) -> str | None:
        text = self.get_str(key, required=required)
        if text is None:
            return None
        if text not in choices:
            raise invalid_param(
                self.name(key), f"Invalid {self.name(key)}: must be one of {_one_of(choices)}", None
            )
        return text

    def get_timestamp(self, key: str, *, allow_now: bool = False, now: int = 0) -> int | None:
        if allow_now and self.data.get(key) == "now":
            return now
        return self.get_int(key, minimum=0)

    def sub(self, key: str) -> Params | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise invalid_param(
                self.name(key), f"Invalid object: {self.name(key)} must be an object", None
            )
        return Params(value, self.name(key))

    def items(self, key: str) -> list[Params]:
        """A list of hashes, e.g. ``items[0][price]``."""
        if key not in self.data:
            return []
        value = self.data[key]
        if value == "":
            return []
        if not isinstance(value, list):
            raise invalid_param(self.name(key), f"Invalid array: {self.name(key)}", None)
        result = []
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise invalid_param(
                    f"{self.name(key)}[{index}]", f"Invalid object: {self.name(key)}[{index}]", None
                )
            result.append(Params(entry, f"{self.name(key)}[{index}]"))
        return result

    def str_list(self, key: str) -> list[str] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if value == "":
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise invalid_param(self.name(key), f"Invalid array: {self.name(key)}", None)

    def metadata(self, key: str = "metadata") -> dict[str, str] | None:
        """The metadata patch: values of '' delete keys; ``metadata=''`` clears everything."""
        if key not in self.data:
            return None
        value = self.data[key]
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid_param(self.name(key), "Invalid hash", None)
        patch: dict[str, str] = {}
        for meta_key, meta_value in value.items():
            if not isinstance(meta_value, str):
                raise invalid_param(f"{self.name(key)}[{meta_key}]", "Invalid string", None)
            if len(meta_key) > 40:
                raise invalid_param(
                    f"{self.name(key)}[{meta_key}]",
                    "Metadata keys can have up to 40 characters.",
                    None,
                )
            if len(meta_value) > 500:
                raise invalid_param(
                    f"{self.name(key)}[{meta_key}]",
                    "Metadata values can have up to 500 characters, but you passed in a value "
                    f"that is {len(meta_value)} characters.",
                    None,
                )
            patch[meta_key] = meta_value
        if len(patch) > 50:
            raise invalid_param(
                self.name(key),
                "You can specify up to 50 keys, with key names up to 40 "
                "characters long and values up to 500 characters long.",
                None,
            )
        return patch

    def expand(self) -> list[str]:
        return self.str_list("expand") or []


def apply_metadata(current: dict[str, str], patch: dict[str, str] | None, *, clear: bool) -> None:
    """Merge a metadata patch in place (``clear`` when the whole field was unset)."""
    if patch is None:
        return
    if clear:
        current.clear()
    for key, value in patch.items():
        if value == "":
            current.pop(key, None)
        else:
            current[key] = value


def metadata_patch(params: Params, current: dict[str, str]) -> None:
    if not params.has("metadata"):
        return
    patch = params.metadata()
    apply_metadata(current, patch, clear=params.raw("metadata") == "")


def _one_of(choices: Sequence[str]) -> str:
    if len(choices) == 1:
        return choices[0]
    if len(choices) == 2:
        return f"{choices[0]} or {choices[1]}"
    return ", ".join(choices[:-1]) + f", or {choices[-1]}"


def _show(value: Any) -> str:
    return str(value)
