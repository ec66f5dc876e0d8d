"""Periodic jobs and the worker's dispatch tables: the layer above the services that says
what runs when (``schedule.py``) and which service function handles what (``dispatch.py``)."""

from __future__ import annotations

from connector.jobs.registry import Job, JobRegistry
from connector.jobs.schedule import JOBS


def default_registry() -> JobRegistry:
    """Every job dealbridge runs."""
    return JobRegistry(JOBS)


__all__ = ["Job", "JobRegistry", "default_registry"]
