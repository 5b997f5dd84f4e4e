"""Admin for partner webhook endpoints, their messages and the delivery log.

A signing secret is shown once, on a page of its own (never in a message: the
messages cookie is readable), when an endpoint is created or its secret
rotated; it is never rendered in a form. Each form that makes a secret makes
one at most, so reloading the page that showed it makes no other. Message and
delivery tables grow large: no full count, related rows in the same query, raw
id widgets.
"""

from __future__ import annotations

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.html import format_html

from moderation.admin.core import object_page, parse_uuid, show_once
from moderation.admin.paginator import BigTableAdmin
from moderation.models import Actor, WebhookDelivery, WebhookEndpoint, WebhookMessage
from moderation.services import audit, webhooks


class EndpointForm(forms.ModelForm):
    url = forms.CharField(max_length=webhooks.MAX_URL_LENGTH, help_text="http(s); checked like the API does.")
    events = forms.MultipleChoiceField(choices=[(e, e) for e in webhooks.EVENTS],
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["partner", "url", "events", "is_active", "disabled_reason"]

    def clean_url(self) -> str:
        try:
            return webhooks.clean_url(self.cleaned_data.get("url"))
        except webhooks.InvalidEndpoint as error:
            raise forms.ValidationError(error.message) from None

    def clean_events(self) -> list[str]:
        try:
            return webhooks.clean_events(list(self.cleaned_data.get("events") or []))
        except webhooks.InvalidEndpoint as error:
            raise forms.ValidationError(error.message) from None


class AddEndpointForm(EndpointForm):
    # The new endpoint's id, chosen when the form is opened: the same form
    # resubmitted (a reload of the page that showed the secret) names an
    # endpoint that exists, and is refused instead of adding a second one.
    new_id = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)


class RotateForm(forms.Form):
    # Which secret the form was opened for (a digest of it, never the secret):
    # once rotated, a resubmitted form names a secret that is gone.
    current = forms.CharField(widget=forms.HiddenInput)


def secret_digest(endpoint: WebhookEndpoint) -> str:
    return salted_hmac("moderation.admin.webhooks.rotate", endpoint.secret).hexdigest()


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "partner", "is_active", "failing_since", "disabled_reason", "event_list", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "partner__name"]
    list_select_related = ["partner"]
    raw_id_fields = ["partner"]
    readonly_fields = ["id", "secret_status", "failing_since", "created_at", "message_log"]
    show_full_result_count = False
    actions = ["rotate_secrets", "enable", "disable"]

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    @admin.display(description="secret")
    def secret_status(self, endpoint: WebhookEndpoint) -> str:
        if not endpoint.pk:
            return "Generated on save and shown once."
        overlap = ""
        if len(webhooks.signing_secrets(endpoint)) > 1:
            overlap = f" The previous secret also signs until {endpoint.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC."
        return format_html('Hidden. <a href="{}">Rotate the secret</a> for a new one (shown once).{}',
                           reverse("admin:moderation_webhookendpoint_rotate", args=[endpoint.pk]), overlap)

    @admin.display(description="messages")
    def message_log(self, endpoint: WebhookEndpoint) -> str:
        if not endpoint.pk:
            return "-"
        url = reverse("admin:moderation_webhookmessage_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">Messages and their deliveries</a>', url)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AddEndpointForm
        return super().get_form(request, obj, change=change, **kwargs)

    def add_view(self, request, form_url="", extra_context=None):
        if request.method == "POST" and self.has_add_permission(request):
            added = WebhookEndpoint.objects.filter(pk=parse_uuid(request.POST.get("new_id", ""))).first()
            if added is not None:
                messages.warning(request, f"This form was already used: the endpoint {added.url} was added then "
                                          f"and its secret shown. Rotate its secret if you need a new one.")
                return HttpResponseRedirect(reverse("admin:moderation_webhookendpoint_change", args=[added.pk]))
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            obj.pk = form.cleaned_data["new_id"]
            obj.secret = webhooks.new_secret()
        elif "is_active" in form.changed_data and obj.is_active:
            obj.failing_since = None  # re-enabled: start counting failures afresh
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)
        audit.record("webhook.endpoint_created" if not change else "webhook.endpoint_changed",
                     actor=Actor.OPERATOR, user=request.user, partner=obj.partner, endpoint=str(obj.pk),
                     url=obj.url, fields=form.changed_data)

    def response_add(self, request, obj: WebhookEndpoint, post_url_continue=None):
        return show_once(request, self, obj, what="signing secret", secret=obj.secret,
                         lead=format_html("Webhook endpoint <strong>{}</strong> was added for {}. Its signing "
                                          "secret:", obj.url, obj.partner))

    # --- Rotating the secret ---------------------------------------------------------

    @admin.action(description="Rotate secret (one endpoint; the new one is shown once, the old one signs for 24 h)",
                  permissions=["change"])
    def rotate_secrets(self, request, queryset: QuerySet):
        endpoints = list(queryset[:2])
        if len(endpoints) != 1:
            messages.error(request, "Select exactly one endpoint to rotate its secret.")
            return None
        # To the rotate form, which a reload cannot resubmit into another rotation.
        return HttpResponseRedirect(reverse("admin:moderation_webhookendpoint_rotate", args=[endpoints[0].pk]))

    def get_urls(self):
        view = self.admin_site.admin_view(self.rotate_view)
        return [path("<uuid:object_id>/rotate-secret/", view, name="moderation_webhookendpoint_rotate"),
                *super().get_urls()]

    def rotate_view(self, request: HttpRequest, object_id: uuid.UUID):
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id)
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        if request.method == "POST":
            return self._rotate(request, endpoint, request.POST.get("current", ""))
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET", "POST"])
        return object_page(
            request, self, endpoint, "admin/moderation/secret_form.html", "Rotate secret",
            form=RotateForm(initial={"current": secret_digest(endpoint)}), submit_label="Rotate secret",
            intro=f"A new signing secret replaces the current one and is shown once, on the next page. For "
                  f"{webhooks.DEFAULT_OVERLAP_HOURS:g} hours messages carry signatures under both, so the partner "
                  f"can switch without missing any.")

    def _rotate(self, request: HttpRequest, endpoint: WebhookEndpoint, opened_for: str):
        with transaction.atomic():  # the row lock makes a double submit rotate once
            endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
            if not constant_time_compare(opened_for, secret_digest(endpoint)):
                messages.warning(request, f"This form was already used: the secret of {endpoint.url} has changed "
                                          f"since the form was opened, so nothing was rotated now. Rotate again if "
                                          f"you need a new one.")
                return HttpResponseRedirect(reverse("admin:moderation_webhookendpoint_change", args=[endpoint.pk]))
            secret = webhooks.rotate_secret(endpoint, actor=Actor.OPERATOR, user=request.user)
        return show_once(request, self, endpoint, what="signing secret", secret=secret,
                         lead=format_html("New signing secret for <strong>{}</strong> ({}):", endpoint.url,
                                          endpoint.partner))

    @admin.action(description="Enable (forget past failures)")
    def enable(self, request, queryset: QuerySet) -> None:
        for endpoint in queryset.select_related("partner"):
            webhooks.update_endpoint(endpoint, active=True, actor=Actor.OPERATOR, user=request.user)
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).")

    @admin.action(description="Disable")
    def disable(self, request, queryset: QuerySet) -> None:
        for endpoint in queryset.select_related("partner"):
            webhooks.update_endpoint(endpoint, active=False, actor=Actor.OPERATOR, user=request.user)
        self.message_user(request, f"Disabled {queryset.count()} endpoint(s).")


