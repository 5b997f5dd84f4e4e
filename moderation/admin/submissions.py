"""Submissions: find one fast, see what Hive sent and what happened, and fix
it with one action (each action is a service in services/operations.py that
writes the audit trail)."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from moderation.admin.core import admin_link, parse_uuid, pretty_json, report
from moderation.admin.paginator import BigTableAdmin
from moderation.models import (
    AuditEvent,
    CallbackReceipt,
    Decision,
    Result,
    Status,
    Submission,
)
from moderation.services import operations

# Shown inline by the browser; anything else is downloaded, never rendered.
INLINE_MIME_PREFIXES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "video/", "audio/")
THUMBNAIL_KINDS = ("image", "gif")
KIND_BADGES = {"video": "VIDEO", "audio": "AUDIO", "text": "TEXT", "image": "IMAGE", "gif": "GIF"}


class CallbackFilter(admin.SimpleListFilter):
    title = "callback"
    parameter_name = "callback"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue (never came)")]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.filter(pk__in=operations.overdue_callbacks().values("pk"))
        return queryset


class CompletedFilter(admin.SimpleListFilter):
    """Completions by time, found through the audit trail's time index (the
    submission table has no index on completed_at)."""

    title = "completed"
    parameter_name = "completed"
    WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}

    def lookups(self, request, model_admin):
        return [("1h", "In the last hour"), ("24h", "In the last 24 hours")]

    def queryset(self, request, queryset):
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        since = timezone.now() - window
        completed = AuditEvent.objects.filter(action="result.received", created_at__gte=since)
        return queryset.filter(status=Status.COMPLETED, pk__in=completed.values("submission_id"))


class ResultInline(admin.StackedInline):
    model = Result
    extra = 0
    fields = ["source", "received_at", "hive_task_id", "top_class", "top_score", "review", "raw_pretty"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "Results (every one Hive sent, oldest first)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Raw JSON")
    def raw_pretty(self, obj: Result) -> SafeString:
        return format_html("<details><summary>Show the result as Hive sent it ({} characters)</summary>{}</details>",
                           f"{len(obj.raw):,}", pretty_json(obj.raw))


class ReceiptInline(admin.TabularInline):
    model = CallbackReceipt
    fk_name = "submission"
    extra = 0
    fields = ["receipt", "received_at", "authentic", "duplicate", "outcome", "outcome_detail"]
    readonly_fields = fields
    can_delete = False
    ordering = ["received_at", "id"]
    verbose_name_plural = "Callback receipts"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("body")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Receipt")
    def receipt(self, obj: CallbackReceipt) -> SafeString:
        return admin_link(obj, f"#{obj.pk}")


class EventInline(admin.TabularInline):
    model = AuditEvent
    fk_name = "submission"
    extra = 0
    fields = ["created_at", "actor", "action", "user", "partner", "data"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "Audit events"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "partner")


@admin.register(Submission)
class SubmissionAdmin(BigTableAdmin):
    change_form_template = "admin/moderation/submission/change_form.html"
    list_display = ["thumbnail", "short_id", "project", "partner", "external_id", "status", "decision", "top",
                    "created"]
    list_display_links = ["short_id"]
    list_filter = ["project", "status", "decision", "media_kind", ("created_at", admin.DateFieldListFilter),
                   CompletedFilter, CallbackFilter]
    # Projects and partners are fetched in one extra query each, not joined:
    # with the join, SQLite's planner (once it has statistics) starts from the
    # small project table and sorts every submission to find the newest 50.
    list_select_related = ()
    raw_id_fields = ["project", "partner", "decided_by", "claimed_by"]
    search_fields = ["external_id"]  # exact matches only: see get_search_results
    search_help_text = "A submission id, an external id or a Hive task id (exact)."
    actions = ["retry_failed", "redispatch", "send_to_review", "export_csv"]
    inlines = [ResultInline, ReceiptInline, EventInline]
    fieldsets = [
        ("Submission", {"fields": ["id", "project_link", "partner_link", "external_id", "status", "decision",
                                   "error", "created_at"]}),
        ("Content", {"fields": ["preview", "source", "url", "text_data", "media_kind", "media_mime", "size_bytes",
                                "sha256", "metadata_pretty"]}),
        ("Pipeline", {"fields": ["attempts", "hive_task_id", "dispatched_at", "next_attempt_at", "lease_until",
                                 "callback_overdue_at", "completed_at", "error_code", "updated_at"]}),
        ("Verdict", {"fields": ["decision_source", "decision_reason", "decision_note", "decided_by", "decided_at",
                                "top_class", "top_score", "scores_pretty"]}),
        ("What Hive sent", {"fields": ["latest_raw"]}),
    ]

    # --- Permissions: the record is read-only; actions need change permission. --------

    def has_add_permission(self, request) -> bool:
        return False  # partners submit through the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the audit trail of a submission is kept

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("moderation.change_submission")

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self.fieldsets for field in options["fields"]]

    # --- List -------------------------------------------------------------------------

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("project", "partner")

    def get_search_results(self, request, queryset, search_term):
        """Exact matches on indexed columns: a substring search over a
        million rows would read every one of them."""
        term = search_term.strip()
        if not term:
            return queryset, False
        submission_id = parse_uuid(term)
        if submission_id is not None:
            return queryset.filter(Q(pk=submission_id) | Q(hive_task_id=term)), False
        return queryset.filter(Q(external_id=term) | Q(hive_task_id=term)), False

    @admin.display(description="")
    def thumbnail(self, obj: Submission) -> SafeString:
        if obj.media and obj.media_kind in THUMBNAIL_KINDS:
            return format_html('<img class="hp-thumb" src="{}" alt="" loading="lazy">', media_url(obj))
        badge = KIND_BADGES.get(obj.media_kind, "URL" if obj.source == "url" else "?")
        return format_html('<span class="hp-icon" title="{}">{}</span>', obj.media_kind or obj.source, badge)

    @admin.display(description="Submission", ordering="pk")
    def short_id(self, obj: Submission) -> SafeString:
        return format_html('<span class="hp-id" title="{}">{}…</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Top class", ordering="top_score")
    def top(self, obj: Submission) -> str:
        return f"{obj.top_class} {obj.top_score:.2f}" if obj.top_class and obj.top_score is not None else ""

    @admin.display(description="Created at", ordering="created_at")
    def created(self, obj: Submission) -> str:
        # Compact, so the list's last column fits a 1366 px screen.
        return date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")

    # --- Change page --------------------------------------------------------------------

    @admin.display(description="Project")
    def project_link(self, obj: Submission) -> SafeString:
        return admin_link(obj.project)

    @admin.display(description="Partner")
    def partner_link(self, obj: Submission) -> SafeString:
        return admin_link(obj.partner)

    @admin.display(description="Metadata")
    def metadata_pretty(self, obj: Submission) -> SafeString:
        return pretty_json(json.dumps(obj.metadata))

    @admin.display(description="Scores")
    def scores_pretty(self, obj: Submission) -> SafeString:
        return pretty_json(json.dumps(obj.scores)) if obj.scores is not None else mark_safe("—")

    @admin.display(description="Media")
    def preview(self, obj: Submission) -> SafeString:
        if not obj.media:
            return mark_safe("—")
        url = media_url(obj)
        if obj.media_kind in THUMBNAIL_KINDS:
            return format_html('<a href="{}"><img class="hp-preview" src="{}" alt="submitted media"></a>', url, url)
        if obj.media_kind == "video":
            return format_html('<video class="hp-preview" src="{}" controls muted preload="metadata"></video>', url)
        if obj.media_kind == "audio":
            return format_html('<audio src="{}" controls preload="metadata"></audio>', url)
        return format_html('<a href="{}">download</a>', url)

    @admin.display(description="Latest result, as Hive sent it")
    def latest_raw(self, obj: Submission) -> SafeString:
        result = obj.results.order_by("-received_at", "-id").only("raw").first()
        if result is None:
            return mark_safe('<span class="quiet">No result yet.</span>')
        return pretty_json(result.raw)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        submission = Submission.objects.filter(pk=parse_uuid(object_id or "") or None).first()
        extra_context = {**(extra_context or {}), "operations": self._operations_for(request, submission)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _operations_for(self, request, submission: Submission | None) -> list[tuple[str, str]]:
        """The one-click fixes that apply to this submission now."""
        if submission is None or not self.has_operate_permission(request):
            return []
        choices = []
        if submission.status == Status.FAILED:
            choices.append(("retry", "Retry"))
        if submission.status in (Status.QUEUED, Status.AWAITING_CALLBACK, Status.FAILED) or (
                submission.status == Status.PROCESSING
                and (submission.lease_until is None or submission.lease_until < timezone.now())):
            choices.append(("redispatch", "Re-dispatch"))
        if submission.status == Status.COMPLETED and submission.decision in (
                Decision.APPROVED, Decision.REJECTED, None):
            choices.append(("review", "Send to review"))
        return choices

    # --- Actions --------------------------------------------------------------------------

    @admin.action(description="Retry the selected failed submissions", permissions=["operate"])
    def retry_failed(self, request, queryset) -> None:
        outcome = operations.retry_failed(queryset, user=request.user)
        report(request, len(outcome.done), len(outcome.skipped), "Queued again", "only failed ones are retried")

    @admin.action(description="Re-dispatch the selected submissions to Hive", permissions=["operate"])
    def redispatch(self, request, queryset) -> None:
        outcome = operations.redispatch(queryset, user=request.user)
        report(request, len(outcome.done), len(outcome.skipped), "Re-dispatched",
               "completed ones, and ones a worker is calling Hive for right now, are not re-dispatched")

    @admin.action(description="Send the selected submissions to human review", permissions=["operate"])
    def send_to_review(self, request, queryset) -> None:
        outcome = operations.send_to_review(queryset, user=request.user)
        report(request, len(outcome.done), len(outcome.skipped), "Sent to review",
               "only completed, decided submissions can be sent to review")

    @admin.action(description="Export the selected submissions as CSV", permissions=["view"])
    def export_csv(self, request, queryset) -> StreamingHttpResponse:
        if request.POST.get("select_across") == "1":
            description = f"all matching ?{request.GET.urlencode()}"
        else:
            description = f"{len(request.POST.getlist(ACTION_CHECKBOX_NAME))} selected"
        rows = operations.export_rows(queryset, user=request.user, description=description)
        writer = csv.writer(_Echo())
        response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="submissions-{stamp}.csv"'
        return response

    # --- Extra URLs: the media file and the one-click fixes ------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/media/", wrap(self.media_view), name="moderation_submission_media"),
            path("<path:object_id>/operate/<str:operation>/", wrap(self.operate_view),
                 name="moderation_submission_operate"),
            *super().get_urls(),
        ]

    def media_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        """Stream the stored file to staff who may view submissions; never
        let the browser render anything but plain media."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        submission = get_object_or_404(Submission, pk=parse_uuid(object_id) or None)
        if not submission.media:
            raise Http404("This submission has no stored media.")
        try:
            handle = submission.media.open("rb")
        except FileNotFoundError:
            raise Http404("The stored media file is missing.") from None
        mime = submission.media_mime or "application/octet-stream"
        inline = mime.startswith(INLINE_MIME_PREFIXES)
        response = FileResponse(handle, content_type=mime if inline else "application/octet-stream",
                                as_attachment=not inline, filename=submission.media.name.rsplit("/", 1)[-1])
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=300"
        return response

    OPERATIONS = {
        "retry": (operations.retry_failed, "Queued again", "only a failed submission is retried"),
        "redispatch": (operations.redispatch, "Re-dispatched", "it is completed, or a worker is calling Hive now"),
        "review": (operations.send_to_review, "Sent to review", "only a completed, decided submission can be"),
    }

    def operate_view(self, request: HttpRequest, object_id: str, operation: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_operate_permission(request):
            raise PermissionDenied
        if operation not in self.OPERATIONS:
            raise Http404("No such operation.")
        submission = get_object_or_404(Submission, pk=parse_uuid(object_id) or None)
        run, verb, why = self.OPERATIONS[operation]
        outcome = run([submission.pk], user=request.user)
        if outcome.done:
            messages.success(request, f"{verb}: {submission.pk}.")
        else:
            messages.warning(request, f"Nothing done: {why}.")
        return HttpResponseRedirect(reverse("admin:moderation_submission_change", args=[submission.pk]))


def media_url(submission: Submission) -> str:
    return reverse("admin:moderation_submission_media", args=[submission.pk])


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a
    streaming response."""

    def write(self, value: str) -> str:
        return value
