from __future__ import annotations

import threading

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from moderation.hive.rules import MEDIA_KINDS
from moderation.models import Decision, Project, Result, Submission


class ProjectSerializer(serializers.ModelSerializer):
    accepted_fields = serializers.SerializerMethodField()
    accepted_media = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["slug", "name", "endpoint_type", "review_mode", "delivery", "accepted_fields", "accepted_media"]
        read_only_fields = fields  # a response only: every field is always present

    def get_accepted_fields(self, project: Project) -> list[str]:
        return list(project.rule.fields)

    def get_accepted_media(self, project: Project) -> list[str]:
        return list(project.rule.media)


class ResultSerializer(serializers.ModelSerializer):
    scores = serializers.DictField(child=serializers.FloatField())
    review = serializers.JSONField(allow_null=True)

    class Meta:
        model = Result
        fields = ["source", "received_at", "scores", "top_class", "top_score", "model_version", "review"]
        read_only_fields = fields


class SubmissionSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    scores = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    metadata = serializers.DictField()
    results = ResultSerializer(many=True, read_only=True)
    error = serializers.SerializerMethodField()
    decision = serializers.ChoiceField(choices=Decision.choices, allow_null=True, read_only=True)
    # Blank until known: a URL submission's kind is learnt only if the portal mirrors the file.
    media_kind = serializers.ChoiceField(choices=MEDIA_KINDS, allow_blank=True, read_only=True)

    class Meta:
        model = Submission
        fields = [
            "id", "project", "external_id", "metadata", "source", "media_kind", "size_bytes", "sha256",
            "status", "decision", "decision_reason", "scores", "top_class", "top_score", "results",
            "hive_task_id", "attempts", "error", "created_at", "completed_at", "decided_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error(self, submission: Submission) -> str | None:
        return submission.error or None


_built = threading.local()


def submission_json(submission: Submission) -> dict:
    """`SubmissionSerializer(submission).data`, from a serializer built once per
    thread. A ModelSerializer builds its fields by introspecting the model each
    time it is instantiated, which cost more than rendering the submission (the
    202 of every upload and every webhook body render one). The fields keep no
    state between calls; a thread's own copy needs no lock."""
    serializer = getattr(_built, "submission", None)
    if serializer is None:
        serializer = _built.submission = SubmissionSerializer()
    return serializer.to_representation(submission)


class SubmissionCreateSerializer(serializers.Serializer):
    """Documents the request body; validation is in services/intake.py."""

    media = serializers.FileField(required=False, help_text="The file (multipart only).")
    url = serializers.URLField(required=False, help_text="An http(s) URL Hive downloads.")
    text_data = serializers.CharField(required=False, help_text="Text to moderate (text projects).")
    metadata = serializers.JSONField(required=False, help_text="A JSON object (a JSON string in multipart).")
    external_id = serializers.CharField(required=False, max_length=255, help_text="Your own reference.")
