"""The audit trail: one row per decision or effect a person may later ask about."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from connector.store.models import AuditEntry

__all__ = ["AuditEntry", "record"]


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    **details: Any,
) -> AuditEntry:
    entry = AuditEntry(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )
    session.add(entry)
    return entry
