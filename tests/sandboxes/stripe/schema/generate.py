"""Derive the compact response schema the sandbox is validated against.

Source: the TypeScript declarations of the ``stripe`` npm package (stripe-node), which Stripe
generates from its OpenAPI spec. Release 23.1.0 pins API ``2026-10-28.endive``, the version
the sandbox claims (``npm pack stripe@23.1.0``). A field declared ``name: T`` is required in
every response (its value may still be ``null`` where ``T`` allows it); ``name?: T`` may be
left out. Only response objects are kept (no ``*Params``), and only those reachable from the
resources the sandbox serves.

Run: ``python tests/sandboxes/stripe/schema/generate.py [PACKAGE_DIR]`` (without a directory it
runs ``npm pack stripe@23.1.0`` into a temporary one). Writes ``objects.json`` and copies the
package's MIT licence to ``LICENSE.stripe-node`` beside this file.

Schema grammar (JSON): a type is ``"string" | "number" | "boolean" | "null" | "any"``,
``{"lit": value}``, ``{"array": T}``, ``{"map": T}``, ``{"ref": Name}`` (defined here),
``{"opaque": Name}`` (another resource: any object), ``{"list": T}`` (an ``ApiList``) or
``{"union": [T, ...]}``. An object is ``{"fields": {name: [required, T]}}``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VERSION = "23.1.0"
API_VERSION = "2026-10-28.endive"
HERE = Path(__file__).resolve().parent
#: The top-level objects the sandbox returns (and their expandable relatives).
ROOTS = [
    "Customer",
    "DeletedCustomer",
    "Product",
    "DeletedProduct",
    "Price",
    "Plan",
    "DeletedPlan",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionSchedule",
    "Invoice",
    "DeletedInvoice",
    "InvoiceLineItem",
    "InvoiceItem",
    "DeletedInvoiceItem",
    "InvoicePayment",
    "CreditNote",
    "CreditNoteLineItem",
    "CustomerBalanceTransaction",
    "EventBase",
    "WebhookEndpoint",
    "TestHelpers.TestClock",
    "Coupon",
    "DeletedCoupon",
    "PromotionCode",
    "Discount",
    "DeletedDiscount",
    "TaxRate",
    "PaymentMethod",
    "SetupIntent",
    "PaymentIntent",
    "Charge",
    "Refund",
    "Card",
    "Billing.Meter",
    "Billing.MeterEvent",
]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_$][\w$]*)
      | (?P<arrow>=>)
      | (?P<punct>[{}()<>\[\];:?|,.=&*])
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[str]:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", " ", text)
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot tokenize near {text[pos : pos + 40]!r}")
        out.append(match.group().strip())
        pos = match.end()
    return out


class _Parser:
    """Just enough TypeScript for stripe-node's generated declaration files."""

    def __init__(self, tokens: list[str], scope: str) -> None:
        self.t = tokens
        self.i = 0
        self.scope = scope  # "" or "Billing." for resources/Billing/*.d.ts
        self.interfaces: dict[str, dict[str, tuple[bool, Any]]] = {}
        self.aliases: dict[str, Any] = {}
        self.namespaces: list[str] = []

    def peek(self, offset: int = 0) -> str:
        index = self.i + offset
        return self.t[index] if index < len(self.t) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.t[self.i]
        if expected is not None and token != expected:
            raise ValueError(
                f"expected {expected!r}, got {token!r} at {self.t[self.i - 5 : self.i + 5]}"
            )
        self.i += 1
        return token

    def skip_balanced(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            token = self.take()
            if token == open_:
                depth += 1
            elif token == close:
                depth -= 1
                if depth == 0:
                    return

    def qualified(self, name: str) -> str:
        return ".".join([*self.namespaces, name])

    def declarations(self, until: str | None = None) -> None:
        while self.i < len(self.t) and self.peek() != until:
            token = self.peek()
            if token in ("export", "declare"):
                self.take()
            elif token == "import":
                while self.take() != ";":
                    pass
            elif token == "{":
                self.skip_balanced("{", "}")  # export { X } from '...';
                while self.peek() not in (";", "", "}") and self.peek() != "export":
                    self.take()
                if self.peek() == ";":
                    self.take()
            elif token == "class":
                while self.peek() != "{":
                    self.take()
                self.skip_balanced("{", "}")
            elif token == "interface":
                self.take()
                name = self.take()
                if self.peek() == "<":
                    self.skip_balanced("<", ">")
                while self.peek() != "{":
                    self.take()  # extends ...
                self.interfaces[self.scope + self.qualified(name)] = self.members()
            elif token == "namespace":
                self.take()
                name = self.take()
                self.take("{")
                self.namespaces.append(name)
                self.declarations("}")
                self.namespaces.pop()
                self.take("}")
            elif token == "type":
                self.take()
                name = self.take()
                if self.peek() == "<":
                    self.skip_balanced("<", ">")
                self.take("=")
                self.aliases[self.scope + self.qualified(name)] = self.type_()
                if self.peek() == ";":
                    self.take()
            elif token in ("const", "function", "let", "var"):
                while self.take() != ";":
                    pass
            elif token == ";":
                self.take()
            else:
                raise ValueError(f"unexpected {token!r} at {self.t[self.i - 5 : self.i + 5]}")

    def members(self) -> dict[str, tuple[bool, Any]]:
        fields: dict[str, tuple[bool, Any]] = {}
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "[":
                self.take("[")
                self.take()
                self.take(":")
                self.type_()
                self.take("]")
                self.take(":")
                fields["[key]"] = (False, self.type_())
            else:
                if self.peek() == "readonly":
                    self.take()
                name = self.take().strip("'\"")
                optional = self.peek() == "?"
                if optional:
                    self.take()
                if self.peek() == "(" or self.peek() == "<":
                    self.skip_method()
                    continue
                self.take(":")
                fields[name] = (not optional, self.type_())
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        return fields

    def skip_method(self) -> None:
        if self.peek() == "<":
            self.skip_balanced("<", ">")
        self.skip_balanced("(", ")")
        if self.peek() == ":":
            self.take()
            self.type_()
        if self.peek() == ";":
            self.take()

    def type_(self) -> Any:
        if self.peek() == "|":
            self.take()
        options = [self.intersection()]
        while self.peek() == "|":
            self.take()
            options.append(self.intersection())
        return options[0] if len(options) == 1 else {"union": options}

    def intersection(self) -> Any:
        first = self.postfix()
        while self.peek() == "&":
            self.take()
            self.postfix()
        return first

    def postfix(self) -> Any:
        base = self.primary()
        while self.peek() == "[" and self.peek(1) == "]":
            self.take()
            self.take()
            base = {"array": base}
        return base

    def primary(self) -> Any:
        token = self.peek()
        if token.startswith(("'", '"')):
            self.take()
            return {"lit": token[1:-1]}
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            self.take()
            return "number"
        if token == "{":
            fields = self.members()
            if set(fields) == {"[key]"}:
                return {"map": fields["[key]"][1]}
            return {"inline": fields}
        if token == "(":
            start = self.i
            self.skip_balanced("(", ")")
            if self.peek() == "=>":
                self.take()
                self.type_()
                return "any"
            self.i = start
            self.take()
            inner = self.type_()
            self.take(")")
            if self.peek() == "=>":
                self.take()
                self.type_()
                return "any"
            return inner
        name = self.take()
        if name in ("typeof", "keyof"):
            self.primary()
            return "any"
        while self.peek() == "." and re.fullmatch(r"[A-Za-z_$][\w$]*", self.peek(1)):
            self.take()
            name += "." + self.take()
        args: list[Any] = []
        if self.peek() == "<":
            self.take()
            args.append(self.type_())
            while self.peek() == ",":
                self.take()
                args.append(self.type_())
            self.take(">")
        return self.named(name, args)

    def named(self, name: str, args: list[Any]) -> Any:
        simple = {
            "string": "string",
            "number": "number",
            "boolean": "boolean",
            "null": "null",
            "true": {"lit": True},
            "false": {"lit": False},
            "any": "any",
            "unknown": "any",
            "object": "any",
            "Decimal": "string",
            "OtherString": "string",
            "Date": "any",
        }
        if name in simple:
            return simple[name]
        if name == "Array":
            return {"array": args[0]}
        if name == "ApiList":
            return {"list": args[0]}
        if name in ("Record",):
            return {"map": args[1]}
        return {"name": name, "scope": self.scope, "ns": list(self.namespaces)}


def _parse_package(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    interfaces: dict[str, Any] = {}
    aliases: dict[str, Any] = {}
    base = root / "cjs"
    files = [base / "shared.d.ts", *sorted((base / "resources").rglob("*.d.ts"))]
    for path in files:
        if path.name == "index.d.ts":
            continue
        relative = (
            path.relative_to(base / "resources").parent if "resources" in path.parts else Path()
        )
        scope = "".join(part + "." for part in relative.parts)
        parser = _Parser(_tokens(path.read_text()), scope)
        parser.declarations()
        interfaces.update(parser.interfaces)
        aliases.update(parser.aliases)
    return interfaces, aliases


class _Resolver:
    def __init__(self, interfaces: dict[str, Any], aliases: dict[str, Any]) -> None:
        self.interfaces = interfaces
        self.aliases = aliases
        self.out: dict[str, Any] = {}
        self.todo: list[str] = []
        self.roots: set[str] = set()

    def lookup(self, name: str, scope: str, ns: list[str]) -> str | None:
        candidates = []
        for depth in range(len(ns), -1, -1):
            candidates.append(scope + ".".join([*ns[:depth], name]))
        candidates.append(name)
        for scoped in candidates:
            if scoped in self.interfaces or scoped in self.aliases:
                return scoped
        return None

    def resolve(self, node: Any, seen: frozenset[str] = frozenset()) -> Any:
        if isinstance(node, str):
            return node
        if "lit" in node:
            return node
        if "array" in node:
            return {"array": self.resolve(node["array"], seen)}
        if "map" in node:
            return {"map": self.resolve(node["map"], seen)}
        if "list" in node:
            return {"list": self.resolve(node["list"], seen)}
        if "union" in node:
            options = []
            for option in node["union"]:
                resolved = self.resolve(option, seen)
                for flat in (
                    resolved["union"]
                    if isinstance(resolved, dict) and "union" in resolved
                    else [resolved]
                ):
                    if flat not in options:
                        options.append(flat)
            if {"lit"} <= {k for o in options if isinstance(o, dict) for k in o} and all(
                o == "string" or (isinstance(o, dict) and isinstance(o.get("lit"), str))
                for o in options
                if o != "null"
            ):
                # an enum of strings ('a' | 'b' | OtherString): a string
                options = ["string" if isinstance(o, dict) else o for o in options]
                options = list(dict.fromkeys(options))
            return options[0] if len(options) == 1 else {"union": options}
        if "inline" in node:
            return {
                "object": {
                    k: [req, self.resolve(t, seen)] for k, (req, t) in node["inline"].items()
                }
            }
        name = self.lookup(node["name"], node["scope"], node["ns"])
        if name is None:
            return "any"
        if name in self.aliases:
            if name in seen:
                return "any"
            return self.resolve(self.aliases[name], seen | {name})
        if name not in self.roots and not self.nested(name):
            # Another top-level resource (an Account, an Application...): the sandbox never
            # expands it; only its being an object is checked.
            return {"opaque": name}
        if name not in self.out and name not in self.todo:
            self.todo.append(name)
        return {"ref": name}

    def nested(self, name: str) -> bool:
        """Whether ``name`` is declared inside another type's namespace (``Invoice.X``)."""
        parts = name.split(".")
        return any(".".join(parts[:n]) in self.interfaces for n in range(1, len(parts)))

    def run(self, roots: list[str]) -> dict[str, Any]:
        self.roots = set(roots)
        self.todo = list(roots)
        while self.todo:
            name = self.todo.pop(0)
            if name in self.out:
                continue
            fields = self.interfaces[name]
            if set(fields) == {"[key]"}:
                self.out[name] = {"map": self.resolve(fields["[key]"][1])}
                continue
            self.out[name] = {
                "fields": {k: [req, self.resolve(t)] for k, (req, t) in fields.items()}
            }
        return dict(sorted(self.out.items()))


def _package_dir(argv: list[str], tmp: Path) -> Path:
    if argv:
        return Path(argv[0])
    subprocess.run(
        ["npm", "pack", f"stripe@{VERSION}", "--pack-destination", str(tmp)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(tmp / f"stripe-{VERSION}.tgz") as archive:
        archive.extractall(tmp, filter="data")
    return tmp / "package"


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        package = _package_dir(argv, Path(tmp))
        manifest = json.loads((package / "package.json").read_text())
        api_version = re.search(
            r"ApiVersion = '([^']+)'", (package / "cjs" / "apiVersion.js").read_text()
        )
        assert api_version is not None
        interfaces, aliases = _parse_package(package)
        objects = _Resolver(interfaces, aliases).run(ROOTS)
        document = {
            "source": f"stripe (npm) {manifest['version']}, cjs/resources/**/*.d.ts",
            "api_version": api_version.group(1),
            "objects": objects,
        }
        lines = ",\n".join(
            f"  {json.dumps(name)}: {json.dumps(body, separators=(',', ':'))}"
            for name, body in objects.items()
        )
        head = json.dumps({k: v for k, v in document.items() if k != "objects"})[:-1]
        (HERE / "objects.json").write_text(f'{head}, "objects": {{\n{lines}\n}}}}\n')
        shutil.copy(package / "LICENSE", HERE / "LICENSE.stripe-node")
        version, api = manifest["version"], document["api_version"]
        print(f"{len(objects)} object types from stripe {version} ({api})")


if __name__ == "__main__":
    main(sys.argv[1:])
