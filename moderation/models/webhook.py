from __future__ import annotations

import uuid

from django.db import models


class WebhookEndpoint(models.Model):
    """A partner's URL for signed notifications (Standard Webhooks).

    `secret` is needed in clear to sign, so it cannot be hashed; it is shown
    once at creation and never again. During rotation the previous secret
    signs too, until `previous_secret_expires_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey("moderation.Partner", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # Set at the first failure in a row, cleared by a success: "failing for days".
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookEvent(models.Model):
    """One partner-visible event, rendered once: every endpoint's message sends
    this `body`, kept verbatim so every retry is byte-identical. Stored once per
    event rather than per endpoint, so fanning out to many endpoints writes
    small rows only."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    submission = models.ForeignKey(
        "moderation.Submission", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    event_type = models.CharField(max_length=40)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set once the event's messages exist (one per subscribed endpoint). The
    # drain creates them as it has room, so a burst of events costs the queue
    # one small row each and the delivery lane paces itself.
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["fanned_out_at", "created_at"], name="webhook_event_fanout_idx")]

    def __str__(self) -> str:
        return self.id


class WebhookMessage(models.Model):
    """One event for one endpoint. Its id is the `webhook-id` header: the same
    on every retry; its body is the event's."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="messages")
    submission = models.ForeignKey(
        "moderation.Submission", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_messages"
    )
    event_type = models.CharField(max_length=40)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Lease while a worker is sending it, so two workers never send it at once.
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx")]

    def __str__(self) -> str:
        return self.id

    @property
    def body(self) -> str:
        return self.event.body


class WebhookDelivery(models.Model):
    """One attempt to deliver a message."""

    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="deliveries")
    attempted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    success = models.BooleanField(default=False)
    manual = models.BooleanField(default=False, help_text="Sent by a redeliver request.")

    class Meta:
        ordering = ["-attempted_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.message_id} {self.status_code or self.error}"
