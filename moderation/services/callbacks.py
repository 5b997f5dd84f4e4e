"""Hive's async callbacks: authenticate, store the receipt first, process later.

Hive does not sign callbacks, so each submission gets an unguessable URL: the
token is an HMAC of the submission id under the server secret.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django_q.tasks import async_task

from hiveportal.logging import bind as log_fields
from moderation import metrics
from moderation.hive.errors import HiveError
from moderation.models import Actor, CallbackReceipt, ReceiptOutcome, ResultSource, Status, Submission
from moderation.services import audit
from moderation.services.results import Recorded, normalise_for, record_result

logger = logging.getLogger("moderation.pipeline")

_SALT = "hiveportal.hive-callback"
# Headers worth keeping with a receipt (never cookies or auth).
_KEPT_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR")
# What a refused receipt keeps of its body: enough for an operator to see what
# was sent, not a way for anyone with no token to fill the database.
REFUSED_BODY_KEPT = 4096


def token_for(submission_id) -> str:
    return salted_hmac(_SALT, str(submission_id), algorithm="sha256").hexdigest()


def token_valid(submission_ref: str, token: str) -> bool:
    """Whether the URL is one we issued (constant time), under the current secret
    key or one it replaced: Hive calls back URLs issued before a rotation."""
    return any(constant_time_compare(token, salted_hmac(_SALT, str(submission_ref), secret=key,
                                                        algorithm="sha256").hexdigest())
               for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))


def callback_url(submission_id) -> str:
    path = reverse("hive-callback", args=[str(submission_id), token_for(submission_id)])
    return f"{settings.PORTAL_BASE_URL}{path}"


class Refused(Exception):
    """Not authentic: answered 403, nothing changed but the receipt log."""


@metrics.callback_received
def receive(submission_ref: str, token: str, body: bytes, meta: dict) -> CallbackReceipt:
    """Store the receipt, check it, enqueue processing. Raises Refused."""
    text = body.decode("utf-8", errors="replace")
    receipt = CallbackReceipt(
        submission_ref=submission_ref[:64],
        body=text,
        headers={k: str(meta[k])[:500] for k in _KEPT_HEADERS if k in meta},
        remote_addr=meta.get("REMOTE_ADDR") or None,
    )
    body_json = _parsed(text)
    problem = _authenticate(submission_ref, token, body_json)
    receipt.authentic = problem is None
    if problem:
        receipt.body = text[:REFUSED_BODY_KEPT]
        receipt.submission_id = _existing(submission_ref) if problem != BAD_TOKEN else None
        receipt.outcome = ReceiptOutcome.REJECTED
        receipt.outcome_detail = problem
        receipt.processed_at = timezone.now()
        receipt.save()
        logger.warning("callback refused", extra={"submission_ref": submission_ref[:64], "reason": problem})
        raise Refused(problem)
    # No lookup on the way in: the token proves we issued this id, and the
    # worker links the receipt to its submission (or finds it was deleted).
    receipt.hive_task_id = str(body_json.get("id", ""))[:100]
    receipt.save()  # committed (autocommit) before the task that reads it is enqueued
    transaction.on_commit(lambda: _enqueue_processing(receipt.pk))
    return receipt


def _enqueue_processing(receipt_id: int) -> None:
    try:
        async_task("moderation.tasks.process_callback", receipt_id)
    except Exception:  # noqa: BLE001 - any broker failure
        # The receipt is stored, so Hive gets its 200 (a 500 would only make it send
        # the result again); the sweep queues receipts left pending.
        logger.exception("callback processing not queued; the sweep will queue it",
                         extra={"receipt_id": receipt_id})


BAD_TOKEN = "bad token"


def _authenticate(submission_ref: str, token: str, body: dict) -> str | None:
    """Why the callback is not authentic, or None. Only the URL's token (an
    HMAC of the id under our secret) and the body's own naming of the id."""
    if not token_valid(submission_ref, token):
        return BAD_TOKEN
    try:
        submission_id = uuid.UUID(submission_ref)
    except ValueError:
        return "no such submission"
    if not body:
        return "body is not a JSON result object"
    metadata = body.get("metadata")
    if metadata not in (None, "") and str(metadata) != str(submission_id):
        return f"metadata {str(metadata)[:64]!r} does not name this submission"
    return None


