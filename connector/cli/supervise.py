"""`dealbridge serve`'s supervisor: web, worker and clock as separate processes on one machine.

One interpreter running the web threads beside a busy worker made acknowledgements wait for
the worker (the GIL, and SQLite's write lock while the worker held it), so ``serve`` runs the
three as child processes, exactly as a PaaS runs the Procfile, and keeps them running: a
child that exits is started again (after a pause that doubles while it keeps failing, up to
``MAX_PAUSE``). SIGTERM or SIGINT stops every child, then the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
#: A child that ran this long before exiting starts again after the first pause.
HEALTHY_AFTER = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class _Child:
    name: str
    command: Sequence[str]
    niceness: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = FIRST_PAUSE
    restart_at: float | None = None
    restarts: int = field(default=0)


def _start(child: _Child) -> None:
    nice = child.niceness

    def lower_priority() -> None:
        if nice:
            os.nice(nice)

    child.proc = subprocess.Popen(  # noqa: S603 - our own interpreter
        list(child.command), preexec_fn=lower_priority if nice else None
    )
    child.started = time.monotonic()
    child.restart_at = None
    log.info("serve: %s started (pid %s)", child.name, child.proc.pid)


def supervise(
    commands: Mapping[str, Sequence[str]],
    *,
    poll_seconds: float = 0.5,
    niceness: Mapping[str, int] | None = None,
) -> int:
    """Run each command as a child process until SIGTERM/SIGINT; restart any that exits."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("serve: stopping (signal %s)", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children = [
        _Child(name, command, (niceness or {}).get(name, 0)) for name, command in commands.items()
    ]
    try:
        for child in children:
            _start(child)
        log.info("serve: supervising %s", ", ".join(c.name for c in children))
        while not stop.wait(poll_seconds):
            now = time.monotonic()
            for child in children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        _start(child)
                    continue
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    continue
                ran = now - child.started
                child.pause = (
                    FIRST_PAUSE if ran >= HEALTHY_AFTER else min(child.pause * 2, MAX_PAUSE)
                )
                child.restart_at = now + child.pause
                log.error(
                    "serve: %s exited with %s after %.0f s; starting it again in %.0f s",
                    child.name,
                    code,
                    ran,
                    child.pause,
                )
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _stop_all(children: Sequence[_Child]) -> None:
    running = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in running:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
