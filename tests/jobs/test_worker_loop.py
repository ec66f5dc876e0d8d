"""The worker's jobs run when there is work, not on a timer (``jobs/worker_loop.py``).

Every job here has an interval of an hour: a run that happens within the test's patience
can only have been caused by a wake. The tests wait on events the jobs set, never on time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from connector.jobs.registry import Job, JobRegistry
from connector.jobs.worker_loop import WorkerLoops
from connector.runtime import Runtime
from connector.store.db import Database
from tests.support import FrozenClock, make_config

HOUR = 3600
PATIENCE = 10  # seconds a test waits for an event that must happen at once


class Recorder:
    """A job body that counts its runs and signals each one."""

    def __init__(self, results: list[int] | None = None) -> None:
        self.runs = 0
        self.results = list(results or [])
        self.ran: list[threading.Event] = [threading.Event() for _ in range(10)]

    def __call__(self, _runtime: Runtime) -> int:
        self.runs += 1
        self.ran[min(self.runs, 9)].set()
        return self.results.pop(0) if self.results else 0

    def has_run(self, times: int) -> bool:
        return self.ran[times].wait(PATIENCE)


def _job(name: str, body: Callable[[Runtime], int], recheck: float | None = None) -> Job:
    return Job(
        name, body, "worker", lambda _rt: HOUR, "things done",
        recheck=None if recheck is None else (lambda _rt: recheck),
    )  # fmt: skip


@pytest.fixture
def runtime(sqlite_db: Database) -> Runtime:
    return Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=FrozenClock())


@pytest.fixture
def doorbell() -> Iterator[threading.Event]:
    """Set it to ring once."""
    yield threading.Event()


def _loops(runtime: Runtime, jobs: list[Job], doorbell: threading.Event) -> WorkerLoops:
    def rang() -> bool:
        if doorbell.is_set():
            doorbell.clear()
            return True
        return False

    return WorkerLoops(JobRegistry(jobs), runtime, jobs, rang, doorbell_seconds=0.001)


def test_each_job_runs_once_at_start(runtime: Runtime, doorbell: threading.Event) -> None:
    inbox, outbox = Recorder(), Recorder()
    loops = _loops(runtime, [_job("inbox", inbox), _job("outbox", outbox)], doorbell)
    loops.start()
    try:
        assert inbox.has_run(1) and outbox.has_run(1)
    finally:
        loops.stop()


def test_the_doorbell_wakes_a_waiting_job_long_before_its_interval(
    runtime: Runtime, doorbell: threading.Event
) -> None:
    inbox = Recorder()
    loops = _loops(runtime, [_job("inbox", inbox)], doorbell)
    loops.start()
    try:
        assert inbox.has_run(1)
        doorbell.set()
        assert inbox.has_run(2)
    finally:
        loops.stop()


def test_a_job_that_found_work_runs_again_and_wakes_the_others(
    runtime: Runtime, doorbell: threading.Event
) -> None:
    gate = threading.Event()
    first = Recorder([1, 0])

    def inbox(rt: Runtime) -> int:
        gate.wait(PATIENCE)  # the outbox has had its start-up run first
        return first(rt)

    outbox = Recorder()
    loops = _loops(runtime, [_job("inbox", inbox), _job("outbox", outbox)], doorbell)
    loops.start()
    try:
        assert outbox.has_run(1)
        gate.set()
        assert first.has_run(2)  # again at once: there may be more of its own work
        assert outbox.has_run(2)  # woken: what the inbox handled may be its work
    finally:
        loops.stop()


def test_a_wake_during_a_run_is_not_lost(runtime: Runtime, doorbell: threading.Event) -> None:
    started, release = threading.Event(), threading.Event()
    runs = Recorder()

    def drain(rt: Runtime) -> int:
        handled = runs(rt)
        if runs.runs == 1:
            started.set()
            release.wait(PATIENCE)
        return handled

    loops = _loops(runtime, [_job("drain", drain)], doorbell)
    loops.start()
    try:
        assert started.wait(PATIENCE)
        loops.wake_all()  # work queued while the first run was under way
        release.set()
        assert runs.has_run(2)
    finally:
        loops.stop()


def test_a_woken_job_that_could_not_act_yet_looks_again_after_its_recheck(
    runtime: Runtime, doorbell: threading.Event
) -> None:
    drain = Recorder()
    loops = _loops(runtime, [_job("drain", drain, recheck=0.01)], doorbell)
    loops.start()
    try:
        assert drain.has_run(2)  # start-up run found nothing: looked again after 0.01 s
    finally:
        loops.stop()


def test_a_job_left_waiting_by_the_timer_is_not_rechecked(
    runtime: Runtime, doorbell: threading.Event
) -> None:
    """After the recheck also finds nothing, the job goes back to its interval."""
    drain = Recorder()
    marker = Recorder()
    loops = _loops(runtime, [_job("drain", drain, recheck=0.01), _job("marker", marker)], doorbell)
    loops.start()
    try:
        assert drain.has_run(2)
        doorbell.set()  # a later wake, seen by both jobs
        assert marker.has_run(2) and drain.has_run(3)
        assert drain.runs <= 4  # start, recheck, wake, recheck: no polling in between
    finally:
        loops.stop()


def test_stop_waits_for_the_runs_in_progress(runtime: Runtime, doorbell: threading.Event) -> None:
    finished = threading.Event()
    started = threading.Event()

    def slow(_rt: Runtime) -> int:
        started.set()
        finished.wait(0.2)  # a run that takes a moment; stop() must wait for it
        finished.set()
        return 0

    loops = _loops(runtime, [_job("slow", slow)], doorbell)
    loops.start()
    assert started.wait(PATIENCE)
    loops.stop()
    assert finished.is_set()


def test_an_unreachable_store_does_not_stop_the_doorbell(
    runtime: Runtime, doorbell: threading.Event
) -> None:
    looks = Recorder()
    inbox = Recorder()

    def rang() -> bool:
        looks(runtime)
        if looks.runs == 1:
            raise ConnectionError("the store is down")
        return looks.runs == 2

    loops = WorkerLoops(
        JobRegistry([_job("inbox", inbox)]), runtime, [_job("inbox", inbox)], rang,
        doorbell_seconds=0.001,
    )  # fmt: skip
    loops.start()
    try:
        assert inbox.has_run(2)  # the second look rang despite the first one's failure
    finally:
        loops.stop()
