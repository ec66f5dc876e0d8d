"""``POST $batch``: OData 4.0 ``multipart/mixed`` batches, with change sets.

Operations run in order. A change set (a nested ``multipart/mixed`` part) is one transaction:
if one of its operations fails, the others are rolled back and the change set answers only
that failure (with its ``Content-ID``); inside a change set ``$1`` stands for the URL of the
row operation 1 created. Without ``Prefer: odata.continue-on-error`` the batch stops at the
first failure and answers with that failure's status; with it, every operation is tried and
the batch answers 200. A batch holds at most 1,000 operations and no ``GET`` in a change set.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import DataverseError
from .webapi import Answer, ApiRequest

MAX_OPERATIONS = 1000
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    429: "Too Many Requests",
    501: "Not Implemented",
}
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass
class Operation:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    operations: list[Operation] = field(default_factory=list)


Part = Operation | ChangeSet
Run = Callable[[ApiRequest], Answer]


def _split_head(block: bytes) -> tuple[list[str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = block.partition(separator)
        if found:
            return head.decode("utf-8", "replace").splitlines(), rest
    return block.decode("utf-8", "replace").splitlines(), b""


def _headers(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, found, value = line.partition(":")
        if found:
            out[name.strip().lower()] = value.strip()
    return out


def _pieces(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)
    out: list[bytes] = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        out.append(piece.removeprefix(b"\r\n").removeprefix(b"\n"))
    if not closed:
        raise DataverseError(400, "0x80048d19", f"The batch is not terminated by --{boundary}--.")
    return out


def _operation(raw: bytes, part_headers: dict[str, str]) -> Operation:
    lines, body = _split_head(raw.lstrip(b"\r\n"))
    if not lines:
        raise DataverseError(400, "0x80048d19", "An operation of the batch has no request line.")
    words = lines[0].split(" ")
    if len(words) < 2:
        raise DataverseError(400, "0x80048d19", f"Malformed request line: {lines[0]!r}.")
    body = body.rstrip(b"\r\n")
    return Operation(
        method=words[0].upper(),
        url=words[1],
        headers=_headers(lines[1:]),
        body=body,
        content_id=part_headers.get("content-id"),
    )


def parse(content_type: str, body: bytes) -> list[Part]:
    found = _BOUNDARY.search(content_type or "")
    if not found:
        raise DataverseError(
            400, "0x80048d19", "The batch request must have a multipart/mixed boundary."
        )
    parts: list[Part] = []
    for piece in _pieces(body, found.group(1)):
        head, rest = _split_head(piece)
        headers = _headers(head)
        kind = headers.get("content-type", "").lower()
        if kind.startswith("multipart/mixed"):
            inner = _BOUNDARY.search(headers["content-type"])
            if not inner:
                raise DataverseError(400, "0x80048d19", "A change set has no boundary.")
            change_set = ChangeSet()
            for item in _pieces(rest, inner.group(1)):
                item_head, item_rest = _split_head(item)
                change_set.operations.append(_operation(item_rest, _headers(item_head)))
            parts.append(change_set)
        elif kind.startswith("application/http"):
            parts.append(_operation(rest, headers))
        else:
            raise DataverseError(
                400,
                "0x80048d19",
                f"A batch part must be application/http, not {kind or 'untyped'}.",
            )
    count = sum(len(p.operations) if isinstance(p, ChangeSet) else 1 for p in parts)
    if count > MAX_OPERATIONS:
        raise DataverseError(
            400,
            "0x8004d2d1",
            f"The number of requests in the batch ({count}) exceeds the limit of {MAX_OPERATIONS}.",
        )
    return parts


class BatchRunner:
    def __init__(self, template: ApiRequest, run: Run, transaction: Callable[[], object]) -> None:
        self.template = template
        self.run = run
        self.transaction = transaction  # a context manager factory (Store.transaction)

    def _request(self, operation: Operation, content_ids: dict[str, str]) -> ApiRequest:
        url = operation.url
        for ref, target in content_ids.items():
            if url == ref or url.startswith(ref + "/"):
                url = target + url[len(ref) :]
        parts = urlsplit(url)
        path = unquote(parts.path)
        service = urlsplit(self.template.base).path
        if path.startswith(service + "/"):
            resource = path[len(service) + 1 :]
        elif re.match(r"^/?api/data/v\d+\.\d+/", path):
            resource = re.sub(r"^/?api/data/v\d+\.\d+/", "", path)
        else:
            resource = path.lstrip("/")
        headers = {**operation.headers}
        return ApiRequest(
            method=operation.method,
            resource=resource,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=operation.body,
            base=self.template.base,
            user_id=self.template.user_id,
            content_ids=dict(content_ids),
        )

    def _answer(self, operation: Operation, content_ids: dict[str, str]) -> Answer:
        try:
            return self.run(self._request(operation, content_ids))
        except DataverseError as error:
            return Answer.error(error)

    def execute(self, parts: list[Part], continue_on_error: bool) -> tuple[int, bytes, str]:
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        status = 200
        for part in parts:
            if isinstance(part, Operation):
                answer = self._answer(part, {})
                out += [f"--{boundary}", *_http(answer, None)]
                failed = answer.status >= 400
            else:
                answers, failed = self._change_set(part)
                inner = f"changesetresponse_{uuid.uuid4()}"
                out += [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
                for operation, answer in answers:
                    out += [f"--{inner}", *_http(answer, operation.content_id)]
                out.append(f"--{inner}--")
                answer = answers[-1][1]
            if failed and not continue_on_error:
                status = answer.status
                break
        out += [f"--{boundary}--", ""]
        return status, "\r\n".join(out).encode("utf-8"), f"multipart/mixed; boundary={boundary}"

    def _change_set(self, change_set: ChangeSet) -> tuple[list[tuple[Operation, Answer]], bool]:
        answers: list[tuple[Operation, Answer]] = []
        content_ids: dict[str, str] = {}

        class _Failed(Exception):
            pass

        try:
            with self.transaction():  # type: ignore[attr-defined]
                for operation in change_set.operations:
                    if operation.method == "GET":
                        answer = Answer.error(
                            DataverseError(
                                400, "0x80048d19", "GET requests are not allowed in a change set."
                            )
                        )
                    else:
                        answer = self._answer(operation, content_ids)
                    if answer.status >= 400:
                        answers = [(operation, answer)]
                        raise _Failed
                    answers.append((operation, answer))
                    location = answer.headers.get("OData-EntityId") or answer.headers.get(
                        "Location"
                    )
                    if operation.content_id and location:
                        content_ids[f"${operation.content_id}"] = location
        except _Failed:
            return answers, True
        return answers, False


def _http(answer: Answer, content_id: str | None) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, '')}".rstrip()]
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    lines += ["", answer.body.decode("utf-8")]
    return lines
