from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from moderation.hive.rules import MEDIA_KINDS


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    AWAITING_CALLBACK = "awaiting_callback", "Awaiting callback"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class Decision(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ESCALATED = "escalated", "Escalated"


class DecisionSource(models.TextChoices):
    AUTO = "auto", "Threshold routing"
    MODERATOR = "moderator", "Moderator"
    HIVE_REVIEW = "hive_review", "Hive manual review"
    OPERATOR = "operator", "Operator"


class ContentSource(models.TextChoices):
    MEDIA = "media", "Uploaded media"
    URL = "url", "URL"
    TEXT = "text_data", "Text"


def media_upload_path(instance: "Submission", filename: str) -> str:
    """Storage path from our own id, never the client's file name."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    extension = "".join(c for c in extension if c.isalnum())[:8] or "bin"
    return f"submissions/{timezone.now():%Y/%m/%d}/{instance.id}.{extension}"


class Submission(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("moderation.Project", on_delete=models.PROTECT, related_name="submissions")
    partner = models.ForeignKey("moderation.Partner", on_delete=models.PROTECT, related_name="submissions")
    external_id = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # What was asked with the key (services/idempotency.fingerprint): kept with it,
    # so a repeat after the key's stored answer is pruned is judged exactly.
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)

    # Content: exactly one of media / url / text_data.
    source = models.CharField(max_length=16, choices=ContentSource.choices)
    media = models.FileField(upload_to=media_upload_path, max_length=255, blank=True)
    url = models.URLField(max_length=2048, blank=True)
    text_data = models.TextField(blank=True)
    media_kind = models.CharField(max_length=8, choices=[(k, k) for k in MEDIA_KINDS], blank=True)
    media_mime = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)

    # Pipeline.
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    hive_task_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While `processing`, the worker's lease: past it, the sweep takes the row back.
    lease_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="What went wrong, in words a partner can act on.")
    error_code = models.CharField(max_length=40, blank=True)
    callback_overdue_at = models.DateTimeField(null=True, blank=True)

    # Latest normalised verdict, denormalised from Result for queue filters.
    scores = models.JSONField(null=True, blank=True)
    top_class = models.CharField(max_length=100, blank=True)
    top_score = models.FloatField(null=True, blank=True)

    # Review.
    decision = models.CharField(max_length=16, choices=Decision.choices, null=True, blank=True)
    decision_source = models.CharField(max_length=16, choices=DecisionSource.choices, blank=True)
    decision_reason = models.CharField(max_length=200, blank=True)
    decision_note = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="submission_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(source__in=ContentSource.values), name="submission_source_known"
            ),
        ]
        indexes = [
            # Dispatch: the next due queued item of a project; in-flight count.
            models.Index(fields=["project", "status", "next_attempt_at"], name="sub_dispatch_idx"),
            # Sweep: stuck `processing` leases and due retries across projects.
            models.Index(fields=["status", "lease_until"], name="sub_lease_idx"),
            # Review queues: oldest pending per project.
            models.Index(fields=["decision", "project", "created_at"], name="sub_review_idx"),
            # Partner API list (cursor on created_at).
            models.Index(fields=["partner", "-created_at"], name="sub_partner_feed_idx"),
            # external_id lookups: the partner API's (with its partner), the portal's and the
            # admin's (across partners; PostgreSQL cannot skip-scan a (partner, external_id) index).
            models.Index(fields=["external_id"], name="sub_ext_id_idx"),
            # Admin / queue pages by project and status.
            models.Index(fields=["project", "status", "created_at"], name="sub_project_status_idx"),
            # Portal: the review queue, its j/k neighbours, claim-next and the dashboard's
            # backlog filter decision, status and project together. SQLite's statistics are
            # averages (no skew): without this it took sub_project_status_idx and read every
            # completion of the project, not knowing how few are pending.
            models.Index(fields=["decision", "status", "project", "created_at"], name="sub_review_queue_idx"),
            # Portal: "Mine" and claim-next's held item; live claims only (NULL otherwise).
            models.Index(fields=["claimed_by", "claimed_until"], condition=Q(claimed_by__isnull=False),
                         name="sub_claimed_idx"),
            # Portal: "Recently decided", newest first, and its j/k neighbours.
            models.Index(fields=["decided_at", "id"], name="sub_decided_idx"),
            # Failures, newest first (the admin's status filter, the portal's "Failed"):
            # old failures pile up, and sub_project_status_idx makes both pages sort all
            # of them. Partial, so only a failure writes to it.
            models.Index(fields=["created_at", "id"], condition=Q(status="failed"), name="sub_failed_idx"),
        ]

    def __str__(self) -> str:
        return str(self.id)
