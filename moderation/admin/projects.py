"""Projects: the Hive key is write-only, settings are validated, and one
click tests the connection to Hive."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from moderation.models import Project, Submission
from moderation.services import operations

THRESHOLDS_HELP = ('Per class: {"general_nsfw": {"review": 0.5, "reject": 0.9}}. Scores at or above "reject" '
                   'are rejected, at or above "review" go to human review; each bound is between 0 and 1.')
TEXT_LIMIT_MAX = 100_000


class ReasonsField(forms.CharField):
    """Reject reasons as one per line, stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 5})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class WriteOnlyField(forms.CharField):
    """A secret typed in, never shown back: blank means "keep the current
    one", so only a typed value counts as a change (and is logged as one)."""

    def has_changed(self, initial, data) -> bool:
        return bool(data) and data != initial


class PrettyJSONField(forms.JSONField):
    """Thresholds shown one class per line, so a change is easy to read."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class ProjectForm(forms.ModelForm):
    hive_api_key = WriteOnlyField(
        label="Hive API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    reject_reasons = ReasonsField(required=False, help_text="One reason per line; moderators pick one.")
    thresholds = PrettyJSONField(required=False, help_text=THRESHOLDS_HELP,
                                 widget=forms.Textarea(attrs={"rows": 8, "cols": 60}))

    class Meta:
        model = Project
        fields = [
            "slug", "name", "endpoint_type", "review_mode", "delivery", "hive_api_key", "is_active",
            "thresholds", "reject_reasons", "review_sla_minutes", "callback_deadline_minutes", "url_mirror",
            "text_limit", "inflight_limit", "reviewers",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.hive_key_hint if self.instance.pk else "(not set)"
        self.fields["hive_api_key"].help_text = (
            f"Write-only (current: {current}). Type a new key to replace it; leave blank to keep it.")

    def clean_hive_api_key(self) -> str:
        value = self.cleaned_data.get("hive_api_key", "")
        if value and any(c.isspace() for c in value):
            raise forms.ValidationError("A Hive API key has no spaces.")
        return value or (self.instance.hive_api_key if self.instance.pk else "")

    def clean_thresholds(self) -> dict:
        value = self.cleaned_data.get("thresholds")
        return {} if value is None else value

    def clean_text_limit(self) -> int:
        value = self.cleaned_data["text_limit"]
        if not 1 <= value <= TEXT_LIMIT_MAX:
            raise forms.ValidationError(f"Between 1 and {TEXT_LIMIT_MAX:,} characters.")
        return value

    def clean_review_sla_minutes(self) -> int:
        value = self.cleaned_data["review_sla_minutes"]
        if value < 1:
            raise forms.ValidationError("At least one minute.")
        return value

    def clean_callback_deadline_minutes(self) -> int:
        value = self.cleaned_data["callback_deadline_minutes"]
        if value < 1:
            raise forms.ValidationError("At least one minute.")
        return value

    def clean_inflight_limit(self) -> int | None:
        value = self.cleaned_data.get("inflight_limit")
        if value is not None and value < 1:
            raise forms.ValidationError("At least 1, or blank for the default.")
        return value


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    change_form_template = "admin/moderation/project/change_form.html"
    list_display = ["slug", "name", "endpoint_type", "review_mode", "delivery", "hive_key_hint", "circuit",
                    "is_active"]
    list_filter = ["endpoint_type", "review_mode", "delivery", "is_active"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["reviewers"]
    readonly_fields = ["circuit"]
    actions = ["test_connection"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "endpoint_type", "review_mode", "delivery", "is_active"]}),
        ("Hive", {"fields": ["hive_api_key", "circuit", "inflight_limit", "url_mirror", "text_limit",
                             "callback_deadline_minutes"]}),
        ("Routing and review", {"fields": ["thresholds", "reject_reasons", "review_sla_minutes", "reviewers"]}),
    ]

    @admin.display(description="Hive calls")
    def circuit(self, obj: Project) -> str:
        if obj.hive_paused_until:
            return (f"paused until {obj.hive_paused_until:%Y-%m-%d %H:%M:%S} "
                    f"after {obj.hive_consecutive_failures} failures")
        return "normal"

    def save_model(self, request, obj: Project, form, change) -> None:
        replaced = "hive_api_key" in form.changed_data
        super().save_model(request, obj, form, change)
        if replaced:
            operations.hive_key_set(obj, user=request.user)

    def get_deleted_objects(self, objs, request):
        """A project with submissions cannot be deleted (they are protected);
        say so without listing what may be millions of rows."""
        busy = [p for p in objs if Submission.objects.filter(project=p).exists()]
        if busy:
            names = ", ".join(p.slug for p in busy)
            return [], {}, set(), [f"{names}: has submissions; deactivate the project instead of deleting it."]
        return super().get_deleted_objects(objs, request)

    # --- Test connection -------------------------------------------------------------

    @admin.action(description="Test the connection to Hive", permissions=["change"])
    def test_connection(self, request, queryset) -> None:
        for project in queryset:
            self._announce(request, project, operations.test_connection(project, user=request.user))

    def get_urls(self):
        view = self.admin_site.admin_view(self.test_connection_view)
        return [path("<int:object_id>/test-connection/", view, name="moderation_project_test_connection"),
                *super().get_urls()]

    def test_connection_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        project = get_object_or_404(Project, pk=object_id)
        if not self.has_change_permission(request, project):
            raise PermissionDenied
        self._announce(request, project, operations.test_connection(project, user=request.user))
        return HttpResponseRedirect(reverse("admin:moderation_project_change", args=[project.pk]))

    @staticmethod
    def _announce(request: HttpRequest, project: Project, check: operations.ConnectionCheck) -> None:
        level = messages.SUCCESS if check.ok else messages.ERROR
        messages.add_message(request, level, f"{project.slug}: {check.message}")
