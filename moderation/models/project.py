from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from moderation.hive.rules import DEFAULT_TEXT_LIMIT, ENDPOINT_TYPES, rule_for


class EndpointType(models.TextChoices):
    VISUAL = "visual", "Visual"
    TEXT = "text", "Text"
    SPEECH = "speech", "Speech"
    OCR = "ocr", "OCR"
    LOGO = "logo", "Logo"
    SCENE = "scene", "Scene"
    FACE = "face", "Face"


assert set(EndpointType.values) == set(ENDPOINT_TYPES), "choices drift from hive.rules"


class ReviewMode(models.TextChoices):
    MODEL_ONLY = "model_only", "Model only"
    MODEL_MANUAL_REVIEW = "model_manual_review", "Model + manual review"


class UrlMirror(models.TextChoices):
    NEVER = "never", "Never: Hive downloads the URL"
    FALLBACK = "fallback", "After Hive's download errors"
    ALWAYS = "always", "Always: fetch first, send the bytes"


class Delivery(models.TextChoices):
    SYNC = "sync", "Sync"
    ASYNC = "async", "Async"


def validate_thresholds(value: object) -> None:
    """{"<class>": {"review": 0.5, "reject": 0.9}, ...}; each bound in [0, 1],
    review ≤ reject. Classes are the project's own: none is assumed."""
    if not isinstance(value, dict):
        raise ValidationError("Thresholds must be an object of class → {review, reject}.")
    for cls, bounds in value.items():
        if not isinstance(cls, str) or not cls.strip():
            raise ValidationError("Threshold class names must be non-empty strings.")
        if not isinstance(bounds, dict) or not set(bounds) <= {"review", "reject"} or not bounds:
            raise ValidationError(f"{cls}: expected an object with 'review' and/or 'reject'.")
        for name, number in bounds.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 1:
                raise ValidationError(f"{cls}.{name} must be a number between 0 and 1.")
        if "review" in bounds and "reject" in bounds and bounds["review"] > bounds["reject"]:
            raise ValidationError(f"{cls}: 'review' must not be above 'reject'.")


def validate_reasons(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(r, str) and r.strip() for r in value):
        raise ValidationError("Reject reasons must be a list of non-empty strings.")


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    endpoint_type = models.CharField(max_length=16, choices=EndpointType.choices)
    review_mode = models.CharField(
        max_length=32, choices=ReviewMode.choices, default=ReviewMode.MODEL_ONLY
    )
    delivery = models.CharField(max_length=8, choices=Delivery.choices, default=Delivery.ASYNC)
    # A secret: needed in clear to call Hive, so it cannot be hashed; it is
    # write-only everywhere it is shown (see `hive_key_hint`).
    hive_api_key = models.CharField(max_length=200, blank=True)
    thresholds = models.JSONField(default=dict, blank=True, validators=[validate_thresholds])
    reject_reasons = models.JSONField(default=list, blank=True, validators=[validate_reasons])
    review_sla_minutes = models.PositiveIntegerField(
        default=60, help_text="Items pending review longer than this are shown as late."
    )
    callback_deadline_minutes = models.PositiveIntegerField(
        default=30, help_text="An async submission without a callback after this long is flagged."
    )
    url_mirror = models.CharField(
        max_length=8,
        choices=UrlMirror.choices,
        default=UrlMirror.FALLBACK,
        help_text="When to fetch URL submissions into storage and send Hive the bytes.",
    )
    text_limit = models.PositiveIntegerField(default=DEFAULT_TEXT_LIMIT)
    inflight_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Calls to Hive in flight at once (blank: the default)."
    )
    is_active = models.BooleanField(default=True)
    # Moderators who may review this project (leads review every project).
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="review_projects",
        help_text="Moderators who may work this project's review queue.",
    )
    # Circuit breaker shared by every worker: while Hive rate-limits or fails
    # for this project, nobody calls it before this time.
    hive_paused_until = models.DateTimeField(null=True, blank=True, editable=False)
    hive_consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(review_mode=ReviewMode.MODEL_MANUAL_REVIEW, delivery=Delivery.SYNC),
                name="project_manual_review_is_async",
                violation_error_message=(
                    "A Model + Manual Review project is always async: Hive answers "
                    "its review result only by callback."
                ),
            ),
            models.CheckConstraint(
                condition=Q(endpoint_type__in=ENDPOINT_TYPES), name="project_endpoint_type_known"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        super().clean()
        if self.review_mode == ReviewMode.MODEL_MANUAL_REVIEW and self.delivery == Delivery.SYNC:
            raise ValidationError(
                {"delivery": "Sync is valid only for Model Only projects; "
                             "a Model + Manual Review project is always async."}
            )

    @property
    def rule(self):
        return rule_for(self.endpoint_type)

    @property
    def hive_key_hint(self) -> str:
        """What may be shown of the Hive key: a few leading characters."""
        if not self.hive_api_key:
            return "(not set)"
        return f"{self.hive_api_key[:4]}…" if len(self.hive_api_key) > 8 else "…"

    @property
    def uses_manual_review(self) -> bool:
        return self.review_mode == ReviewMode.MODEL_MANUAL_REVIEW
