"""The deploy commands as a PaaS runs them: real processes, synchronised on their logs."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEALBRIDGE")},
        "STRIPE_API_KEY": "sk_test_process0123",
        "STRIPE_WEBHOOK_SECRET": "whsec_process",
        "DEALBRIDGE_SECRET_KEY": "p" * 40,
        "SALESFORCE_USERNAME": "integration@example.com",
        "SALESFORCE_PASSWORD": "pw-process",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'process.sqlite3'}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


class Running:
    """A started process whose output a reader thread feeds, line by line, into a queue.

    Reading the pipe directly with select() and readline() can miss lines: readline pulls a
    whole chunk into the text buffer, and select() then waits on an empty pipe while the line
    we want sits in that buffer. A thread that blocks on the pipe has no such blind spot.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> list[str]:
        """Read the output until a line matches; the lines read so far."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if re.search(pattern, line):
                return seen
        raise AssertionError(f"never saw {pattern!r}; output was:\n{''.join(seen)}")


@contextmanager
def running(command: str, env: dict[str, str]) -> Iterator[Running]:
    proc = subprocess.Popen(  # noqa: S602 - the Procfile line is a shell command by design
        command, shell=True, env=env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        yield Running(proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _procfile(kind: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return command.strip()
    raise AssertionError(f"no {kind} process in the Procfile")


def test_the_procfile_release_migrates_the_store(tmp_path: Path) -> None:
    env = _env(tmp_path, _free_port())
    result = subprocess.run(  # noqa: S602
        _procfile("release"), shell=True, env=env, cwd=REPO, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


def test_the_procfile_web_serves_health_on_port(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(tmp_path, port)
    subprocess.run(shlex.split(_procfile("release")), env=env, cwd=REPO, check=True)
    with running(_procfile("web"), env) as proc:
        proc.wait_for(rf"Listening at: http://0\.0\.0\.0:{port}")
        proc.wait_for(r"Booting worker")
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["store"]["reachable"] is True


def _wait_for_all(proc: Running, patterns: list[str], timeout: float = 60) -> list[str]:
    """Read until every pattern matched a line, in any order (children interleave)."""
    lines: list[str] = []
    left = list(patterns)
    while left:
        lines += proc.wait_for("|".join(f"(?:{p})" for p in left), timeout)
        left = [p for p in left if not any(re.search(p, line) for line in lines)]
    return lines


def test_serve_supervises_web_worker_and_clock_as_separate_processes(tmp_path: Path) -> None:
    port = _free_port()
    with running(f"dealbridge serve --port {port}", _env(tmp_path, port)) as proc:
        lines = _wait_for_all(
            proc,
            [
                r"serve: supervising web, worker, clock",
                rf"Listening at: http://127\.0\.0\.1:{port}",
                r"running worker jobs",
                r"running clock jobs",
            ],
        )
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        pids = {
            m.group(1): int(m.group(2))
            for line in lines
            if (m := re.search(r"serve: (\w+) started \(pid (\d+)\)", line))
        }
        assert set(pids) == {"web", "worker", "clock"} and len(set(pids.values())) == 3
        # Webhooks are acknowledged first: the worker and clock run at a lower CPU priority.
        base = os.getpriority(os.PRIO_PROCESS, pids["web"])
        assert os.getpriority(os.PRIO_PROCESS, pids["worker"]) == base + 10
        assert os.getpriority(os.PRIO_PROCESS, pids["clock"]) == base + 10
        os.kill(pids["worker"], signal.SIGKILL)  # a crashed worker is started again
        restarted = _wait_for_all(
            proc, [r"serve: worker exited with -9", r"serve: worker started \(pid \d+\)"]
        )
        again = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert health.status_code == 200 and again.status_code == 200
    assert not any(f"(pid {pids['worker']})" in line for line in restarted[-1:])


def test_worker_and_clock_start_their_jobs(tmp_path: Path) -> None:
    env = _env(tmp_path, _free_port())
    subprocess.run(shlex.split(_procfile("release")), env=env, cwd=REPO, check=True)
    with running(_procfile("worker"), env) as proc:
        line = proc.wait_for(r"running worker jobs")[-1]
    assert "drain_outbox" in line and "process_inbox" in line
    with running(_procfile("clock"), env) as proc:
        line = proc.wait_for(r"running clock jobs")[-1]
    assert "poll_crm" in line and "reconcile_stripe" in line


def test_a_broken_config_stops_start_up_with_every_problem(tmp_path: Path) -> None:
    env = _env(tmp_path, _free_port())
    del env["STRIPE_API_KEY"]
    env["DEALBRIDGE__JOBS__WORKER_SECONDS"] = "0"
    result = subprocess.run(
        [str(BIN / "dealbridge"), "worker"], env=env, cwd=REPO, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "STRIPE_API_KEY: not set" in result.stderr
    assert "jobs.worker_seconds:" in result.stderr


def test_an_invalid_mapping_stops_serve_web_and_worker_saying_why(tmp_path: Path) -> None:
    mapping = tmp_path / "broken.yaml"
    mapping.write_text("crm: salesforce\ndeal: {}\n", encoding="utf-8")
    env = _env(tmp_path, _free_port())
    env["DEALBRIDGE__CRM__MAPPING"] = str(mapping)
    for command in ("serve", "web", "worker", "clock"):
        result = subprocess.run(
            [str(BIN / "dealbridge"), command], env=env, cwd=REPO, capture_output=True,
            text=True, check=False, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, (command, result.stderr)
        assert "the CRM mapping is invalid" in result.stderr, command
        assert str(mapping) in result.stderr, command
