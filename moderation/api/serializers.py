from __future__ import annotations

from rest_framework import serializers

from moderation.models import Project


class ProjectSerializer(serializers.ModelSerializer):
    accepted_fields = serializers.SerializerMethodField()
    accepted_media = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["slug", "name", "endpoint_type", "review_mode", "delivery", "accepted_fields", "accepted_media"]

    def get_accepted_fields(self, project: Project) -> list[str]:
        return list(project.rule.fields)

    def get_accepted_media(self, project: Project) -> list[str]:
        return list(project.rule.media)
