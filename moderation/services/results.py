"""Storing Hive's results: one function, used for sync responses and callbacks."""

from __future__ import annotations

import enum
import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from moderation.hive.normalise import Normalised, fingerprint, normalise
from moderation.models import Actor, DecisionSource, Project, Result, Status, Submission
from moderation.services import audit, notify
from moderation.services.routing import route

logger = logging.getLogger("moderation.pipeline")

SEVERITY_ENDPOINTS = {"text", "speech"}


class Recorded(enum.Enum):
    NEW = "new"
    ADDITIONAL = "additional"  # a genuinely new result (Hive's manual review)
    DUPLICATE = "duplicate"


def normalise_for(project: Project, result: dict) -> Normalised:
    """Raises HiveError when the result holds no successful entry."""
    return normalise(result, severity_scale=project.endpoint_type in SEVERITY_ENDPOINTS)


def record_result(
    submission_id, *, raw: str, result: dict, normalised: Normalised, source: str, received_at=None
) -> Recorded:
    """Store a result once. The first completes and routes the submission; a
    re-sent one (same fingerprint) or one from a duplicate Hive task is a
    no-op; another genuinely new one is kept only for Model + Manual Review."""
    digest = fingerprint(result)
    with transaction.atomic():
        # of=self: a plain FOR UPDATE would lock the joined project row too, and every
        # claim of the project (which locks that row) would wait for this result.
        submission = (Submission.objects.select_for_update(of=("self",)).select_related("project")
                      .get(pk=submission_id))
        project = submission.project
        previous = list(submission.results.values_list("fingerprint", "hive_task_id"))
        if any(fp == digest for fp, _ in previous):
            return Recorded.DUPLICATE
        if previous and not _may_add(project, submission, normalised):
            return Recorded.DUPLICATE
        # The row lock makes a concurrent copy all but impossible. If the unique
        # constraint still refuses this one, nothing has been written yet and the
        # enclosing block rolls back whole (to its own savepoint when nested), so
        # the insert needs no savepoint of its own: two round trips fewer per result.
        try:
            with transaction.atomic(savepoint=False):
                Result.objects.create(
                    submission=submission,
                    source=source,
                    hive_task_id=normalised.task_id[:100],
                    fingerprint=digest,
                    raw=raw,
                    scores=normalised.scores,
                    top_class=normalised.top_class or "",
                    top_score=normalised.top_score,
                    timeline=normalised.timeline,
                    transcript=normalised.transcript,
                    text_matches=normalised.text_matches,
                    failed_entries=normalised.failed_entries,
                    review=normalised.review,
                    model_version=normalised.model_version,
                    received_at=received_at or timezone.now(),
                )
        except IntegrityError:
            return Recorded.DUPLICATE
        if previous:
            audit.record("result.additional", actor=Actor.HIVE, submission=submission,
                         review=normalised.review, task_id=normalised.task_id)
            return Recorded.ADDITIONAL
        _complete(submission, normalised)
        return Recorded.NEW


def _may_add(project: Project, submission: Submission, normalised: Normalised) -> bool:
    # Only one model result may win: a second Hive task created by a retried
    # async call is a duplicate. Hive's review for the same task is not.
    if not project.uses_manual_review:
        return False
    return not submission.hive_task_id or normalised.task_id == submission.hive_task_id


def _complete(submission: Submission, normalised: Normalised) -> None:
    project = submission.project
    routed = route(normalised.scores, project.thresholds)
    now = timezone.now()
    submission.status = Status.COMPLETED
    submission.completed_at = now
    submission.lease_until = None
    submission.next_attempt_at = None
    submission.error = ""
    submission.error_code = ""
    submission.scores = normalised.scores
    submission.top_class = normalised.top_class or ""
    submission.top_score = normalised.top_score
    task_id = normalised.task_id[:100]
    # The task whose result won, even if a retry was acknowledged since (its ack
    # stored the newer id): Hive's review of the winning task is what `_may_add`
    # keeps. Task ids are unique at Hive; a reused one must not make the result unstorable.
    if (task_id and task_id != submission.hive_task_id
            and not Submission.objects.filter(hive_task_id=task_id).exclude(pk=submission.pk).exists()):
        submission.hive_task_id = task_id
    submission.decision = routed.decision
    submission.decision_source = DecisionSource.AUTO
    submission.decided_at = now if routed.decision != "pending" else None
    submission.save(update_fields=[
        "status", "completed_at", "lease_until", "next_attempt_at", "error", "error_code", "scores",
        "top_class", "top_score", "hive_task_id", "decision", "decision_source", "decided_at", "updated_at",
    ])
    audit.record_many(
        audit.event_for("result.received", actor=Actor.HIVE, submission=submission,
                        top_class=submission.top_class, top_score=submission.top_score, task_id=normalised.task_id,
                        failed_entries=normalised.failed_entries),
        audit.event_for("decision.routed", submission=submission, decision=routed.decision,
                        triggered=routed.triggered, thresholds=project.thresholds,
                        model_version=normalised.model_version),
    )
    logger.info("submission completed", extra={"submission_id": str(submission.pk), "project": project.slug,
                                              "hive_task_id": submission.hive_task_id, "decision": routed.decision})
    notify.submission_changed(submission.pk, notify.COMPLETED)
