from __future__ import annotations

from django.db import models
from django.utils import timezone


class ResultSource(models.TextChoices):
    SYNC = "sync", "Sync response"
    CALLBACK = "callback", "Async callback"


class Result(models.Model):
    """One result object from Hive. `raw` is the body exactly as received (a
    JSON column would reorder keys); the rest is what the normaliser made of it.
    A Model + Manual Review submission can receive several."""

    submission = models.ForeignKey("moderation.Submission", on_delete=models.CASCADE, related_name="results")
    source = models.CharField(max_length=16, choices=ResultSource.choices)
    hive_task_id = models.CharField(max_length=100, blank=True)
    # sha256 of the result with Hive's resend markers removed: a re-sent
    # callback has the same fingerprint and is refused as a duplicate.
    fingerprint = models.CharField(max_length=64)
    raw = models.TextField()
    scores = models.JSONField(default=dict)
    top_class = models.CharField(max_length=100, blank=True)
    top_score = models.FloatField(null=True, blank=True)
    timeline = models.JSONField(default=list, blank=True)
    transcript = models.TextField(blank=True)
    text_matches = models.JSONField(default=list, blank=True)
    failed_entries = models.JSONField(default=list, blank=True)
    # Hive's own manual-review verdict, when the result carries one.
    review = models.JSONField(null=True, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    # When Hive's answer arrived (for a callback: when its receipt was stored),
    # so results sort in Hive's order even when processed out of order.
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "fingerprint"], name="result_unique_per_submission"),
        ]

    def __str__(self) -> str:
        return f"{self.submission_id} {self.source} {self.received_at:%Y-%m-%d %H:%M:%S}"
