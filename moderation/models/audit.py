from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Actor(models.TextChoices):
    PARTNER = "partner", "Partner"
    SYSTEM = "system", "System"
    MODERATOR = "moderator", "Moderator"
    OPERATOR = "operator", "Operator"
    HIVE = "hive", "Hive"


class AppendOnlyError(Exception):
    pass


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are append-only")

    def delete(self):
        raise AppendOnlyError("audit events are append-only")


class AuditEvent(models.Model):
    """Append-only history: who did what to a submission (or project), when."""

    submission = models.ForeignKey(
        "moderation.Submission", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    project = models.ForeignKey(
        "moderation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    actor = models.CharField(max_length=16, choices=Actor.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    partner = models.ForeignKey(
        "moderation.Partner", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    # A default, not auto_now_add: the demo seed writes each sample's history at
    # the times its story happened. Nothing changes a stored event (save, update).
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["submission", "created_at"], name="audit_submission_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AppendOnlyError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only")
