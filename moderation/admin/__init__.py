"""Operator admin, one module per area; importing them registers the ModelAdmins."""

from moderation.admin import callbacks, core, partners, projects, queues, submissions, webhooks  # noqa: F401
