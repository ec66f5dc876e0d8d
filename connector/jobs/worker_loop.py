"""How ``dealbridge worker`` runs the worker jobs: each in its own thread, at once when there
is work, without waiting for a timer.

Each job runs again while it finds work (a burst is drained in one go), and otherwise waits
up to its interval (``jobs.worker_seconds``) or until the store's doorbell
(``store/doorbell.py``) rings for a queue it works on (``Job.wakes_on``: a new inbox event,
outbox message or approval, from any process, this one included: an event handled queues a
CRM write, which wakes the drain). A wake that arrives while the job runs is kept, so the job
looks again as soon as it finishes; none is lost.

APScheduler still runs the clock's jobs, which are periodic by nature. The worker's are not:
they drain queues, and a timer only added latency (about 4 s from a Stripe change to the CRM
record with a 2 s timer; docs/benchmarks.md, "Freshness").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence

from connector.jobs.registry import Job, JobRegistry
from connector.runtime import Runtime
from connector.store.doorbell import Doorbell

log = logging.getLogger(__name__)

#: How often the doorbell looks at the store, in seconds.
DOORBELL_SECONDS = 0.05
#: Shortest time between the starts of two runs of one job, in seconds. Work that arrives
#: meanwhile waits for the next run and is handled with the rest: under a stream of webhooks
#: a job that ran again the moment it finished would take SQLite's write lock many times a
#: second, one event at a time, and delay the web process's acknowledgements (p50 5 ms ->
#: 220-430 ms at 200 events/s, bench/serve_intake.py), where a few runs a second handle the
#: same events in batches.
MIN_GAP_SECONDS = 0.25


class WorkerLoops:
    def __init__(
        self,
        registry: JobRegistry,
        runtime: Runtime,
        jobs: Sequence[Job],
        rang: Callable[[], Collection[str]],
        *,
        doorbell_seconds: float = DOORBELL_SECONDS,
        min_gap_seconds: float = MIN_GAP_SECONDS,
    ) -> None:
        self._registry = registry
        self._runtime = runtime
        self._jobs = list(jobs)
        self._rang = rang
        self._doorbell_seconds = doorbell_seconds
        self._min_gap_seconds = min_gap_seconds
        self._wakes = {job.name: threading.Event() for job in self._jobs}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_stop: list[Callable[[], None]] = []

    @classmethod
    def for_worker(cls, registry: JobRegistry, runtime: Runtime) -> WorkerLoops:
        """The worker's jobs of ``registry``, woken by the runtime's store."""
        doorbell = Doorbell(runtime.db.engine, runtime.db.intake_spool)
        loops = cls(registry, runtime, registry.jobs(("worker",)), doorbell.rang)
        loops._on_stop.append(doorbell.close)
        return loops

    def start(self) -> None:
        for job in self._jobs:
            thread = threading.Thread(target=self._run, args=(job,), name=job.name, daemon=True)
            self._threads.append(thread)
            thread.start()
        doorbell = threading.Thread(target=self._listen, name="doorbell", daemon=True)
        self._threads.append(doorbell)
        doorbell.start()

    def wake_all(self) -> None:
        for wake in self._wakes.values():
            wake.set()

    def stop_soon(self) -> None:
        """Ask every loop to stop after its current run (safe from a signal handler)."""
        self._stopping.set()
        self.wake_all()

    def stop(self) -> None:
        """Stop, and wait for the runs in progress to finish."""
        self.stop_soon()
        for thread in self._threads:
            thread.join()
        for release in self._on_stop:
            release()

    def wait(self) -> None:
        """Block until ``stop`` (the process runs until it is signalled)."""
        self._stopping.wait()

    def _run(self, job: Job) -> None:
        wake = self._wakes[job.name]
        interval = job.interval(self._runtime)
        recheck = job.recheck(self._runtime) if job.recheck is not None else None
        woken = True
        next_start = time.monotonic()
        while not self._stopping.is_set():
            gap = next_start - time.monotonic()
            if gap > 0 and self._stopping.wait(gap):
                break
            wake.clear()  # wakes until now are this run's: it will see their work
            next_start = time.monotonic() + self._min_gap_seconds
            if self._registry.run_job(job, self._runtime):
                woken = True  # there may be more of its own work
                continue
            # Woken for work it could not do yet (a partial batch held back): look again soon.
            timeout = recheck if woken and recheck is not None else interval
            woken = wake.wait(timeout)

    def _listen(self) -> None:
        while not self._stopping.wait(self._doorbell_seconds):
            try:
                rang = self._rang()
            except Exception:
                # The store is unreachable: the jobs' own runs report it; the timer still
                # runs them. Look again at the next beat.
                log.debug("the doorbell could not look at the store", exc_info=True)
                continue
            for job in self._jobs:
                if job.wakes_on.intersection(rang):
                    self._wakes[job.name].set()
