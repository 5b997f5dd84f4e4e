from __future__ import annotations

import django_filters

from moderation.models import Decision, Status, Submission


class SubmissionFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    status = django_filters.ChoiceFilter(choices=Status.choices)
    decision = django_filters.ChoiceFilter(choices=Decision.choices)
    external_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Submission
        fields = ["project", "status", "decision", "external_id", "created_after", "created_before"]
