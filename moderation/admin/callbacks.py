"""The callback log: every POST Hive made to us, verbatim, with what became of
it; a replay for receipts whose processing failed; and, above the log, the
submissions whose callback never came."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from moderation.admin.core import ReadOnlyMixin, pretty_json
from moderation.admin.paginator import BigTableAdmin
from moderation.models import CallbackReceipt, Project, ReceiptOutcome
from moderation.services import operations

# Overdue submissions listed above the log; the rest are one click away.
OVERDUE_SHOWN = 10
# Receipts one replay action handles; a replay runs inline, in the request.
REPLAY_LIMIT = 200
# How a replay's outcome is announced; any other (still pending) is a warning.
REPLAY_LEVELS = {ReceiptOutcome.PROCESSED: messages.SUCCESS, ReceiptOutcome.DUPLICATE: messages.SUCCESS,
                 ReceiptOutcome.ERROR: messages.ERROR, ReceiptOutcome.REJECTED: messages.ERROR}


class ProjectFilter(admin.SimpleListFilter):
    title = "project"
    parameter_name = "project"

    def lookups(self, request, model_admin):
        return [(str(p.pk), p.slug) for p in Project.objects.order_by("slug")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(submission__project_id=self.value())
        return queryset


@admin.register(CallbackReceipt)
class CallbackReceiptAdmin(ReadOnlyMixin, BigTableAdmin):
    change_list_template = "admin/moderation/callbackreceipt/change_list.html"
    change_form_template = "admin/moderation/callbackreceipt/change_form.html"
    list_display = ["id", "received_at", "matched", "project", "authentic", "duplicate", "outcome", "detail",
                    "hive_task_id"]
    list_display_links = ["id", "received_at"]
    list_filter = ["outcome", "authentic", "duplicate", ProjectFilter, ("received_at", admin.DateFieldListFilter)]
    list_select_related = ["submission__project"]
    deferred = ("body",)
    raw_id_fields = ["submission"]
    # Receipts are appended in time order: the id orders them without a sort.
    ordering = ["-id"]
    search_fields = ["submission_ref"]
    search_help_text = "A submission id or a Hive task id (exact)."
    actions = ["replay"]
    fieldsets = [
        (None, {"fields": ["id", "received_at", "processed_at", "matched", "submission_ref", "hive_task_id",
                           "authentic", "duplicate", "outcome", "outcome_detail", "remote_addr", "headers"]}),
        ("Body, as received", {"fields": ["body_pretty"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self.fieldsets for field in options["fields"]]

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("moderation.change_callbackreceipt")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(submission_ref=term) | queryset.filter(hive_task_id=term), False

    @admin.display(description="Submission", ordering="submission_ref")
    def matched(self, obj: CallbackReceipt) -> SafeString:
        if obj.submission_id is None:
            return format_html('<span class="quiet" title="matched no submission">{} ✗</span>',
                               obj.submission_ref[:13])
        return format_html('<a href="{}" title="{}">{}…</a>',
                           reverse("admin:moderation_submission_change", args=[obj.submission_id]),
                           obj.submission_id, str(obj.submission_id)[:8])

    @admin.display(description="Project")
    def project(self, obj: CallbackReceipt) -> str:
        return obj.submission.project.slug if obj.submission_id else ""

    @admin.display(description="Detail")
    def detail(self, obj: CallbackReceipt) -> str:
        text = obj.outcome_detail
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Body")
    def body_pretty(self, obj: CallbackReceipt) -> SafeString:
        return pretty_json(obj.body)

    # --- Overdue callbacks above the log ---------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        overdue = operations.overdue_callbacks().select_related("project").order_by("dispatched_at")
        extra_context = {**(extra_context or {}), "overdue": list(overdue[:OVERDUE_SHOWN + 1]),
                         "overdue_shown": OVERDUE_SHOWN,
                         "overdue_url": reverse("admin:moderation_submission_changelist") + "?callback=overdue"}
        return super().changelist_view(request, extra_context)

    # --- Replay --------------------------------------------------------------------------------

    @admin.action(description="Replay the selected receipts", permissions=["replay"])
    def replay(self, request, queryset) -> None:
        replays = [operations.replay_receipt(pk, user=request.user)
                   for pk in queryset.order_by("pk").values_list("pk", flat=True)[:REPLAY_LIMIT]]
        if len(replays) <= 5:
            for replay in replays:
                self._announce(request, replay)
            return
        done = sum(r.replayed for r in replays)
        messages.info(request, f"Replayed {done} of {len(replays)} receipts; the others were not replayable "
                               f"(not authentic, or already processed).")
        failed = sum(r.replayed and REPLAY_LEVELS.get(r.outcome) != messages.SUCCESS for r in replays)
        if failed:
            messages.error(request, f"{failed} of the replayed receipts did not record a result: see their "
                                    f"outcome in the log.")

    def get_urls(self):
        view = self.admin_site.admin_view(self.replay_view)
        return [path("<int:object_id>/replay/", view, name="moderation_callbackreceipt_replay"),
                *super().get_urls()]

    def replay_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_replay_permission(request):
            raise PermissionDenied
        receipt = get_object_or_404(CallbackReceipt, pk=object_id)
        self._announce(request, operations.replay_receipt(receipt.pk, user=request.user))
        return HttpResponseRedirect(reverse("admin:moderation_callbackreceipt_change", args=[receipt.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        receipt = (CallbackReceipt.objects.defer("body").filter(pk=object_id).first()
                   if str(object_id).isdigit() else None)
        replayable = (receipt is not None and receipt.authentic and receipt.submission_id is not None
                      and receipt.outcome in operations.REPLAYABLE and self.has_replay_permission(request))
        extra_context = {**(extra_context or {}), "replayable": replayable}
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _announce(request: HttpRequest, replay: operations.Replay) -> None:
        if not replay.replayed:
            messages.warning(request, f"Receipt #{replay.receipt_id} not replayed: {replay.detail}.")
            return
        # Replayed is not succeeded: only a recorded (or already recorded) result is.
        level = REPLAY_LEVELS.get(replay.outcome, messages.WARNING)
        messages.add_message(request, level, f"Receipt #{replay.receipt_id} replayed: {replay.outcome} "
                                             f"({replay.detail}).")
