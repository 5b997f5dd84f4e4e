"""How long partner webhook history, Hive's callback receipts and stored
Idempotency-Key answers are kept.

Every event a partner subscribes to leaves an event row (its body), one message
per endpoint and one row per delivery attempt: millions a month on a busy
platform, read only while recent (the admin's message log, a partner asking
"did you send it?"). An hourly schedule (migration 0009) deletes what is older
than WEBHOOK_RETENTION_DAYS and has nothing left to deliver, in small batches so
no statement holds its locks for long.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from moderation.models import (
    CallbackReceipt,
    IdempotencyRecord,
    MessageStatus,
    ReceiptOutcome,
    WebhookDelivery,
    WebhookEvent,
    WebhookMessage,
)

PRUNE_BATCH = 500


def prune_webhooks(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete webhook events older than the retention, with their messages and
    delivery attempts, unless a message is still to be delivered or the event
    is not fanned out yet. Returns how many events went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    unfinished = WebhookMessage.objects.filter(event=OuterRef("pk"), status=MessageStatus.PENDING)
    expired = (WebhookEvent.objects.filter(created_at__lt=cutoff, fanned_out_at__isnull=False)
               .exclude(Exists(unfinished)).order_by("created_at"))
    return _delete_in_batches(expired, _delete_events, batch)


def _delete_events(ids: list) -> None:
    with transaction.atomic():
        # Children first: each delete is then one statement, not a collection.
        WebhookDelivery.objects.filter(message__event_id__in=ids).delete()
        WebhookMessage.objects.filter(event_id__in=ids).delete()
        WebhookEvent.objects.filter(pk__in=ids).delete()


def prune_callback_receipts(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete callback receipts older than CALLBACK_RETENTION_DAYS that are done
    with (processed, duplicate, refused, in error; never one still pending). A
    receipt's result lives on in its Result (raw body included); a refused one
    is a stranger's 4 KB, and anyone can send those. Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CALLBACK_RETENTION_DAYS)
    expired = (CallbackReceipt.objects.filter(received_at__lt=cutoff)
               .exclude(outcome=ReceiptOutcome.PENDING).order_by("received_at"))
    return _delete_in_batches(expired, lambda ids: CallbackReceipt.objects.filter(pk__in=ids).delete(), batch)


def prune_idempotency_records(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete Idempotency-Key records older than IDEMPOTENCY_RETENTION_HOURS: each
    holds a whole 202 body, one per keyed submission. One still in flight that old
    died with its process. The submission keeps its key (services/idempotency.py
    answers a late repeat from it). Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    expired = IdempotencyRecord.objects.filter(created_at__lt=cutoff).order_by("created_at")
    return _delete_in_batches(expired, lambda ids: IdempotencyRecord.objects.filter(pk__in=ids).delete(), batch)


def _delete_in_batches(expired: QuerySet, delete: Callable[[list], object], batch: int) -> int:
    """`delete` the rows of `expired` `batch` ids at a time, so no statement holds
    its locks for long; how many went."""
    pruned = 0
    while ids := list(expired.values_list("pk", flat=True)[:batch]):
        delete(ids)
        pruned += len(ids)
        if len(ids) < batch:
            break
    return pruned
