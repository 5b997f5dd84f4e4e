from __future__ import annotations

from django.conf import settings
from django.db import models


class ModeratorPreference(models.Model):
    """How a moderator wants disturbing media shown. Defaults are protective."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="moderation_prefs")
    blur_enabled = models.BooleanField(default=True)
    # Media whose top score is at or above this is blurred until revealed.
    blur_threshold = models.FloatField(default=0.3)
    grayscale = models.BooleanField(default=False)
    video_muted = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"preferences of {self.user}"
