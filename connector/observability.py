"""Prometheus metrics: counters kept in process, queue depths read from the store on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from connector.store.models import InboxEvent, OutboxMessage

if TYPE_CHECKING:
    from connector.store.db import Database


class QueueDepthCollector(Collector):
    """Inbox and outbox rows by status, so an alert can fire on a growing backlog."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inbox = GaugeMetricFamily(
            "dealbridge_inbox_events",
            "Inbound events by source and status",
            labels=["source", "status"],
        )
        outbox = GaugeMetricFamily(
            "dealbridge_outbox_messages",
            "Outbound writes by kind and status",
            labels=["kind", "status"],
        )
        spooled = GaugeMetricFamily(
            "dealbridge_intake_spooled_events",
            "Events the web process received and the worker has not moved into the inbox yet "
            "(SQLite's intake spool; 0 on PostgreSQL)",
        )
        try:
            db = self._db()
            with db.reading() as session:
                for source, status, count in session.execute(
                    select(InboxEvent.source, InboxEvent.status, func.count()).group_by(
                        InboxEvent.source, InboxEvent.status
                    )
                ):
                    inbox.add_metric([source, status], count)
                for kind, status, count in session.execute(
                    select(OutboxMessage.kind, OutboxMessage.status, func.count()).group_by(
                        OutboxMessage.kind, OutboxMessage.status
                    )
                ):
                    outbox.add_metric([kind, status], count)
                spool = db.intake_spool
                spooled.add_metric([], spool.waiting(session) if spool is not None else 0)
        except Exception:
            return
        yield inbox
        yield outbox
        yield spooled


class Metrics:
    """One registry per runtime, so tests (and several apps in one process) don't collide."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "dealbridge_http_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "dealbridge_webhooks",
            "Webhook deliveries by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.job_runs = Counter(
            "dealbridge_job_runs",
            "Job runs by job and outcome",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.outbox_sent = Counter(
            "dealbridge_outbox_deliveries",
            "Outbox delivery attempts by kind and outcome (done, retry, parked)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "dealbridge_events_processed",
            "Inbound events processed by source, type and outcome",
            ["source", "type", "outcome"],
            registry=self.registry,
        )
        self.registry.register(QueueDepthCollector(db))

    def count_unknown_customer(self, source: str, event_type: str) -> None:
        """An event about a customer no CRM account is linked to: ignored, but counted."""
        self.events.labels(source=source, type=event_type, outcome="unknown_customer").inc()
