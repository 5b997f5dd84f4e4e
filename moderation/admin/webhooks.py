"""Admin for partner webhook endpoints, their messages and the delivery log.

A signing secret is shown once, in a message, when an endpoint is created or its
secret rotated; it is never rendered in a form. Message and delivery tables grow
large: no full count, related rows in the same query, raw id widgets.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

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
        text = "Hidden. Use the “Rotate secret” action for a new one (shown once)."
        if len(webhooks.signing_secrets(endpoint)) > 1:
            text += f" The previous secret also signs until {endpoint.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC."
        return text

    @admin.display(description="messages")
    def message_log(self, endpoint: WebhookEndpoint) -> str:
        if not endpoint.pk:
            return "-"
        url = reverse("admin:moderation_webhookmessage_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">Messages and their deliveries</a>', url)

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            obj.secret = webhooks.new_secret()
        elif "is_active" in form.changed_data and obj.is_active:
            obj.failing_since = None  # re-enabled: start counting failures afresh
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)
        audit.record("webhook.endpoint_created" if not change else "webhook.endpoint_changed",
                     actor=Actor.OPERATOR, user=request.user, partner=obj.partner, endpoint=str(obj.pk),
                     url=obj.url, fields=form.changed_data)
        if not change:
            self._show_secret(request, obj, obj.secret)

    @admin.action(description="Rotate secret (the new one is shown once; the old one signs for 24 h)")
    def rotate_secrets(self, request, queryset: QuerySet) -> None:
        for endpoint in queryset.select_related("partner"):
            secret = webhooks.rotate_secret(endpoint, actor=Actor.OPERATOR, user=request.user)
            self._show_secret(request, endpoint, secret)

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

    def _show_secret(self, request, endpoint: WebhookEndpoint, secret: str) -> None:
        self.message_user(request, f"Signing secret for {endpoint.url}: {secret} (copy it now: it will not "
                                   f"be shown again).", messages.WARNING)


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
