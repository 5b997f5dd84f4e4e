"""Idempotency-Key: the first response for (partner, key) is stored and
replayed; the same key with a different request, or while the first is still
in flight, is a conflict (as Stripe and pretix do)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from moderation.models import IdempotencyRecord, Partner, Submission

# A request that has not finished after this long died with its process.
IN_FLIGHT_EXPIRY = timedelta(minutes=5)


@dataclass
class Replay:
    """The stored response; or, when the first request died after storing its
    submission but before its answer was kept, that submission (`body` None)."""
    status: int
    body: dict | None
    submission: Submission | None = None


class KeyConflict(Exception):
    def __init__(self, message: str, *, in_flight: bool):
        super().__init__(message)
        self.in_flight = in_flight


def fingerprint(**request_parts) -> str:
    canonical = json.dumps(request_parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def begin(partner: Partner, key: str, digest: str) -> Replay | None:
    """Reserve the key, or return the stored response to replay. Raises KeyConflict."""
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(partner=partner, key=key, fingerprint=digest)
        return None
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
    if record is None:  # pruned since: reserve it again
        return begin(partner, key, digest)
    if record.fingerprint != digest:
        raise KeyConflict("This Idempotency-Key was used with a different request.", in_flight=False)
    if record.response_status is not None:
        return Replay(record.response_status, record.response_body)
    if timezone.now() - record.created_at < IN_FLIGHT_EXPIRY:
        raise KeyConflict("A request with this Idempotency-Key is still being processed.", in_flight=True)
    # The first attempt died mid-way. If its submission was stored, that is the
    # answer (a second one would break the key's uniqueness); if not, this one
    # takes the key over.
    stored = Submission.objects.filter(partner=partner, idempotency_key=key).first()
    if stored is not None:
        return Replay(202, None, stored)
    IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).update(created_at=timezone.now())
    return None


def kept_by_submission(partner: Partner, key: str, digest: str) -> Submission | None:
    """The submission that holds `key` although its record is gone (pruned after
    IDEMPOTENCY_RETENTION_HOURS; the submission keeps its key for good): the
    same request gets it back, another is a conflict. None if none holds it."""
    stored = (Submission.objects.filter(partner=partner, idempotency_key=key)
              .only("pk", "created_at", "idempotency_fingerprint").first())
    if stored is None:
        return None
    # Compared as asked, not rebuilt from the row: mirroring replaces a URL's
    # digest with the file's, and PostgreSQL gives some JSON numbers back changed.
    if stored.idempotency_fingerprint != digest:
        raise KeyConflict(f"This Idempotency-Key was used with a different request "
                          f"(submission {stored.pk}, {stored.created_at:%Y-%m-%d}).", in_flight=False)
    return stored


def complete(partner: Partner, key: str, status: int, body: dict) -> None:
    IdempotencyRecord.objects.filter(partner=partner, key=key).update(response_status=status, response_body=body)


def abandon(partner: Partner, key: str) -> None:
    """The request was refused: the key is free for a corrected retry."""
    IdempotencyRecord.objects.filter(partner=partner, key=key, response_status__isnull=True).delete()
