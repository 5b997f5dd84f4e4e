"""Domain model, one module per concern; import from here."""

from moderation.models.audit import Actor, AppendOnlyError, AuditEvent
from moderation.models.callback import CallbackReceipt, ReceiptOutcome
from moderation.models.idempotency import IdempotencyRecord
from moderation.models.partner import ApiKey, Partner
from moderation.models.preferences import ModeratorPreference
from moderation.models.project import Delivery, EndpointType, Project, ReviewMode, UrlMirror
from moderation.models.result import Result, ResultSource
from moderation.models.submission import (
    ContentSource,
    Decision,
    DecisionSource,
    Status,
    Submission,
)
from moderation.models.webhook import MessageStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookMessage

__all__ = [
    "Actor", "ApiKey", "AppendOnlyError", "AuditEvent", "CallbackReceipt", "ContentSource",
    "Decision", "DecisionSource", "Delivery", "EndpointType", "IdempotencyRecord", "MessageStatus",
    "ModeratorPreference", "Partner", "Project", "ReceiptOutcome", "Result", "ResultSource", "ReviewMode",
    "Status", "Submission", "UrlMirror", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent",
    "WebhookMessage",
]
