"""Who may open a portal page: anonymous users log in, users without a
reviewer role get a 403, leads-only pages refuse moderators."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from moderation.services.review import LEAD_GROUP, role


def forbidden(request, message: str):
    return render(request, "portal/forbidden.html", {"message": message}, status=403)


def reviewer_required(view):
    """Logged in, with the moderator or lead role; sets `request.portal_role`."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        request.portal_role = role(request.user)
        if request.portal_role is None:
            return forbidden(request, "Your account has no reviewer role. Ask a lead to add you to the "
                                      "moderator group.")
        return view(request, *args, **kwargs)

    return wrapped


def lead_required(view):
    @reviewer_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.portal_role != LEAD_GROUP:
            return forbidden(request, "This page is for leads.")
        return view(request, *args, **kwargs)

    return wrapped
