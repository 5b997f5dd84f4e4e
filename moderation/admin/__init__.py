"""Operator admin, one module per area; importing them registers the ModelAdmins."""

from moderation.admin import core, webhooks  # noqa: F401
