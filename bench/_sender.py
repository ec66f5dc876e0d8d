"""An open-loop HTTP POST sender on one asyncio event loop, for the intake benchmarks.

Why not ``requests`` from a pool of threads (what ``bench.serve_intake`` used first): at
200 requests/s and more, 64 sender threads sharing one interpreter spent much of every
measured latency waiting for the GIL after the answer had arrived, so the client's own
scheduling was part of every figure (the web-only control measured p99 82 ms at 200/s on an
idle machine). Here one thread writes pre-built requests on keep-alive connections and
reads the answers; request ``i`` is due at ``start + i / rate`` whatever the answers (open
loop), and its latency runs from the moment its bytes were written (or its connection was
opened) to the end of the answer.

Stdlib only: a load generator such as wrk is closed-loop (a connection waits for its answer
before the next request), which hides a slow server's queue (coordinated omission).
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field

#: Longest a request may take before it counts as an error.
TIMEOUT_SECONDS = 10.0
#: A request started this much after it was due counts as late (the sender fell behind).
LATE_SECONDS = 0.010


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    #: (seconds since the first request was due, latency) of each request, in answer order.
    timeline: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late: int = 0


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST, keep-alive, ready to write."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


#: An idle connection older than this is not reused: gunicorn closes a keep-alive connection
#: after 2 s idle, and a request written as it closes is lost (a client error, not the server's).
IDLE_REUSE_SECONDS = 1.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        return not self.reader.at_eof() and now - self.idle_since < IDLE_REUSE_SECONDS

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Write ``request``, read the answer; (status, whether the connection stays open)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, keep = 0, True
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                keep = False
        if length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


async def _send_all(host: str, port: int, requests: list[bytes], rate: float) -> Outcome:
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    idle: list[_Connection] = []

    def reuse(now: float) -> _Connection | None:
        while idle:
            connection = idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    async def one(request: bytes) -> None:
        sent = loop.time()
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                connection = reuse(sent) or _Connection(*await asyncio.open_connection(host, port))
                status, keep = await connection.exchange(request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            outcome.latencies.append(loop.time() - sent)
            outcome.errors.append(type(exc).__name__)
            return
        outcome.latencies.append(loop.time() - sent)
        outcome.timeline.append((sent - started, loop.time() - sent))
        if status != 200:
            outcome.errors.append(str(status))
        if keep:
            connection.idle_since = loop.time()
            idle.append(connection)
        else:
            connection.close()

    started = loop.time() + 0.5
    tasks = []
    for number, request in enumerate(requests):
        due = started + number / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # open-loop pacing of the load, not synchronisation
        if loop.time() - due > LATE_SECONDS:
            outcome.late += 1
        tasks.append(asyncio.create_task(one(request)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return outcome


def send_open_loop(host: str, port: int, requests: list[bytes], rate: float) -> Outcome:
    """POST ``requests`` (from ``request_bytes``) at ``rate`` per second, open loop.

    The garbage collector is off meanwhile: a full collection of the sender's own objects
    paused it for tens of milliseconds, which counted as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(_send_all(host, port, requests, rate))
    finally:
        gc.enable()
