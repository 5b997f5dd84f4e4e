"""The one way to write the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from moderation.models import Actor, AuditEvent


def record(action: str, **fields: Any) -> AuditEvent:
    """Write one event now; `fields` as for `event_for`."""
    event = event_for(action, **fields)
    event.save(force_insert=True)
    return event


def record_many(*events: AuditEvent) -> list[AuditEvent]:
    """Several events of one step in one INSERT (the dispatch path writes two
    per completion); build each with `event_for`."""
    return AuditEvent.objects.bulk_create(events)


def event_for(
    action: str,
    *,
    actor: str = Actor.SYSTEM,
    submission=None,
    submission_id=None,
    project=None,
    project_id=None,
    user=None,
    partner=None,
    at: datetime | None = None,
    **data: Any,
) -> AuditEvent:
    if submission is not None:
        submission_id = submission.pk
        project_id = project_id or submission.project_id
    if project is not None:
        project_id = project.pk
    return AuditEvent(
        action=action,
        actor=actor,
        submission_id=submission_id,
        project_id=project_id,
        user=user if user is not None and user.is_authenticated else None,
        partner=partner,
        data=data,
        created_at=at or timezone.now(),
    )
