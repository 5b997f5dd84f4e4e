"""Partner webhook history is kept WEBHOOK_RETENTION_DAYS, then pruned hourly:
never an event with a message still to deliver, never one not fanned out yet."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from moderation import tasks
from moderation.models import MessageStatus, Submission, WebhookDelivery, WebhookEvent, WebhookMessage
from moderation.services import notify, retention, webhooks

DAY = timedelta(days=1)


@pytest.fixture
def endpoints(partner):
    return [webhooks.create_endpoint(partner, f"https://hooks.example.com/{i}", list(notify.EVENTS))
            for i in range(2)]


@pytest.fixture
def submission(make_project, partner) -> Submission:
    project = make_project("pics")
    return Submission.objects.create(project=project, partner=partner, source="url",
                                     url="https://cdn.example.com/a.jpg")


@pytest.fixture
def event(submission, endpoints):
    def make(age: timedelta, statuses: list[str], fanned_out: bool = True) -> WebhookEvent:
        """An event created `age` ago with a message per status (endpoint i gets
        statuses[i]), each after two delivery attempts."""
        n = WebhookEvent.objects.count()
        created = timezone.now() - age
        row = WebhookEvent.objects.create(id=f"evt_r{n}", submission=submission, event_type=notify.COMPLETED,
                                          body=json.dumps({"n": n}))
        WebhookEvent.objects.filter(pk=row.pk).update(created_at=created,
                                                      fanned_out_at=created if fanned_out else None)
        for i, status in enumerate(statuses):
            message = WebhookMessage.objects.create(id=f"msg_r{n}_{i}", event=row, endpoint=endpoints[i],
                                                    submission=submission, event_type=notify.COMPLETED,
                                                    status=status)
            for ok in (False, status == MessageStatus.DELIVERED):
                WebhookDelivery.objects.create(message=message, status_code=200 if ok else 503, success=ok)
        return row

    return make


def left() -> set[str]:
    return set(WebhookEvent.objects.values_list("pk", flat=True))


def test_history_past_the_retention_goes_with_its_messages_and_attempts(event, submission, settings):
    settings.WEBHOOK_RETENTION_DAYS = 30
    delivered = event(31 * DAY, [MessageStatus.DELIVERED, MessageStatus.DELIVERED])
    gave_up = event(45 * DAY, [MessageStatus.FAILED, MessageStatus.DELIVERED])
    recent = event(29 * DAY, [MessageStatus.DELIVERED])

    assert retention.prune_webhooks() == 2

    assert left() == {recent.pk}
    assert set(WebhookMessage.objects.values_list("event_id", flat=True)) == {recent.pk}
    assert WebhookDelivery.objects.count() == 2 and not WebhookDelivery.objects.exclude(message__event=recent).exists()
    assert Submission.objects.filter(pk=submission.pk).exists()
    assert {delivered.pk, gave_up.pk}.isdisjoint(left())


def test_an_event_still_being_delivered_or_not_fanned_out_is_kept_whatever_its_age(event, settings):
    settings.WEBHOOK_RETENTION_DAYS = 30
    retrying = event(40 * DAY, [MessageStatus.DELIVERED, MessageStatus.PENDING])
    waiting = event(40 * DAY, [], fanned_out=False)

    assert retention.prune_webhooks() == 0
    assert left() == {retrying.pk, waiting.pk}
    assert WebhookMessage.objects.filter(event=retrying).count() == 2


def test_the_retention_is_a_setting(event, settings):
    old = event(8 * DAY, [MessageStatus.DELIVERED])
    settings.WEBHOOK_RETENTION_DAYS = 10
    assert retention.prune_webhooks() == 0
    settings.WEBHOOK_RETENTION_DAYS = 7
    assert retention.prune_webhooks() == 1
    assert old.pk not in left()


def test_a_large_backlog_is_deleted_in_batches_until_none_is_left(event, settings):
    settings.WEBHOOK_RETENTION_DAYS = 30
    for _ in range(7):
        event(60 * DAY, [MessageStatus.DELIVERED])
    keep = event(DAY, [MessageStatus.DELIVERED])
    assert retention.prune_webhooks(batch=3) == 7
    assert left() == {keep.pk}


def test_an_hourly_schedule_runs_the_pruning(event, settings):
    schedule = Schedule.objects.get(name="hiveportal-webhooks-prune")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == ("moderation.tasks.prune_webhooks",
                                                                        Schedule.HOURLY, -1)
    settings.WEBHOOK_RETENTION_DAYS = 30
    event(31 * DAY, [MessageStatus.DELIVERED])
    assert tasks.prune_webhooks() == 1 and left() == set()
