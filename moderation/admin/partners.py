"""Partners and their API keys: a new key is shown once, on the page that
issued it, and never again (it is stored only as a digest). One issue form
issues one key at most, so reloading that page cannot issue another."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from moderation.admin.core import admin_link, object_page, show_once
from moderation.models import ApiKey, Partner, Submission
from moderation.services import keys, operations

STALE_FORM = "This form is out of date: open “Issue new key” again."


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
    # The new key's public prefix (as keys.new_prefix makes them), chosen when
    # the form is opened. Prefixes are unique, so the same form resubmitted (a
    # reload of the page that showed the key, or Back and Issue again) cannot
    # issue a second key that nobody has.
    prefix = forms.RegexField(r"\A[0-9a-f]{12}\Z", widget=forms.HiddenInput, initial=keys.new_prefix,
                              error_messages={"required": STALE_FORM, "invalid": STALE_FORM})


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
        # To the issue form, which a reload cannot resubmit into a second key.
        return HttpResponseRedirect(reverse("admin:moderation_partner_issue_key", args=[partners[0].pk]))

    def get_urls(self):
        view = self.admin_site.admin_view(self.issue_key_view)
        return [path("<int:object_id>/issue-key/", view, name="moderation_partner_issue_key"),
                *super().get_urls()]

    def issue_key_view(self, request: HttpRequest, object_id: int):
        partner = get_object_or_404(Partner, pk=object_id)
        if not self.has_change_permission(request, partner):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        form = IssueKeyForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            return self._issue(request, partner, form.cleaned_data["name"], form.cleaned_data["prefix"])
        return object_page(
            request, self, partner, "admin/moderation/secret_form.html", "Issue new key", form=form,
            submit_label="Issue key", intro="The new key is shown once, on the next page. Only its digest is "
                                            "stored: if it is lost, issue another and revoke this one.")

    def _issue(self, request: HttpRequest, partner: Partner, name: str, prefix: str):
        try:
            issued = operations.issue_partner_key(partner, name, prefix=prefix, user=request.user)
        except keys.PrefixTaken:
            messages.warning(request, f"This form was already used: key hp_{prefix}_… was issued (revoke it if "
                                      f"nobody copied it). Issue another from the partner page if you need one.")
            return HttpResponseRedirect(reverse("admin:moderation_partner_change", args=[partner.pk]))
        named = format_html(" “{}”", issued.api_key.name) if issued.api_key.name else ""
        return show_once(
            request, self, partner, what="API key", secret=issued.plaintext,
            lead=format_html("New API key{} for <strong>{}</strong>:", named, partner),
            usage=format_html("The partner sends it as <code>Authorization: Token &lt;key&gt;</code>. It is listed "
                              "as <code>hp_{}_…</code>.", issued.api_key.prefix))


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
