"""The worker's jobs run when there is work, not on a timer (``jobs/worker_loop.py``).

Every job here has an interval of an hour: a run that happens within the test's patience
can only have been caused by a wake. The tests wait on events the jobs set, never on time.
"""

from __future__ import annotations

import itertools
import threading
import time
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


def _job(
    name: str,
    body: Callable[[Runtime], int],
    recheck: float | None = None,
    wakes_on: frozenset[str] = frozenset({"inbox"}),
) -> Job:
    return Job(
        name, body, "worker", lambda _rt: HOUR, "things done",
        recheck=None if recheck is None else (lambda _rt: recheck), wakes_on=wakes_on,
    )  # fmt: skip


@pytest.fixture
def runtime(sqlite_db: Database) -> Runtime:
    return Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=FrozenClock())


class Bell:
    """The store's doorbell, rung by the test for one queue at a time."""

    def __init__(self) -> None:
        self._rung: set[str] = set()
        self._lock = threading.Lock()

    def ring(self, queue: str = "inbox") -> None:
        with self._lock:
            self._rung.add(queue)

    def __call__(self) -> frozenset[str]:
        with self._lock:
            rung, self._rung = frozenset(self._rung), set()
        return rung


@pytest.fixture
def doorbell() -> Iterator[Bell]:
    yield Bell()


def _loops(runtime: Runtime, jobs: list[Job], rang: Bell) -> WorkerLoops:
    return WorkerLoops(
        JobRegistry(jobs), runtime, jobs, rang, doorbell_seconds=0.001, min_gap_seconds=0.001
    )


def test_each_job_runs_once_at_start(runtime: Runtime, doorbell: Bell) -> None:
    inbox, outbox = Recorder(), Recorder()
    loops = _loops(runtime, [_job("inbox", inbox), _job("outbox", outbox)], doorbell)
    loops.start()
    try:
        assert inbox.has_run(1) and outbox.has_run(1)
    finally:
        loops.stop()


def test_the_doorbell_wakes_a_waiting_job_long_before_its_interval(
    runtime: Runtime, doorbell: Bell
) -> None:
    inbox = Recorder()
    loops = _loops(runtime, [_job("inbox", inbox)], doorbell)
    loops.start()
    try:
        assert inbox.has_run(1)
        doorbell.ring()
        assert inbox.has_run(2)
    finally:
        loops.stop()


def test_a_job_that_found_work_runs_again_at_once(runtime: Runtime, doorbell: Bell) -> None:
    inbox = Recorder([1, 1, 0])
    loops = _loops(runtime, [_job("inbox", inbox)], doorbell)
    loops.start()
    try:
        assert inbox.has_run(3)  # there may be more of its own work: no interval between
    finally:
        loops.stop()


def test_the_doorbell_wakes_only_the_jobs_of_the_queue_that_rang(
    runtime: Runtime, doorbell: Bell
) -> None:
    inbox, outbox = Recorder(), Recorder()
    loops = _loops(
        runtime,
        [_job("inbox", inbox), _job("outbox", outbox, wakes_on=frozenset({"outbox"}))],
        doorbell,
    )
    loops.start()
    try:
        assert inbox.has_run(1) and outbox.has_run(1)
        doorbell.ring("outbox")
        assert outbox.has_run(2)
        doorbell.ring("inbox")
        assert inbox.has_run(2)
        assert outbox.runs == 2  # the inbox's ring did not wake the drain
    finally:
        loops.stop()


def test_runs_of_a_busy_job_start_at_least_the_gap_apart(runtime: Runtime) -> None:
    """A job that keeps finding work runs again after the gap, not back to back: work that
    arrives meanwhile joins the next run (fewer, larger transactions)."""
    starts: list[float] = []
    done = threading.Event()

    def busy(_rt: Runtime) -> int:
        starts.append(time.monotonic())
        if len(starts) == 4:
            done.set()
        return 1

    jobs = [_job("busy", busy)]
    loops = WorkerLoops(
        JobRegistry(jobs), runtime, jobs, frozenset, doorbell_seconds=0.001,
        min_gap_seconds=0.05,
    )  # fmt: skip
    loops.start()
    try:
        assert done.wait(PATIENCE)
    finally:
        loops.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps[:3]) >= 0.05


def test_a_wake_during_a_run_is_not_lost(runtime: Runtime, doorbell: Bell) -> None:
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
    runtime: Runtime, doorbell: Bell
) -> None:
    drain = Recorder()
    loops = _loops(runtime, [_job("drain", drain, recheck=0.01)], doorbell)
    loops.start()
    try:
        assert drain.has_run(2)  # start-up run found nothing: looked again after 0.01 s
    finally:
        loops.stop()


def test_a_job_left_waiting_by_the_timer_is_not_rechecked(runtime: Runtime, doorbell: Bell) -> None:
    """After the recheck also finds nothing, the job goes back to its interval."""
    drain = Recorder()
    marker = Recorder()
    loops = _loops(runtime, [_job("drain", drain, recheck=0.01), _job("marker", marker)], doorbell)
    loops.start()
    try:
        assert drain.has_run(2)
        doorbell.ring()  # a later wake, seen by both jobs
        assert marker.has_run(2) and drain.has_run(3)
        assert drain.runs <= 4  # start, recheck, wake, recheck: no polling in between
    finally:
        loops.stop()


def test_stop_waits_for_the_runs_in_progress(runtime: Runtime, doorbell: Bell) -> None:
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


def test_an_unreachable_store_does_not_stop_the_doorbell(runtime: Runtime, doorbell: Bell) -> None:
    looks = Recorder()
    inbox = Recorder()

    def rang() -> frozenset[str]:
        looks(runtime)
        if looks.runs == 1:
            raise ConnectionError("the store is down")
        return frozenset({"inbox"}) if looks.runs == 2 else frozenset()

    loops = WorkerLoops(
        JobRegistry([_job("inbox", inbox)]), runtime, [_job("inbox", inbox)], rang,
        doorbell_seconds=0.001,
    )  # fmt: skip
    loops.start()
    try:
        assert inbox.has_run(2)  # the second look rang despite the first one's failure
    finally:
        loops.stop()