def _existing(submission_ref: str):
    try:
        return Submission.objects.filter(pk=uuid.UUID(submission_ref)).values_list("pk", flat=True).first()
    except ValueError:
        return None


def _parsed(text: str) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


@metrics.callback_processing
def process(receipt_id: int) -> None:
    """Turn a stored, authentic receipt into a result; idempotent.

    One worker at a time: the claim stamps `processed_at`, and another delivery of
    the same task (a redelivery, the sweep's) finds it taken, unless the stamp is
    older than CALLBACK_STALL_SECONDS, when the sweep deems that worker dead."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CALLBACK_STALL_SECONDS)
    claimed = CallbackReceipt.objects.filter(
        Q(processed_at__isnull=True) | Q(processed_at__lt=stale), pk=receipt_id, outcome=ReceiptOutcome.PENDING,
    ).update(processed_at=now)
    if not claimed:
        return
    receipt = CallbackReceipt.objects.get(pk=receipt_id)
    submission = Submission.objects.select_related("project").filter(
        pk=receipt.submission_id or receipt.submission_ref).first()
    if submission is None:  # deleted since Hive was called
        _finish(receipt, ReceiptOutcome.REJECTED, "no such submission", authentic=False)
        return
    receipt.submission_id = submission.pk  # linked by _finish
    log_fields(submission_id=submission.pk, project=submission.project.slug, hive_task_id=receipt.hive_task_id)
    result = _parsed(receipt.body)
    try:
        normalised = normalise_for(submission.project, result)
    except HiveError as error:
        if submission.status == Status.PROCESSING:
            # Hive's failure overtook our storing of its ack. Left pending, the
            # receipt is queued again by the sweep after CALLBACK_STALL_SECONDS,
            # when the row says which task it waits for.
            logger.info("task failure before its ack was stored; processed later")
            return
        if receipt.hive_task_id and submission.hive_task_id not in ("", receipt.hive_task_id):
            _finish(receipt, ReceiptOutcome.ERROR, f"{error} (from task {receipt.hive_task_id}, an earlier one: "
                                                   f"the submission waits for {submission.hive_task_id})")
            return
        _finish(receipt, ReceiptOutcome.ERROR, str(error))
        _task_failed(submission, error)
        return
    outcome = record_result(submission.pk, raw=receipt.body, result=result, normalised=normalised,
                            source=ResultSource.CALLBACK, received_at=receipt.received_at)
    if outcome is Recorded.DUPLICATE:
        _finish(receipt, ReceiptOutcome.DUPLICATE, "a result with this content was already recorded", duplicate=True)
    else:
        _finish(receipt, ReceiptOutcome.PROCESSED, outcome.value)


def _finish(receipt: CallbackReceipt, outcome: str, detail: str, **fields) -> None:
    CallbackReceipt.objects.filter(pk=receipt.pk).update(
        outcome=outcome, outcome_detail=detail[:2000], processed_at=timezone.now(),
        submission_id=receipt.submission_id, **fields,
    )


def _task_failed(submission: Submission, error: HiveError) -> None:
    """A callback saying the task failed: retry what can be retried."""
    from moderation.services import dispatch

    audit.record("hive.task_failed", actor=Actor.HIVE, submission=submission, error=error.message[:500],
                 codes=list(error.error_codes))
    if submission.results.exists():
        return  # a result already won; a failed duplicate task changes nothing
    # Processing again, under a lease like a claim's: handling the error may fetch
    # the URL (mirroring), and if this worker dies meanwhile the sweep takes it back.
    lease_until = timezone.now() + timedelta(seconds=dispatch.lease_seconds())
    moved = Submission.objects.filter(pk=submission.pk, status=Status.AWAITING_CALLBACK).update(
        status=Status.PROCESSING, lease_until=lease_until)
    if moved:
        submission.refresh_from_db()
        with dispatch.lease_kept(submission):
            dispatch.handle_error(submission, error)
