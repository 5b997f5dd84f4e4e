"""Stored Idempotency-Key answers are kept IDEMPOTENCY_RETENTION_HOURS, then
deleted hourly (what a late repeat gets then: tests/test_api_submissions.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from moderation import tasks
from moderation.models import IdempotencyRecord
from moderation.services import retention

pytestmark = pytest.mark.django_db


def record(partner, key: str, hours_ago: float, answered: bool = True) -> IdempotencyRecord:
    made = IdempotencyRecord.objects.create(partner=partner, key=key, fingerprint="f" * 64,
                                            response_status=202 if answered else None,
                                            response_body={"id": key} if answered else None)
    IdempotencyRecord.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))
    return made


def left() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("key", flat=True))


def test_answers_past_the_retention_go_and_so_does_a_request_that_died_in_flight(settings, partner):
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    record(partner, "old", 25)
    record(partner, "died", 25, answered=False)
    record(partner, "recent", 23)
    record(partner, "running", 0, answered=False)
    assert retention.prune_idempotency_records() == 2
    assert left() == {"recent", "running"}


def test_many_are_deleted_in_batches_until_none_is_left(settings, partner):
    settings.IDEMPOTENCY_RETENTION_HOURS = 1
    for n in range(7):
        record(partner, f"k{n}", 2)
    assert retention.prune_idempotency_records(batch=3) == 7
    assert left() == set()


def test_an_hourly_schedule_runs_it(settings, partner):
    schedule = Schedule.objects.get(name="hiveportal-idempotency-prune")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "moderation.tasks.prune_idempotency_records", Schedule.HOURLY, -1)
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    record(partner, "old", 48)
    assert tasks.prune_idempotency_records() == 1 and left() == set()
