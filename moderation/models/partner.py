from __future__ import annotations

from django.db import models


class Partner(models.Model):
    name = models.CharField(max_length=200, unique=True)
    projects = models.ManyToManyField("moderation.Project", blank=True, related_name="partners")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A partner credential. Only `prefix` is kept in clear (to find the row
    and to tell keys apart); the secret is stored as a SHA-256 digest, which is
    enough for a 256-bit random secret (no slow hash needed)."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.partner} {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
