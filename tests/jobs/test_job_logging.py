"""The scheduler's INFO lines say what happened, not that a job ran (issue 16, item 7)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from connector.jobs.registry import Job, JobRegistry
from connector.logs import configure_logging
from connector.runtime import Runtime
from connector.store.db import Database
from tests.support import FrozenClock, make_config


@pytest.fixture
def info_logs(capfd: pytest.CaptureFixture[str]) -> Any:
    configure_logging("INFO", "json", ())
    yield capfd
    configure_logging("WARNING", "text", ())


def _lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return [json.loads(line)["message"] for line in capfd.readouterr().err.splitlines() if line]


def test_a_job_that_did_something_says_what_and_an_idle_one_is_silent_at_info(
    info_logs: Any, sqlite_db: Database
) -> None:
    runtime = Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=FrozenClock())
    busy = Job("process_inbox", lambda _rt: 3, "worker", lambda _rt: 1, "Stripe events processed")
    idle = Job("drain_outbox", lambda _rt: 0, "worker", lambda _rt: 1, "outbox messages sent")
    registry = JobRegistry([busy, idle])
    info_logs.readouterr()  # the store's migration lines, before the jobs run
    for _ in range(10):
        registry.run_job(idle, runtime)
    registry.run_job(busy, runtime)
    assert _lines(info_logs) == ["process_inbox: 3 Stripe events processed"]


def test_apschedulers_ran_a_job_lines_stay_below_info(info_logs: Any) -> None:
    assert not logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)
    assert not logging.getLogger("apscheduler.scheduler").isEnabledFor(logging.INFO)


def test_every_scheduled_job_says_what_its_count_is() -> None:
    from connector.jobs.schedule import JOBS

    assert all(job.reports != "items handled" for job in JOBS)
