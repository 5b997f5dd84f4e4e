"""Plain admin registrations. Secrets are write-only: the Hive key is never
rendered back, partner keys exist only as prefix + digest."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from moderation.models import ApiKey, AuditEvent, CallbackReceipt, Partner, Project, Result, Submission


class ProjectForm(forms.ModelForm):
    hive_api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the current key.",
    )

    class Meta:
        model = Project
        fields = "__all__"

    def clean_hive_api_key(self):
        value = self.cleaned_data.get("hive_api_key", "").strip()
        return value or (self.instance.hive_api_key if self.instance.pk else "")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    list_display = ["slug", "name", "endpoint_type", "review_mode", "delivery", "hive_key_hint", "is_active"]
    list_filter = ["endpoint_type", "review_mode", "delivery", "is_active"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are issued with create_api_key (shown once)


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    filter_horizontal = ["projects"]
    inlines = [ApiKeyInline]
    search_fields = ["name"]


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "partner", "status", "decision", "media_kind", "created_at"]
    list_filter = ["status", "decision", "media_kind", "project"]
    search_fields = ["id", "external_id", "hive_task_id"]
    list_select_related = ["project", "partner"]
    raw_id_fields = ["project", "partner", "decided_by", "claimed_by"]
    show_full_result_count = False


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ["submission", "source", "top_class", "top_score", "received_at"]
    raw_id_fields = ["submission"]
    show_full_result_count = False


@admin.register(CallbackReceipt)
class CallbackReceiptAdmin(admin.ModelAdmin):
    list_display = ["id", "submission_ref", "authentic", "duplicate", "outcome", "received_at"]
    list_filter = ["authentic", "duplicate", "outcome"]
    raw_id_fields = ["submission"]
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "submission", "user", "partner"]
    list_filter = ["actor", "action"]
    raw_id_fields = ["submission", "project", "user", "partner"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
