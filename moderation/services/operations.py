"""What an operator can do from the admin, as plain functions.

Each function changes rows by conditional UPDATE (a row that moved on in the
meantime is skipped, never clobbered) and writes one AuditEvent per thing it
changed, with actor "operator" and the operator's user. The admin only picks
rows and shows the outcome; tests and scripts call these directly.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from moderation.hive.client import Content, HiveClient
from moderation.hive.errors import HiveError
from moderation.models import (
    Actor,
    ApiKey,
    CallbackReceipt,
    Decision,
    DecisionSource,
    Partner,
    Project,
    ReceiptOutcome,
    Status,
    Submission,
)
from moderation.services import audit, callbacks, dispatch, keys

# Rows are read in primary-key batches so an action over a large selection
# never holds it all in memory and never revisits a row it just changed.
BATCH = 500


@dataclass
class Outcome:
    """What a bulk action did: the rows it changed and the rows it left alone
    because they were not in a state the action applies to."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _pks(selection: QuerySet | Iterable) -> Iterator:
    """Primary keys of `selection` (a queryset or an iterable of pks or rows),
    batch by batch in key order."""
    if not isinstance(selection, QuerySet):
        for item in selection:
            yield getattr(item, "pk", item)
        return
    selection = selection.order_by("pk").values_list("pk", flat=True)
    last = None
    while True:
        batch = list((selection.filter(pk__gt=last) if last is not None else selection)[:BATCH])
        yield from batch
        if len(batch) < BATCH:
            return
        last = batch[-1]


def _act(selection, allowed: Q, changes: dict, action: str, user, enqueue: bool = False) -> Outcome:
    """Apply `changes` to each selected row that matches `allowed`, one
    conditional UPDATE per row, so each change gets its own audit event."""
    outcome = Outcome()
    for pk in _pks(selection):
        with transaction.atomic():
            row = Submission.objects.filter(pk=pk).values("status", "decision", "project_id").first()
            moved = row is not None and Submission.objects.filter(allowed, pk=pk).update(**changes)
            if not moved:
                outcome.skipped.append(str(pk))
                continue
            audit.record(action, actor=Actor.OPERATOR, submission_id=pk, project_id=row["project_id"], user=user,
                         previous_status=row["status"], previous_decision=row["decision"])
            if enqueue:
                dispatch.enqueue(pk)
        outcome.done.append(str(pk))
    return outcome


def _back_to_queue() -> dict:
    """A fresh start: the dispatcher claims it as if it had just arrived."""
    return dict(status=Status.QUEUED, attempts=0, next_attempt_at=None, lease_until=None, hive_task_id=None,
                error="", error_code="", callback_overdue_at=None, completed_at=None)


def retry_failed(selection, *, user=None) -> Outcome:
    """Put failed submissions back in the queue with a full set of attempts."""
    return _act(selection, Q(status=Status.FAILED), _back_to_queue(), "operator.retry", user, enqueue=True)


def redispatch(selection, *, user=None) -> Outcome:
    """Send submissions to Hive again: those still queued, waiting for a
    callback that may never come, failed, or held by a worker whose lease ran
    out. A late callback from the earlier Hive task still completes the row
    once; the later one is then a duplicate (results are recorded once)."""
    allowed = (Q(status__in=[Status.QUEUED, Status.AWAITING_CALLBACK, Status.FAILED])
               | dispatch.abandoned(timezone.now()))
    return _act(selection, allowed, _back_to_queue(), "operator.redispatch", user, enqueue=True)


def send_to_review(selection, *, user=None) -> Outcome:
    """Put decided submissions in front of a moderator again."""
    allowed = Q(status=Status.COMPLETED) & (Q(decision__in=[Decision.APPROVED, Decision.REJECTED])
                                            | Q(decision__isnull=True))
    changes = dict(decision=Decision.PENDING, decision_source=DecisionSource.OPERATOR, decided_by=None,
                   decided_at=None, claimed_by=None, claimed_until=None)
    return _act(selection, allowed, changes, "operator.sent_to_review", user)


def overdue_callbacks(now: datetime | None = None) -> QuerySet:
    """Async submissions whose callback never came: flagged by the sweep, or
    dispatched longer ago than their project's callback deadline (so the
    list is right even when the sweep has not run)."""
    now = now or timezone.now()
    late = Q(callback_overdue_at__isnull=False)
    for project_id, minutes in Project.objects.values_list("pk", "callback_deadline_minutes"):
        late |= Q(project_id=project_id, dispatched_at__lt=now - timedelta(minutes=minutes))
    return Submission.objects.filter(late, status=Status.AWAITING_CALLBACK)