def _redeliver(modeladmin: admin.ModelAdmin, request, targets) -> None:
    queued, refused = 0, 0
    for target in targets:
        try:
            webhooks.redeliver(target)
            queued += 1
        except webhooks.EndpointDisabled:
            refused += 1
    modeladmin.message_user(request, f"Queued {queued} redelivery(ies).")
    if refused:
        modeladmin.message_user(request, f"Skipped {refused}: their endpoint is disabled.", messages.WARNING)


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "success", "latency_ms", "error", "response_excerpt", "manual"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookMessage)
class WebhookMessageAdmin(BigTableAdmin):
    list_display = ["id", "endpoint", "event_type", "status", "attempts", "next_attempt_at", "created_at",
                    "delivered_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["=id", "=submission__id"]
    list_select_related = ["endpoint"]
    raw_id_fields = ["endpoint", "event", "submission"]
    readonly_fields = ["id", "endpoint", "event", "submission", "event_type", "status", "attempts", "next_attempt_at",
                       "locked_until", "created_at", "delivered_at", "pretty_body"]
    fields = readonly_fields
    inlines = [DeliveryInline]
    show_full_result_count = False
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="body (as sent)")
    def pretty_body(self, message: WebhookMessage) -> str:
        try:
            text = json.dumps(json.loads(message.event.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = message.event.body
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)

    @admin.action(description="Redeliver (same webhook-id)")
    def redeliver(self, request, queryset: QuerySet) -> None:
        _redeliver(self, request, queryset.select_related("endpoint"))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BigTableAdmin):
    list_display = ["attempted_at", "success", "outcome", "latency_ms", "manual", "message", "endpoint_url"]
    list_filter = ["success", "manual"]
    search_fields = ["=message__id"]
    list_select_related = ["message__endpoint"]
    raw_id_fields = ["message"]
    readonly_fields = ["message", "attempted_at", "status_code", "success", "latency_ms", "error",
                       "response_excerpt", "manual"]
    fields = readonly_fields
    show_full_result_count = False
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="outcome")
    def outcome(self, delivery: WebhookDelivery) -> str:
        text = delivery.error or f"HTTP {delivery.status_code}"
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="endpoint", ordering="message__endpoint__url")
    def endpoint_url(self, delivery: WebhookDelivery) -> str:
        return delivery.message.endpoint.url

    @admin.action(description="Redeliver the message (same webhook-id)")
    def redeliver(self, request, queryset: QuerySet) -> None:
        _redeliver(self, request, queryset.select_related("message__endpoint"))
