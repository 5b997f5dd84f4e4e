from __future__ import annotations

from django.db import models


class ReceiptOutcome(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    DUPLICATE = "duplicate", "Duplicate"
    REJECTED = "rejected", "Rejected (not authentic)"
    ERROR = "error", "Error"


class CallbackReceipt(models.Model):
    """Every POST to the callback URL, stored before anything else is done."""

    submission = models.ForeignKey(
        "moderation.Submission", null=True, blank=True, on_delete=models.SET_NULL, related_name="callback_receipts"
    )
    # The submission id as it appeared in the URL, kept even when it matches nothing.
    submission_ref = models.CharField(max_length=64)
    hive_task_id = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    authentic = models.BooleanField(default=False)
    duplicate = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=ReceiptOutcome.choices, default=ReceiptOutcome.PENDING)
    outcome_detail = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # When the sweep last queued it again: under a backlog a receipt's first task
    # may simply not have run yet, and one more copy per stall period is enough.
    requeued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["outcome", "received_at"], name="receipt_outcome_idx")]

    def __str__(self) -> str:
        return f"callback {self.pk} for {self.submission_ref}"