# --- Callback receipts ---------------------------------------------------------

REPLAYABLE = (ReceiptOutcome.PENDING, ReceiptOutcome.ERROR)


@dataclass(frozen=True)
class Replay:
    receipt_id: int
    replayed: bool
    outcome: str  # the receipt's outcome afterwards
    detail: str


def replay_receipt(receipt_id: int, *, user=None) -> Replay:
    """Process a stored callback again, e.g. after a bug was fixed.

    Only an authentic receipt that matched a submission and did not already
    produce (or duplicate) a result is replayed: processing is idempotent, so
    a replay can at most record the result that was missing, never a second
    one. Receipts that were processed keep their outcome as history."""
    receipt = CallbackReceipt.objects.filter(pk=receipt_id).first()
    if receipt is None:
        return Replay(receipt_id, False, "", "no such receipt")
    if not receipt.authentic or receipt.submission_id is None:
        return _replay_refused(receipt, user, "not authentic: an unauthenticated body is never processed")
    if receipt.outcome not in REPLAYABLE:
        return _replay_refused(receipt, user, f"already {receipt.outcome}: replaying would change nothing")
    CallbackReceipt.objects.filter(pk=receipt.pk, outcome__in=REPLAYABLE).update(
        outcome=ReceiptOutcome.PENDING, processed_at=None)
    callbacks.process(receipt.pk)
    receipt.refresh_from_db()
    audit.record("operator.callback_replayed", actor=Actor.OPERATOR, submission_id=receipt.submission_id,
                 project_id=_project_of(receipt.submission_id), user=user, receipt_id=receipt.pk,
                 outcome=receipt.outcome, detail=receipt.outcome_detail[:200])
    return Replay(receipt.pk, True, receipt.outcome, receipt.outcome_detail)


def _replay_refused(receipt: CallbackReceipt, user, reason: str) -> Replay:
    audit.record("operator.callback_replay_refused", actor=Actor.OPERATOR, submission_id=receipt.submission_id,
                 project_id=_project_of(receipt.submission_id), user=user, receipt_id=receipt.pk, reason=reason)
    return Replay(receipt.pk, False, receipt.outcome, reason)


def _project_of(submission_id) -> int | None:
    if submission_id is None:
        return None
    return Submission.objects.filter(pk=submission_id).values_list("project_id", flat=True).first()


# --- Projects -------------------------------------------------------------------

# The smallest valid media per kind of endpoint: a 1x1 PNG, a short text, a
# WAV file of a few silent samples.
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


TINY_PNG = (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
            + _png_chunk(b"IEND", b""))
TINY_TEXT = "Hello from the Hive Portal connection test."


def tiny_wav(samples: int = 800, rate: int = 8000) -> bytes:
    data = b"\x00\x00" * samples
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1, rate,
                         rate * 2, 2, 16, b"data", len(data))
    return header + data


def tiny_content(endpoint_type: str) -> Content:
    if endpoint_type == "text":
        return Content(text_data=TINY_TEXT)
    if endpoint_type == "speech":
        return Content(media=io.BytesIO(tiny_wav()), media_name="test.wav", media_content_type="audio/wav")
    return Content(media=io.BytesIO(TINY_PNG), media_name="test.png", media_content_type="image/png")


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str
    status_code: int | None = None
    elapsed_ms: int | None = None


def test_connection(project: Project, *, user=None, client: HiveClient | None = None) -> ConnectionCheck:
    """Call Hive once with a tiny piece of content and say what happened.

    Always the sync endpoint: an async call would make Hive call back for a
    submission that does not exist, and for a manual-review project would
    create real review work. A manual-review project's key is proven good
    when Hive refuses the sync call for its mode (400) rather than the key."""
    if not project.hive_api_key:
        check = ConnectionCheck(False, "No Hive API key is set for this project.")
        return _record_check(project, user, check)
    client = client or HiveClient(api_key=project.hive_api_key)
    started = time.monotonic()
    try:
        client.submit_sync(tiny_content(project.endpoint_type), metadata=f"connection-test:{project.slug}")
    except HiveError as error:
        elapsed = round((time.monotonic() - started) * 1000)
        check = _check_from_error(project, error, elapsed)
    else:
        elapsed = round((time.monotonic() - started) * 1000)
        check = ConnectionCheck(True, f"Hive answered a test task in {elapsed} ms: the key works.", 200, elapsed)
    return _record_check(project, user, check)


