"""Shared pieces of the operator admin, and the read-only history tables
(results and audit events). Projects, partners, submissions, callbacks and the
queues page have their own modules."""

from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from moderation.admin.paginator import BigTableAdmin
from moderation.models import AuditEvent, Result

# Pretty-printing a long video result would make a page of megabytes.
PRETTY_LIMIT = 200_000


def pretty_json(text: str | None) -> SafeString:
    """Hive's JSON as sent, indented for reading (key order kept); anything
    that is not JSON is shown as it came."""
    if not text:
        return mark_safe('<span class="quiet">(empty)</span>')
    try:
        shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        shown = text
    note = ""
    if len(shown) > PRETTY_LIMIT:
        note = f"… cut at {PRETTY_LIMIT:,} of {len(shown):,} characters"
        shown = shown[:PRETTY_LIMIT]
    return format_html('<pre class="hp-json">{}</pre>{}', shown, note)


def parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def admin_link(obj, text: str | None = None) -> SafeString:
    if obj is None:
        return mark_safe('<span class="quiet">—</span>')
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else str(obj))


def report(request: HttpRequest, done: int, skipped: int, verb: str, why: str) -> None:
    """One message for a bulk action: what was done, what was left and why."""
    if done:
        messages.success(request, f"{verb} {done} submission{'s' if done != 1 else ''}.")
    if skipped:
        messages.warning(request, f"Left {skipped} submission{'s' if skipped != 1 else ''} alone: {why}.")
    if not done and not skipped:
        messages.info(request, "Nothing was selected.")


def object_page(request: HttpRequest, model_admin: admin.ModelAdmin, obj: Model, template: str, crumb: str,
                **context) -> TemplateResponse:
    """A page of our own about one object (a partner, a webhook endpoint),
    with the admin's chrome and breadcrumbs down to the object."""
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.opts, "object": obj,
               "crumb": crumb, "title": f"{crumb}: {obj}", **context}
    return TemplateResponse(request, template, context)


def show_once(request: HttpRequest, model_admin: admin.ModelAdmin, obj: Model, *, what: str, secret: str,
              lead: str, usage: str = "") -> TemplateResponse:
    """A new secret (a partner key, a webhook signing secret) in this response
    only: no messages cookie, no session, no log, and the page is never cached.
    The form that made it cannot make another when resubmitted, so a reload
    neither shows it again nor makes a second one."""
    response = object_page(request, model_admin, obj, "admin/moderation/secret_shown.html", f"New {what}",
                           what=what, secret=secret, lead=lead, usage=usage)
    add_never_cache_headers(response)
    return response


class ReadOnlyMixin:
    """History is never edited from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Result)
class ResultAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["id", "submission_link", "source", "top_class", "score", "hive_task_id", "received_at"]
    list_filter = ["source", ("received_at", admin.DateFieldListFilter)]
    list_select_related = ["submission"]
    deferred = ("raw",)
    raw_id_fields = ["submission"]
    ordering = ["-id"]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]

    # Short forms, so the list's last column fits a 1366 px screen.
    @admin.display(description="Submission", ordering="submission")
    def submission_link(self, obj: Result) -> SafeString:
        return admin_link(obj.submission, f"{str(obj.submission_id)[:8]}…")

    @admin.display(description="Top score", ordering="top_score")
    def score(self, obj: Result) -> str:
        return "" if obj.top_score is None else f"{obj.top_score:.4f}"

    @admin.display(description="Raw result (as Hive sent it)")
    def raw_pretty(self, obj: Result) -> SafeString:
        return pretty_json(obj.raw)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["created_at", "actor", "action", "submission_id", "project", "user", "partner"]
    list_filter = ["actor", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["project", "user", "partner"]
    raw_id_fields = ["submission", "project", "user", "partner"]
    search_fields = ["action"]
    search_help_text = "An exact action (e.g. operator.retry) or a submission id."
    ordering = ["-id"]

    def get_search_results(self, request, queryset, search_term):
        """Exact matches only: a substring search would read the whole table."""
        term = search_term.strip()
        if not term:
            return queryset, False
        submission_id = parse_uuid(term)
        if submission_id is not None:
            return queryset.filter(submission_id=submission_id), False
        return queryset.filter(action=term), False
