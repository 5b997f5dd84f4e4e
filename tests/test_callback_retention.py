"""The callback log is kept CALLBACK_RETENTION_DAYS: receipts done with go,
a pending one stays whatever its age, and the submission's result is untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from moderation import tasks
from moderation.models import CallbackReceipt, ReceiptOutcome
from moderation.services import retention

pytestmark = pytest.mark.django_db


def receipt(days_ago: float, outcome: str = ReceiptOutcome.PROCESSED) -> CallbackReceipt:
    made = CallbackReceipt.objects.create(submission_ref="x", body="{}", outcome=outcome,
                                          authentic=outcome != ReceiptOutcome.REJECTED)
    CallbackReceipt.objects.filter(pk=made.pk).update(received_at=timezone.now() - timedelta(days=days_ago))
    return made


def left() -> set[int]:
    return set(CallbackReceipt.objects.values_list("pk", flat=True))


def test_receipts_past_the_retention_go_unless_still_pending(settings):
    settings.CALLBACK_RETENTION_DAYS = 30
    old = [receipt(31, outcome) for outcome in (ReceiptOutcome.PROCESSED, ReceiptOutcome.DUPLICATE,
                                                ReceiptOutcome.REJECTED, ReceiptOutcome.ERROR)]
    waiting = receipt(31, ReceiptOutcome.PENDING)
    recent = receipt(29)
    assert retention.prune_callback_receipts() == len(old)
    assert left() == {waiting.pk, recent.pk}


def test_a_large_log_is_deleted_in_batches_until_none_is_left(settings):
    settings.CALLBACK_RETENTION_DAYS = 30
    for _ in range(7):
        receipt(40, ReceiptOutcome.REJECTED)
    keep = receipt(1)
    assert retention.prune_callback_receipts(batch=3) == 7
    assert left() == {keep.pk}


def test_an_hourly_schedule_runs_it(settings):
    schedule = Schedule.objects.get(name="hiveportal-callback-receipts-prune")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "moderation.tasks.prune_callback_receipts", Schedule.HOURLY, -1)
    settings.CALLBACK_RETENTION_DAYS = 30
    receipt(31)
    assert tasks.prune_callback_receipts() == 1 and left() == set()
