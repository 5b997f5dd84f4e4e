"""Per-partner throttle. The counters live in Django's cache, which is Redis in
production, so the rate holds across every web process."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle


class PartnerRateThrottle(SimpleRateThrottle):
    scope = "partner"

    def get_cache_key(self, request, view):
        if request.auth is None:
            return None  # unauthenticated requests are refused before throttling matters
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
