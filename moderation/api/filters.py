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


class SubmissionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    status = django_filters.ChoiceFilter(choices=Status.choices)
    decision = django_filters.ChoiceFilter(choices=Decision.choices)
    external_id = django_filters.CharFilter()
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Submission
        fields = ["project", "status", "decision", "external_id", "created_after", "created_before"]
