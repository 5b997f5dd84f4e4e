"""Partners and their API keys: a new key is shown once, on the page that
issued it, and never again (it is stored only as a digest)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers

from moderation.admin.core import admin_link
from moderation.models import ApiKey, Partner, Submission
from moderation.services import operations


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["key", "name", "created_at", "last_used_at", "state"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # issued with "Issue new key", which shows it once

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Key")
    def key(self, obj: ApiKey):
        return admin_link(obj, f"hp_{obj.prefix}_…")

    @admin.display(description="State")
    def state(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}"


class IssueKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False,
                           help_text="What the key is for, e.g. \"production uploader\".")


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    change_form_template = "admin/moderation/partner/change_form.html"
    list_display = ["name", "is_active", "active_keys", "last_key_use", "created_at"]
    list_filter = ["is_active"]
    filter_horizontal = ["projects"]
    inlines = [ApiKeyInline]
    search_fields = ["name"]
    actions = ["issue_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)),
            _last_key_use=Max("api_keys__last_used_at"),
        )

    @admin.display(description="Active keys", ordering="_active_keys")
    def active_keys(self, obj: Partner) -> int:
        return obj._active_keys

    @admin.display(description="Key last used", ordering="_last_key_use")
    def last_key_use(self, obj: Partner):
        return obj._last_key_use

    def get_deleted_objects(self, objs, request):
        busy = [p for p in objs if Submission.objects.filter(partner=p).exists()]
        if busy:
            names = ", ".join(p.name for p in busy)
            return [], {}, set(), [f"{names}: has submissions; deactivate the partner instead of deleting it."]
        return super().get_deleted_objects(objs, request)

    # --- Issuing keys ------------------------------------------------------------------

    @admin.action(description="Issue a new API key (one partner)", permissions=["change"])
    def issue_key(self, request, queryset):
        partners = list(queryset[:2])
        if len(partners) != 1:
            messages.error(request, "Select exactly one partner to issue a key for.")
            return None
        return self._issued(request, partners[0], "")

    def get_urls(self):
        view = self.admin_site.admin_view(self.issue_key_view)
        return [path("<int:object_id>/issue-key/", view, name="moderation_partner_issue_key"),
                *super().get_urls()]

    def issue_key_view(self, request: HttpRequest, object_id: int):
        partner = get_object_or_404(Partner, pk=object_id)
        if not self.has_change_permission(request, partner):
            raise PermissionDenied
        if request.method == "POST":
            form = IssueKeyForm(request.POST)
            if form.is_valid():
                return self._issued(request, partner, form.cleaned_data["name"])
        elif request.method == "GET":
            form = IssueKeyForm()
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        context = {**self.admin_site.each_context(request), "opts": self.opts, "partner": partner, "form": form,
                   "title": f"Issue a new API key for {partner}"}
        return TemplateResponse(request, "admin/moderation/partner/issue_key.html", context)

    def _issued(self, request: HttpRequest, partner: Partner, name: str):
        """Show the plaintext on this response only: it goes into no message
        cookie, no session and no log, and the page is never cached."""
        issued = operations.issue_partner_key(partner, name, user=request.user)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "partner": partner,
                   "issued": issued, "title": f"New API key for {partner}"}
        response = TemplateResponse(request, "admin/moderation/partner/key_issued.html", context)
        add_never_cache_headers(response)
        return response


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    change_form_template = "admin/moderation/apikey/change_form.html"
    list_display = ["__str__", "partner", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "partner"]
    list_select_related = ["partner"]
    search_fields = ["prefix", "name", "partner__name"]
    fields = ["partner", "prefix", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # issued from the partner page, shown once

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # nothing to edit; revoking has its own permission check

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked keys stay, so their use stays explained

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("moderation.change_apikey")

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke(self, request, queryset) -> None:
        revoked = sum(operations.revoke_partner_key(key, user=request.user)
                      for key in queryset.select_related("partner"))
        messages.success(request, f"Revoked {revoked} key{'s' if revoked != 1 else ''}.")

    def get_urls(self):
        view = self.admin_site.admin_view(self.revoke_view)
        return [path("<int:object_id>/revoke/", view, name="moderation_apikey_revoke"), *super().get_urls()]

    def revoke_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        key = get_object_or_404(ApiKey.objects.select_related("partner"), pk=object_id)
        if operations.revoke_partner_key(key, user=request.user):
            messages.success(request, f"Revoked {key}.")
        else:
            messages.info(request, f"{key} was already revoked.")
        return HttpResponseRedirect(reverse("admin:moderation_apikey_change", args=[key.pk]))
