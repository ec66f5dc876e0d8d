"""Periodic work: one registry, run by APScheduler in production and by `sync --once` in tests.

Each job returns how many items it handled. `run_once` runs every clock job once and then
drains every worker job until it reports no more due work, so an end-to-end test can call
one command instead of sleeping until a scheduler gets round to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from connector.runtime import Runtime

log = logging.getLogger(__name__)

Role = Literal["clock", "worker"]
#: How often a job runs, in seconds, read from the runtime's config when it is scheduled.
Interval = Callable[[Runtime], int]
MAX_DRAIN_ROUNDS = 1000


@dataclass(frozen=True)
class Job:
    """A unit of periodic work. ``interval`` reads the period from config at schedule time."""

    name: str
    run: Callable[[Runtime], int]
    role: Role
    interval: Interval
    #: What the job's count is, for the INFO line a run that did something writes
    #: ("3 Stripe events processed"); a run that did nothing logs at DEBUG only.
    reports: str = "items handled"
    #: What ``run_once`` (``sync --once``) runs instead, when the job waits for time to pass
    #: when scheduled (the outbox drain fills batches); ``sync --once`` means now.
    once: Callable[[Runtime], int] | None = None
    #: For the worker's loops (``jobs/worker_loop.py``): after a run that was woken and found
    #: nothing it could do yet, look again this many seconds later rather than a whole
    #: interval (the outbox drain holds a partial batch back for ``batch_wait_seconds``).
    recheck: Callable[[Runtime], float] | None = None


class JobRegistry:
    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[str, Job] = {}
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        if job.name in self._jobs:
            raise ValueError(f"job {job.name!r} is registered twice")
        self._jobs[job.name] = job

    def register(
        self, name: str, role: Role, interval: Callable[[Runtime], int]
    ) -> Callable[[Callable[[Runtime], int]], Callable[[Runtime], int]]:
        def decorate(func: Callable[[Runtime], int]) -> Callable[[Runtime], int]:
            self.add(Job(name=name, run=func, role=role, interval=interval))
            return func

        return decorate

    def jobs(self, roles: Iterable[Role] = ("clock", "worker")) -> list[Job]:
        wanted = set(roles)
        return [job for job in self._jobs.values() if job.role in wanted]

    def run_job(self, job: Job, runtime: Runtime, *, once: bool = False) -> int:
        """Run one job, counting the outcome; a failure is logged, never raised to APScheduler.
        ``once``: as ``sync --once`` runs it (``Job.once``)."""
        run = job.once if once and job.once is not None else job.run
        try:
            handled = run(runtime)
        except Exception:
            runtime.metrics.job_runs.labels(job=job.name, outcome="error").inc()
            log.exception("job %s failed", job.name)
            return 0
        runtime.metrics.job_runs.labels(job=job.name, outcome="ok").inc()
        if handled:
            log.info("%s: %d %s", job.name, handled, job.reports)
        else:
            log.debug("%s: nothing to do", job.name)
        return handled

    def run_once(self, runtime: Runtime) -> dict[str, int]:
        """One full round: every clock job once, then every worker job until it is idle.

        Worker jobs are drained together and repeatedly, because one job's output can be
        another's input (an activation queues CRM writes that the outbox job sends).
        """
        totals: dict[str, int] = {}
        for job in self.jobs(("clock",)):
            totals[job.name] = self.run_job(job, runtime, once=True)
        workers = self.jobs(("worker",))
        for _ in range(MAX_DRAIN_ROUNDS):
            round_total = 0
            for job in workers:
                handled = self.run_job(job, runtime, once=True)
                totals[job.name] = totals.get(job.name, 0) + handled
                round_total += handled
            if round_total == 0:
                break
        return totals

    def build_scheduler(
        self, runtime: Runtime, roles: Iterable[Role], *, blocking: bool
    ) -> BaseScheduler:
        scheduler: BaseScheduler = (
            BlockingScheduler(timezone="UTC") if blocking else BackgroundScheduler(timezone="UTC")
        )
        for job in self.jobs(roles):
            # Clock jobs run once at start-up too: a process that was stopped (or a fresh
            # deployment) catches up at once, not one full period later.
            first: dict[str, Any] = (
                {"next_run_time": datetime.now(UTC)} if job.role == "clock" else {}
            )
            scheduler.add_job(
                self.run_job,
                "interval",
                seconds=job.interval(runtime),
                args=[job, runtime],
                id=job.name,
                name=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                **first,
            )
        return scheduler
