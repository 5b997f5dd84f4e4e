from __future__ import annotations

from rest_framework.permissions import BasePermission

from moderation.models import Partner


class IsPartner(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Partner)
