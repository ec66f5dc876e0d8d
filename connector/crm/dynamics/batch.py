"""The ``$batch`` wire format of the Dataverse Web API (OData 4.0 ``multipart/mixed``).

A request body is one MIME part per operation::

    --batch_<id>
    Content-Type: application/http
    Content-Transfer-Encoding: binary
    Content-ID: 1

    PATCH https://org.crm.dynamics.com/api/data/v9.2/accounts(<guid>) HTTP/1.1
    Content-Type: application/json; charset=utf-8
    If-Match: *

    {"db_creditstate":"ok"}
    --batch_<id>--

and the response mirrors it, one ``application/http`` part per operation, in order, each
holding a complete HTTP response (status line, headers, body). A part may itself be a
``multipart/mixed`` change set; ``parse_batch_response`` flattens those in order.

**Why no change set.** A change set is one database transaction: if any of its operations
fails, Dataverse rolls back all of them and answers a single error for the whole set. The
records dealbridge writes in a batch (accounts, invoices, products) are independent of each
other, and one bad record (a deleted account, a validation rule) must not undo the other 999.
So every operation is its own top-level part, and the batch is sent with
``Prefer: odata.continue-on-error``; without that preference Dataverse stops at the first
failure and answers nothing for the operations after it, which the adapter then reports as
retryable ("not attempted") rather than losing them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.crm.dynamics.odata import dumps, loads

__all__ = [
    "BatchFormatError",
    "BatchOperation",
    "BatchResponse",
    "build_batch_request",
    "parse_batch_response",
]

CRLF = "\r\n"


class BatchFormatError(ValueError):
    """The ``$batch`` response could not be read."""


@dataclass(frozen=True)
class BatchOperation:
    method: str
    url: str  # absolute URL of the operation
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResponse:
    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> tuple[str | None, str]:
        """Dataverse's ``{"error": {"code", "message"}}``, or the status line."""
        try:
            data = loads(self.body) if self.body.strip() else None
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            message = data["error"].get("message")
            if message:
                return (str(code) if code else None, str(message))
        return None, f"HTTP {self.status} {self.reason}".strip()


def new_boundary(prefix: str = "batch") -> str:
    return f"{prefix}_{uuid.uuid4()}"


def build_batch_request(
    operations: Sequence[BatchOperation], boundary: str | None = None
) -> tuple[str, bytes]:
    """The ``Content-Type`` header and body of a ``$batch`` request, no change set."""
    boundary = boundary or new_boundary()
    lines: list[str] = []
    for index, op in enumerate(operations, start=1):
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {index}",
            "",
            f"{op.method} {op.url} HTTP/1.1",
        ]
        headers = dict(op.headers)
        if op.body is not None:
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("")
        lines.append(dumps(op.body) if op.body is not None else "")
    lines.append(f"--{boundary}--")
    lines.append("")
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _boundary_of(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if not match:
        raise BatchFormatError(f"no multipart boundary in Content-Type {content_type!r}")
    return match.group(1).strip()


def _split_head(block: bytes) -> tuple[list[str], bytes]:
    """Header lines and the rest, split at the first blank line (CRLF or LF)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, rest = block.partition(separator)
        if sep:
            return head.decode("utf-8", "replace").splitlines(), rest
    return block.decode("utf-8", "replace").splitlines(), b""


def _headers(lines: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)
    parts: list[bytes] = []
    for piece in pieces[1:]:  # pieces[0] is the preamble
        if piece.startswith(b"--"):
            break  # the closing delimiter
        parts.append(piece.removeprefix(b"\r\n").removeprefix(b"\n"))
    return parts


def _parse_http(raw: bytes) -> BatchResponse:
    lines, body = _split_head(raw.lstrip(b"\r\n"))
    if not lines:
        raise BatchFormatError("empty HTTP response in a batch part")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise BatchFormatError(f"not an HTTP status line: {lines[0]!r}")
    try:
        status = int(status_line[1])
    except ValueError as exc:
        raise BatchFormatError(f"not an HTTP status line: {lines[0]!r}") from exc
    reason = status_line[2] if len(status_line) > 2 else ""
    return BatchResponse(
        status=status, reason=reason, headers=_headers(lines[1:]), body=body.strip()
    )


def parse_batch_response(content_type: str, body: bytes) -> list[BatchResponse]:
    """Every operation's response, in request order, change sets flattened."""
    responses: list[BatchResponse] = []
    for part in _parts(body, _boundary_of(content_type)):
        head, rest = _split_head(part)
        part_type = _headers(head).get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            responses.extend(parse_batch_response(part_type, rest))
        else:
            responses.append(_parse_http(rest))
    return responses
