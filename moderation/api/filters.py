from __future__ import annotations

from datetime import timezone as dt_timezone

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from moderation.models import Decision, Status, Submission


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 timestamp, passed to the database in UTC: Python takes any
    UTC offset under 24 hours and PostgreSQL none past 15:59, and a moment past
    year 9999 (or before year 1) once in UTC fits no database."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(dt_timezone.utc)
        except OverflowError:
            raise forms.ValidationError("Out of range once converted to UTC.", code="invalid") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


def one_of(*values: str) -> dict:
    """A refused choice's message names the accepted values, so the partner
    need not look them up."""
    return {"invalid_choice": f"One of: {', '.join(values)}."}


NO_DECISION = "none"  # `decision=none`: the submissions without a decision (yet)


class SubmissionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    status = django_filters.ChoiceFilter(choices=Status.choices, error_messages=one_of(*Status.values))
    decision = django_filters.ChoiceFilter(
        choices=Decision.choices, null_value=NO_DECISION, null_label="No decision (yet)",
        error_messages=one_of(*Decision.values, NO_DECISION),
        help_text=f"`{NO_DECISION}`: no decision yet (not completed, or failed).",
    )
    external_id = django_filters.CharFilter()
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Submission
        fields = ["project", "status", "decision", "external_id", "created_after", "created_before"]
