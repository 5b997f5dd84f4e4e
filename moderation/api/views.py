"""Partner API views: thin; every queryset starts from the partner's own rows."""

from __future__ import annotations

from rest_framework import generics

from moderation.api.serializers import ProjectSerializer
from moderation.models import Project


def partner_projects(partner):
    return Project.objects.filter(partners=partner, is_active=True)


class ProjectList(generics.ListAPIView):
    serializer_class = ProjectSerializer
    pagination_class = None

    def get_queryset(self):
        return partner_projects(self.request.user).order_by("slug")
