"""Periodic jobs. Each capability registers its jobs in ``default_registry``."""

from __future__ import annotations

from connector.jobs.registry import Job, JobRegistry


def default_registry() -> JobRegistry:
    """Every job dealbridge runs; imported lazily so the CLI starts fast."""
    from connector.jobs import housekeeping
    from connector.services import credit, crm_events, inbox, outbox, reconcile

    registry = JobRegistry()
    jobs = (
        *housekeeping.JOBS,
        *reconcile.JOBS,
        *crm_events.JOBS,
        *inbox.JOBS,
        *outbox.JOBS,
        *credit.JOBS,
    )
    for job in jobs:
        registry.add(job)
    from connector.services import lifecycle, overview

    for job in (*overview.JOBS, *lifecycle.JOBS):
        registry.add(job)
    return registry


__all__ = ["Job", "JobRegistry", "default_registry"]
