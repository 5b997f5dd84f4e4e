from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """The first response to (partner, Idempotency-Key), replayed on repeats.

    A row with no `response_status` is a request still in flight. `fingerprint`
    is a digest of what was asked (fields and file contents, not the multipart
    boundary), so the same key with a different request can be refused.
    """

    partner = models.ForeignKey("moderation.Partner", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "key"], name="idempotency_unique_key")]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.key}"