def _check_from_error(project: Project, error: HiveError, elapsed: int) -> ConnectionCheck:
    message = _without_key(error.message, project.hive_api_key)
    if error.status_code == 400 and project.uses_manual_review:
        # Hive checks the key first (a bad one is a 401/403), so a 400 proves it.
        return ConnectionCheck(True, "The key works. A manual-review project is async only, and this test makes "
                                     "a sync call (an async one would create real review work), so Hive refused "
                                     "the test task itself (HTTP 400), as expected.", 400, elapsed)
    if error.status_code in (401, 403):
        return ConnectionCheck(False, f"Hive refused the API key: {message}", error.status_code, elapsed)
    if error.status_code == 405:
        return ConnectionCheck(False, f"Hive reports insufficient balance: {message}", 405, elapsed)
    return ConnectionCheck(False, f"The test call failed: {message}", error.status_code, elapsed)


def _without_key(text: str, key: str) -> str:
    """Hive's own words, minus the key should they ever echo it."""
    return text.replace(key, "[key]") if key else text


def _record_check(project: Project, user, check: ConnectionCheck) -> ConnectionCheck:
    audit.record("operator.connection_tested", actor=Actor.OPERATOR, project=project, user=user, ok=check.ok,
                 status_code=check.status_code, elapsed_ms=check.elapsed_ms, message=check.message[:500])
    return check


def hive_key_set(project: Project, *, user=None) -> None:
    """Audit a new or replaced Hive key: its hint, never the key."""
    audit.record("operator.hive_key_set", actor=Actor.OPERATOR, project=project, user=user,
                 hint=project.hive_key_hint)


# --- Partner keys ---------------------------------------------------------------

def issue_partner_key(partner: Partner, name: str = "", *, prefix: str | None = None, user=None) -> keys.IssuedKey:
    """A new key; the caller shows `plaintext` once, it is stored nowhere.
    Raises keys.PrefixTaken when `prefix` (chosen by the issue form) was used."""
    issued = keys.issue_key(partner, name, prefix)
    audit.record("operator.api_key_issued", actor=Actor.OPERATOR, partner=partner, user=user,
                 prefix=issued.api_key.prefix, name=name)
    return issued


def revoke_partner_key(key: ApiKey, *, user=None) -> bool:
    """Revoke a key; False when it already was."""
    if key.revoked_at is not None:
        return False
    keys.revoke_key(key)
    key.refresh_from_db(fields=["revoked_at"])
    audit.record("operator.api_key_revoked", actor=Actor.OPERATOR, partner=key.partner, user=user,
                 prefix=key.prefix)
    return True


# --- Export ---------------------------------------------------------------------

# New columns go at the end, so scripts that read columns by position keep working.
EXPORT_COLUMNS = (
    "id", "project", "partner", "external_id", "source", "media_kind", "size_bytes", "status", "decision",
    "decision_source", "top_class", "top_score", "hive_task_id", "attempts", "error", "created_at",
    "completed_at", "decided_by", "decided_at", "decision_reason",
)
_EXPORT_FIELDS = (
    "id", "project__slug", "partner__name", "external_id", "source", "media_kind", "size_bytes", "status",
    "decision", "decision_source", "top_class", "top_score", "hive_task_id", "attempts", "error", "created_at",
    "completed_at", "decided_by__username", "decided_at", "decision_reason",
)
# Scores to 4 places: further digits are noise to whoever reads the sheet.
SCORE_PLACES = 4
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_rows(selection: QuerySet, *, user=None, description: str = "") -> Iterator[list[str]]:
    """Header, then one row per submission, read in batches: exporting a
    million rows never holds them in memory. Audited when the export starts."""
    audit.record("operator.exported_submissions", actor=Actor.OPERATOR, user=user, selection=description[:500])
    return _export_iter(selection)


def _export_iter(selection: QuerySet) -> Iterator[list[str]]:
    yield list(EXPORT_COLUMNS)
    rows = selection.order_by("pk").values_list(*_EXPORT_FIELDS)
    last = None
    while True:
        batch = list((rows.filter(pk__gt=last) if last is not None else rows)[:BATCH])
        for row in batch:
            yield [_cell(value) for value in row]
        if len(batch) < BATCH:
            return
        last = batch[-1][0]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return str(round(value, SCORE_PLACES))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return str(value)
