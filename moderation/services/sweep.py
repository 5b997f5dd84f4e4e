"""The scheduled safety net: nothing stays stuck when a worker dies or a
backoff ends with no pump running."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from moderation.models import Actor, CallbackReceipt, Project, ReceiptOutcome, Status, Submission
from moderation.services import audit
from moderation.services.dispatch import abandoned, due, enqueue_pump, fail, in_flight, inflight_limit, max_attempts

logger = logging.getLogger("moderation.pipeline")

BATCH = 1000


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    pumps: dict[str, int] = field(default_factory=dict)
    callbacks_requeued: int = 0


def sweep() -> SweepReport:
    report = SweepReport()
    _take_back_expired_leases(report)
    _requeue_stalled_callbacks(report)
    _flag_overdue_callbacks(report)
    _wake_projects(report)
    return report


def _take_back_expired_leases(report: SweepReport) -> None:
    """Rows whose worker died. A row with no lease at all has no worker either:
    nothing leaves `processing` without one, so such a row was stranded by a bug."""
    now = timezone.now()
    dead = abandoned(now)
    for submission in Submission.objects.filter(dead).select_related("project")[:BATCH]:
        if submission.attempts >= max_attempts():
            # An item that kills its worker every time (out of memory, a task
            # timeout) would otherwise be sent to Hive, and billed, for ever.
            message = (f"The portal gave up after {submission.attempts} attempts: the worker sending it "
                       f"stopped each time (logged for the operators).")
            if fail(submission, message, code="worker_died", only_if=dead):
                report.failed.append(str(submission.pk))
            continue
        moved = Submission.objects.filter(dead, pk=submission.pk).update(
            status=Status.QUEUED, lease_until=None, next_attempt_at=now
        )
        if moved:
            audit.record("dispatch.lease_expired", submission_id=submission.pk, project_id=submission.project_id)
            report.requeued.append(str(submission.pk))
    if report.failed:
        logger.warning("failed %d submissions whose worker died on every attempt", len(report.failed))
    if report.requeued:
        logger.warning("took back %d submissions from dead workers", len(report.requeued))


def _requeue_stalled_callbacks(report: SweepReport) -> None:
    """A stored, authentic callback still pending lost its task (Redis hands a
    task out once; its worker died). Processing is idempotent: queue it again,
    at most once per stall period, so a backlog is not made longer each minute."""
    cutoff = timezone.now() - timedelta(seconds=settings.CALLBACK_STALL_SECONDS)
    not_requeued_lately = Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
    stalled = CallbackReceipt.objects.filter(
        outcome=ReceiptOutcome.PENDING, authentic=True, received_at__lt=cutoff,
    ).filter(Q(processed_at__isnull=True) | Q(processed_at__lt=cutoff)).filter(not_requeued_lately)
    for pk in stalled.values_list("pk", flat=True)[:BATCH]:
        # Stamped first: a sweep running beside this one skips it.
        if CallbackReceipt.objects.filter(not_requeued_lately, pk=pk).update(requeued_at=timezone.now()):
            async_task("moderation.tasks.process_callback", pk)
            report.callbacks_requeued += 1
    if report.callbacks_requeued:
        logger.warning("queued %d stalled callbacks again", report.callbacks_requeued)


def _flag_overdue_callbacks(report: SweepReport) -> None:
    now = timezone.now()
    for project in Project.objects.filter(submissions__status=Status.AWAITING_CALLBACK).distinct():
        cutoff = now - timedelta(minutes=project.callback_deadline_minutes)
        late = Submission.objects.filter(
            project=project, status=Status.AWAITING_CALLBACK, callback_overdue_at__isnull=True,
            dispatched_at__lt=cutoff,
        )
        for submission in late[:BATCH]:
            message = (f"Hive has not called back within {project.callback_deadline_minutes} minutes "
                       f"(task {submission.hive_task_id}); an operator is looking into it.")
            moved = Submission.objects.filter(pk=submission.pk, status=Status.AWAITING_CALLBACK,
                                              callback_overdue_at__isnull=True).update(
                callback_overdue_at=now, error=message, error_code="callback_overdue")
            if moved:
                audit.record("callback.overdue", actor=Actor.SYSTEM, submission=submission,
                             task_id=submission.hive_task_id)
                report.overdue.append(str(submission.pk))


def _wake_projects(report: SweepReport) -> None:
    """Start pumps for projects with due work and free slots."""
    now = timezone.now()
    waiting_work = due(now)
    for project in Project.objects.filter(pk__in=waiting_work.values("project_id")):
        if project.hive_paused_until and project.hive_paused_until > now:
            continue
        inflight = in_flight(project.pk, now).count()
        slots = (1 if project.hive_consecutive_failures else inflight_limit(project)) - inflight
        waiting = waiting_work.filter(project=project)[: max(slots, 0)].count()
        for _ in range(min(slots, waiting)):
            enqueue_pump(project.pk)
        if waiting:
            report.pumps[project.slug] = min(slots, waiting)
