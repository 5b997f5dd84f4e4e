"""Dispatching submissions to Hive, from the queue only.

How work flows (see docs/ARCHITECTURE.md "Dispatch"):
- Each accepted submission enqueues `dispatch_submission(id)` on commit.
- A task claims its row by conditional UPDATE, and only while the project has
  a free in-flight slot (Hive rate-limits per project). A redelivered or
  surplus task claims nothing and ends: a no-op.
- The task that holds a slot keeps it busy: after each call it claims the
  project's next due item ("pump"), so a batch keeps `limit` calls in flight
  (throughput = limit ÷ latency) without a task per slot waiting in a loop.
- Transient errors put the row back to `queued` with `next_attempt_at` (our
  own exponential backoff with jitter; django-q2's redelivery is not one).
  Service-level errors (429, 5xx, network) also open the project's circuit:
  nobody calls Hive for that project until `hive_paused_until`, and then only
  one probe call until one succeeds.
- The scheduled sweep (services/sweep.py) takes back what a dead worker left
  in `processing` and wakes projects whose backoff has passed.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.conf import settings
from django.db import Error as DatabaseErrors
from django.db import IntegrityError, connections, transaction
from django.db.models import Count, F, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from moderation import metrics
from moderation.hive.client import Content, HiveClient
from moderation.hive.errors import HiveError
from moderation.models import Actor, ContentSource, Delivery, Project, ResultSource, Status, Submission, UrlMirror
from moderation.ops import shutdown
from moderation.services import audit, callbacks, notify
from moderation.services.mirror import MirrorError, mirror_url
from moderation.services.results import Recorded, normalise_for, record_result

logger = logging.getLogger("moderation.pipeline")

# A pump hands its slot on after this long so no task nears django-q2's timeout.
PUMP_BUDGET_SECONDS = 60.0
# A pump waits for work due this soon instead of ending and leaving it to the sweep.
PUMP_MAX_WAIT_SECONDS = 5.0
# The pump whose call opened the project's circuit waits this long to make the
# probe call itself; other pumps end at once, so an outage ties up one worker.
PROBE_MAX_WAIT_SECONDS = 30.0
ITEM_BACKOFF_BASE = 2.0
ITEM_BACKOFF_CAP = 600.0
PROJECT_BACKOFF_BASE = 2.0
# Short enough that the sweep notices a recovered Hive within about a minute.
PROJECT_BACKOFF_CAP = 60.0
# Download errors retried this many times before a mirror-enabled project
# fetches the URL itself and sends the bytes.
DOWNLOAD_RETRIES_BEFORE_MIRROR = 2
# A failed probe's item is due this long after the pause ends (see handle_error).
PROBE_ROTATION_SECONDS = 1.0


def max_attempts() -> int:
    return settings.HIVE_MAX_ATTEMPTS


def lease_seconds() -> float:
    """How long a claimed row belongs to its worker before the sweep may take it
    back. A call has no upper bound of its own (the read timeout is per read; a
    big upload or a mirror download adds to it), so the lease is short and
    renewed while the call runs (`lease_kept`): a worker killed mid-call frees
    its project's in-flight slots within this, not at django-q2's task timeout."""
    return settings.HIVE_LEASE_SECONDS


@contextmanager
def lease_kept(submission: Submission):
    """Renew the claim's lease every quarter lease while the block runs, from a
    thread: the call blocks this one in a socket read. Renewal is conditional on
    the claim (`_ours`), so it never revives a row that was handed on. Most
    calls end before the first renewal and touch nothing."""
    stop = threading.Event()
    thread = threading.Thread(target=_renew_lease, args=(submission, stop), name=f"lease-{submission.pk}",
                              daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: the call goes on, under the claim's lease alone
        logger.warning("lease not kept: no thread", exc_info=True, extra={"submission_id": str(submission.pk)})
        thread = None
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=5)


def _renew_lease(submission: Submission, stop: threading.Event) -> None:
    try:
        while not stop.wait(lease_seconds() / 4):
            try:
                _still_ours(submission).update(lease_until=timezone.now() + timedelta(seconds=lease_seconds()))
            except DatabaseErrors:  # three more tries before the lease runs out
                logger.warning("lease not renewed", exc_info=True, extra={"submission_id": str(submission.pk)})
                connections.close_all()  # the next try connects afresh (a restarted server)
    finally:
        connections.close_all()  # this thread's own connections


def inflight_limit(project: Project) -> int:
    return project.inflight_limit or settings.HIVE_DEFAULT_INFLIGHT_LIMIT


def in_flight(project_id: int, now):
    """The project's items being sent to Hive now: what the in-flight limit counts
    (an expired lease is a dead worker's, taken back by the sweep)."""
    return Submission.objects.filter(project_id=project_id, status=Status.PROCESSING, lease_until__gt=now)


def abandoned(now) -> Q:
    """Rows in `processing` that no live worker holds: the lease ran out (its
    worker died), or there is none (nothing leaves a row so but a bug)."""
    return Q(status=Status.PROCESSING) & (Q(lease_until__lt=now) | Q(lease_until__isnull=True))


def due(now):
    """Queued items whose backoff, if any, is over."""
    return Submission.objects.filter(status=Status.QUEUED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential with "equal jitter": half fixed, half random, so retries
    from a batch spread out instead of arriving together."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


# --- Enqueueing ------------------------------------------------------------

def enqueue(submission_id) -> None:
    """Queue the submission's dispatch once the caller's transaction commits.

    With the ORM broker in the same database (the embedded default) the task row
    is written inside that transaction instead: it commits with the submission or
    not at all, and SQLite, which has one writer, takes its write lock once per
    submission instead of twice. Redis cannot join the transaction; in sync mode
    the task would run inside it.

    After the commit the row is stored whatever happens to its task: if the
    broker is down then, the error is logged and the sweep, which wakes every
    project with queued work each minute, dispatches it. Raising would answer a
    partner 500 for a submission that is in fact accepted."""
    def send():
        async_task("moderation.tasks.dispatch_submission", str(submission_id))

    def send_after_commit():
        try:
            send()
        except Exception:  # noqa: BLE001 - any broker failure; the row is safe
            logger.exception("dispatch task not queued; the sweep will dispatch the submission",
                             extra={"submission_id": str(submission_id)})

    cluster = settings.Q_CLUSTER
    if cluster.get("orm") == "default" and not cluster.get("sync") and transaction.get_connection().in_atomic_block:
        send()
    else:
        transaction.on_commit(send_after_commit)


def enqueue_pump(project_id: int) -> None:
    async_task("moderation.tasks.pump_project", project_id)


# --- Claiming --------------------------------------------------------------

class Circuit(enum.Enum):
    UNCHANGED = "unchanged"
    OPENED = "opened"  # this call paused the project: its pump makes the probe call
    CLOSED = "closed"  # this call ended a pause: the other slots can be refilled


@dataclass
class Claim:
    submission: Submission | None
    wait: float | None = None  # seconds until something may become claimable


def locked_project(project_id: int) -> Project:
    """The project's row, locked until the transaction ends, so that its claims
    and circuit changes happen one at a time. FOR NO KEY UPDATE, not FOR UPDATE:
    every row inserted with a foreign key to the project (a partner's new
    submission, an audit event) takes FOR KEY SHARE on it, which FOR UPDATE
    blocks: intake and result recording waited for each claim."""
    return Project.objects.select_for_update(no_key=True).get(pk=project_id)


def claim(project_id: int, submission_id=None) -> Claim:
    """Take one due queued item of the project (that one, if given) while a
    slot is free. The project row lock serialises claims per project on
    PostgreSQL; SQLite's IMMEDIATE transactions do the same."""
    now = timezone.now()
    with transaction.atomic():
        project = locked_project(project_id)
        if project.hive_paused_until and project.hive_paused_until > now:
            return Claim(None, (project.hive_paused_until - now).total_seconds())
        # Half-open circuit: after failures, one probe call at a time.
        limit = 1 if project.hive_consecutive_failures else inflight_limit(project)
        candidates = due(now).filter(project_id=project_id)
        if submission_id is not None:
            candidates = candidates.filter(pk=submission_id)
        # The oldest due item and the in-flight count in one statement: every other
        # claim of the project waits for this lock, so each round trip under it counts.
        submission = (candidates.order_by("created_at").select_related("project")
                      .annotate(inflight=_count(in_flight(project_id, now))).first())
        if submission is None:
            queued = Submission.objects.filter(project_id=project_id, status=Status.QUEUED)
            upcoming = queued.filter(next_attempt_at__gt=now).order_by("next_attempt_at")
            upcoming = upcoming.values_list("next_attempt_at", flat=True).first()
            return Claim(None, (upcoming - now).total_seconds() if upcoming else None)
        if submission.inflight >= limit:
            return Claim(None)
        taken = dict(status=Status.PROCESSING, lease_until=now + timedelta(seconds=lease_seconds()),
                     next_attempt_at=None, dispatched_at=now)
        claimed = Submission.objects.filter(pk=submission.pk, status=Status.QUEUED).update(
            attempts=F("attempts") + 1, **taken)
        if not claimed:
            return Claim(None)
    # The row as claimed, without reading it again: only this claim changed it.
    for name, value in taken.items():
        setattr(submission, name, value)
    submission.attempts += 1
    return Claim(submission)


def _count(rows) -> Coalesce:
    """COUNT(*) of `rows` as a scalar subquery (0 when there are none)."""
    counted = rows.order_by().values("project_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted[:1]), 0)


# --- Task bodies -------------------------------------------------------------

def dispatch_submission(submission_id) -> None:
    if shutdown.stop_requested():
        return  # the cluster is stopping: the sweep dispatches it
    row = (Submission.objects.filter(pk=submission_id)
           .values_list("project_id", "status", "project__inflight_limit").first())
    if row is None or row[1] != Status.QUEUED:
        return  # gone, or a redelivered task for a row already taken
    project_id, _, limit = row
    # A batch enqueues a task per item, most of them while every slot is busy.
    # Those end here without the project lock (which every claim and every
    # slot's next claim waits for): a slot's pump takes their items in turn.
    inflight = in_flight(project_id, timezone.now()).count()
    if inflight >= (limit or settings.HIVE_DEFAULT_INFLIGHT_LIMIT):
        return
    first = claim(project_id, submission_id)
    if first.submission is not None:
        pump(project_id, first.submission)


def pump(project_id: int, first: Submission | None = None) -> None:
    """Keep one in-flight slot busy with the project's due items, oldest
    first, for up to PUMP_BUDGET_SECONDS; then hand over to a fresh task."""
    deadline = time.monotonic() + PUMP_BUDGET_SECONDS
    submission = first
    owns_probe = False
    while True:
        if submission is not None:
            circuit = call_hive(submission)
            owns_probe = circuit is Circuit.OPENED
            if circuit is Circuit.CLOSED:
                _refill(project_id)
        if shutdown.stop_requested():
            return  # the cluster is stopping: what is queued waits for the sweep
        if time.monotonic() > deadline:
            if Submission.objects.filter(project_id=project_id, status=Status.QUEUED).exists():
                enqueue_pump(project_id)
            return
        nxt = claim(project_id)
        submission = nxt.submission
        if submission is None:
            patience = PROBE_MAX_WAIT_SECONDS if owns_probe else PUMP_MAX_WAIT_SECONDS
            if nxt.wait is None or nxt.wait > patience:
                return
            shutdown.pause(max(0.05, nxt.wait))


def _refill(project_id: int) -> None:
    """After a pause, bring the project back to its full in-flight limit."""
    project = Project.objects.get(pk=project_id)
    waiting = Submission.objects.filter(project_id=project_id, status=Status.QUEUED)
    for _ in range(waiting[: inflight_limit(project) - 1].count()):
        enqueue_pump(project_id)


# --- One call ----------------------------------------------------------------

@metrics.hive_call
def call_hive(submission: Submission) -> Circuit:
    """One attempt; never raises. Every way out leaves the row in a state the
    sweep or a pump can pick up again. Says what it did to the project's circuit."""
    with lease_kept(submission):
        return _call_hive(submission)


def _call_hive(submission: Submission) -> Circuit:
    project = submission.project
    log = {"submission_id": str(submission.pk), "project": project.slug}
    try:
        if submission.source == ContentSource.URL and project.url_mirror == UrlMirror.ALWAYS and not submission.media:
            mirror_url(submission)
        client = HiveClient(api_key=project.hive_api_key, session=_session())
        with _content(submission) as content:
            if project.delivery == Delivery.SYNC:
                answer = client.submit_sync(content, metadata=str(submission.pk))
                circuit = _project_ok(project)
                normalised = normalise_for(project, answer.result)
                outcome = record_result(submission.pk, raw=answer.raw, result=answer.result,
                                        normalised=normalised, source=ResultSource.SYNC)
                if outcome is Recorded.DUPLICATE:
                    _release(submission, Status.COMPLETED)
            else:
                ack = client.submit_async(content, metadata=str(submission.pk),
                                          callback_url=callbacks.callback_url(submission.pk))
                circuit = _project_ok(project)
                _await_callback(submission, ack.task_id)
    except HiveError as error:
        return handle_error(submission, error)
    except MirrorError as error:
        _mirror_failed(submission, error)
    except Exception as error:  # noqa: BLE001 - a bug must not strand the row in `processing`
        logger.exception("dispatch crashed", extra=log)
        _crashed(submission, error)
    else:
        return circuit
    return Circuit.UNCHANGED


_SESSION: requests.Session | None = None


def _session() -> requests.Session:
    """One connection pool per worker process: calls to Hive reuse connections."""
    global _SESSION
    if _SESSION is None:
        _SESSION = requests.Session()
    return _SESSION


class _content:
    """Context manager opening the submission's content for the client."""

    def __init__(self, submission: Submission):
        self.submission = submission
        self.file = None

    def __enter__(self) -> Content:
        s = self.submission
        if s.media:
            self.file = s.media.open("rb")
            return Content(media=self.file, media_name=s.media.name.rsplit("/", 1)[-1],
                           media_content_type=s.media_mime or "application/octet-stream")
        if s.source == ContentSource.URL:
            return Content(url=s.url)
        return Content(text_data=s.text_data)

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def _ours(submission: Submission) -> Q:
    """The row while this claim still holds it: not completed by a callback,
    not taken back by the sweep and claimed again (which counts an attempt),
    not reset by an operator."""
    return Q(status=Status.PROCESSING, attempts=submission.attempts)


def _still_ours(submission: Submission):
    return Submission.objects.filter(_ours(submission), pk=submission.pk)


def _await_callback(submission: Submission, task_id: str) -> None:
    pending = _still_ours(submission)
    fields = dict(status=Status.AWAITING_CALLBACK, lease_until=None, error="", error_code="")
    try:
        with transaction.atomic():
            moved = pending.update(hive_task_id=task_id[:100], **fields)
    except IntegrityError:
        # Hive reused a task id: keep waiting; the callback's metadata still names us.
        logger.warning("duplicate Hive task id %s", task_id, extra={"submission_id": str(submission.pk)})
        moved = pending.update(**fields)
    if moved:
        audit.record("hive.accepted", actor=Actor.HIVE, submission=submission, task_id=task_id,
                     attempt=submission.attempts)


def _refund_attempt(submission: Submission) -> None:
    if _still_ours(submission).filter(attempts__gt=0).update(attempts=F("attempts") - 1):
        submission.attempts -= 1


def _release(submission: Submission, status: str) -> None:
    _still_ours(submission).update(status=status, lease_until=None)


def handle_error(submission: Submission, error: HiveError) -> Circuit:
    project = submission.project
    circuit = Circuit.UNCHANGED
    if error.permanent:
        fail(submission, _partner_message(error), code=_code(error), only_if=_ours(submission))
        return circuit
    if not error.error_codes:
        # The service itself is unhappy (429, 5xx, network): slow the whole project down.
        circuit = _project_failed(project, error.retry_after)
        if project.hive_consecutive_failures:
            # A probe of a circuit already open (`project` is the row as claimed): it
            # says Hive is still down, nothing about this item. Counted, an outage of
            # a few minutes would use up the attempts of whichever item probed.
            _refund_attempt(submission)
    if submission.created_at < timezone.now() - timedelta(hours=settings.HIVE_GIVE_UP_HOURS):
        fail(submission, f"Hive could not take it for {settings.HIVE_GIVE_UP_HOURS} hours: "
                         f"{_partner_message(error)}", code=_code(error), only_if=_ours(submission))
        return circuit
    if (error.download_error and submission.source == ContentSource.URL and project.url_mirror != UrlMirror.NEVER
            and not submission.media and submission.attempts >= DOWNLOAD_RETRIES_BEFORE_MIRROR):
        try:
            mirror_url(submission)
        except MirrorError as mirror_error:
            _mirror_failed(submission, mirror_error)
            return circuit
        _retry_later(submission, error, delay=0)
        return circuit
    if submission.attempts >= max_attempts():
        fail(submission, f"Hive kept failing after {submission.attempts} attempts: {_partner_message(error)}",
             code=_code(error), only_if=_ours(submission))
        return circuit
    when = None
    if circuit is Circuit.OPENED:
        # Due just after the pause ends, so the probe then is another item if one is
        # waiting: one item that Hive always fails on does not hold the circuit open.
        when = Project.objects.values_list("hive_paused_until", flat=True).get(pk=project.pk)
        when += timedelta(seconds=PROBE_ROTATION_SECONDS)
    _retry_later(submission, error, when=when)
    return circuit


INTERNAL_ERROR = "The portal could not send this to Hive because of an internal error (logged for the operators)"


def _crashed(submission: Submission, error: Exception) -> None:
    """Our own bug, not Hive's: the partner is told so, without the exception's
    text, and an item that crashes every time is failed after the usual attempts."""
    if submission.attempts >= max_attempts():
        fail(submission, f"{INTERNAL_ERROR}; gave up after {submission.attempts} attempts.", code="internal_error",
             only_if=_ours(submission))
        return
    _retry_later(submission, HiveError(f"internal error: {error!r}", permanent=False),
                 shown=f"{INTERNAL_ERROR}; it will be tried again.", code="internal_error")


def _mirror_failed(submission: Submission, error: MirrorError) -> None:
    message = f"Neither Hive nor the portal could fetch the URL: {error}"
    if error.permanent or submission.attempts >= max_attempts():
        fail(submission, message, code="url_fetch_failed", only_if=_ours(submission))
    else:
        _retry_later(submission, HiveError(message, permanent=False))


def _retry_later(submission: Submission, error: HiveError, delay: float | None = None, when=None, *,
                 shown: str | None = None, code: str | None = None) -> None:
    if when is not None:
        delay = max(0.0, (when - timezone.now()).total_seconds())
    if delay is None:
        delay = backoff(submission.attempts, ITEM_BACKOFF_BASE, ITEM_BACKOFF_CAP)
        if error.retry_after:
            delay = max(delay, error.retry_after)
    when = timezone.now() + timedelta(seconds=delay)
    moved = _still_ours(submission).update(
        status=Status.QUEUED, next_attempt_at=when, lease_until=None,
        error=(shown or _partner_message(error))[:2000], error_code=code or _code(error),
    )
    if moved:
        audit.record("hive.retry_scheduled", submission=submission, attempt=submission.attempts,
                     error=error.message[:500], status_code=error.status_code, retry_in_seconds=round(delay, 1))
        logger.info("hive call failed, retrying", extra={
            "submission_id": str(submission.pk), "project": submission.project.slug,
            "status_code": error.status_code, "retry_in": round(delay, 1)})


def fail(submission: Submission, message: str, *, code: str = "", only_if: Q | None = None) -> bool:
    """Fail the submission unless it completed (or unless `only_if` no longer
    holds: a caller that read the row's state first says which). Whether it did."""
    now = timezone.now()
    rows = Submission.objects.filter(pk=submission.pk).exclude(status=Status.COMPLETED)
    if only_if is not None:
        rows = rows.filter(only_if)
    with transaction.atomic():  # the failure, its audit event and its webhook event: all or none
        moved = rows.update(
            status=Status.FAILED, error=message[:2000], error_code=code[:40], lease_until=None,
            next_attempt_at=None, completed_at=now,
        )
        if moved:
            audit.record("submission.failed", submission=submission, error=message[:500], code=code)
            notify.submission_changed(submission.pk, notify.FAILED)
    if moved:
        logger.warning("submission failed", extra={"submission_id": str(submission.pk),
                                                   "project": submission.project.slug, "error": message[:200]})
    return bool(moved)


def _project_failed(project: Project, retry_after: float | None) -> Circuit:
    now = timezone.now()
    with transaction.atomic():
        locked = locked_project(project.pk)
        if locked.hive_paused_until and locked.hive_paused_until > now:
            return Circuit.UNCHANGED  # calls that were already in flight when the circuit opened
        failures = locked.hive_consecutive_failures + 1
        delay = backoff(failures, PROJECT_BACKOFF_BASE, PROJECT_BACKOFF_CAP)
        if retry_after:
            delay = max(delay, retry_after)
        Project.objects.filter(pk=project.pk).update(
            hive_consecutive_failures=failures, hive_paused_until=now + timedelta(seconds=delay)
        )
    audit.record("hive.paused", project=project, failures=failures, seconds=round(delay, 1))
    return Circuit.OPENED


def _project_ok(project: Project) -> Circuit:
    """A call succeeded: close the project's circuit if it was open when the call
    was claimed (`project` is the row the claim read under its lock). If it was
    healthy then, there is nothing to close, and no statement is spent: a pause
    that another slot opened since is left to that slot's probe, as a failure of
    a call already in flight leaves a pause alone (`_project_failed`); a
    Retry-After is not cut short by a call that started before it."""
    if not project.hive_consecutive_failures and project.hive_paused_until is None:
        return Circuit.UNCHANGED
    closed = Project.objects.filter(pk=project.pk).filter(
        Q(hive_consecutive_failures__gt=0) | Q(hive_paused_until__isnull=False)
    ).update(hive_consecutive_failures=0, hive_paused_until=None)
    if closed:
        audit.record("hive.resumed", project=project)
    return Circuit.CLOSED if closed else Circuit.UNCHANGED


def _code(error: HiveError) -> str:
    if error.error_codes:
        return f"hive_{error.error_codes[0]}"
    return f"http_{error.status_code}" if error.status_code else "network"


_PERMANENT_HINTS = {
    401: "Hive refused the project's API key; an operator must update it.",
    403: "Hive refused the project's API key; an operator must update it.",
    405: "Hive reports insufficient balance for this project; an operator must top it up.",
}


def _partner_message(error: HiveError) -> str:
    hint = _PERMANENT_HINTS.get(error.status_code or 0)
    message = error.message.strip()
    if hint:
        return f"{hint} (Hive said: {message})"
    # Our own descriptions name Hive already ("Hive sync call: HTTP 400: ..."); Hive's words do not.
    return message if message.startswith("Hive ") else f"Hive said: {message}"
