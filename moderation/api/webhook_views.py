"""Partner webhook endpoints: register, list, change, delete, rotate the secret,
read the delivery log and redeliver. Thin: the rules are in services/webhooks.py.

Every queryset starts from the partner's own endpoints; anything else is a 404.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from moderation.api.pagination import TimestampCursorPagination
from moderation.api.parsers import SafeJSONParser
from moderation.api.schema import error
from moderation.models import WebhookDelivery, WebhookEndpoint
from moderation.services import webhooks

TAG = ["webhooks"]


class EndpointSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENTS))

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "active", "disabled_reason", "failing_since",
                  "previous_secret_expires_at", "created_at"]
        read_only_fields = fields


class EndpointCreatedSerializer(EndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="`whsec_...`: shown this once, never again.")

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EndpointCreateSerializer(serializers.Serializer):
    """Documents the request body; validation is in services/webhooks.py."""

    url = serializers.URLField(max_length=webhooks.MAX_URL_LENGTH,
                               help_text="http(s); private, loopback and link-local addresses are refused.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENTS), min_length=1)
    active = serializers.BooleanField(required=False, help_text="`false` registers it switched off (default `true`).")


class EndpointUpdateSerializer(serializers.Serializer):
    url = serializers.URLField(required=False, max_length=webhooks.MAX_URL_LENGTH)
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENTS), required=False)
    active = serializers.BooleanField(required=False, help_text="`true` re-enables a disabled endpoint.")


class RotateSerializer(serializers.Serializer):
    overlap_hours = serializers.FloatField(
        required=False, min_value=0, max_value=webhooks.MAX_OVERLAP_HOURS,
        help_text=f"How long the old secret keeps signing too (default {webhooks.DEFAULT_OVERLAP_HOURS}).",
    )


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="message_id", read_only=True)
    event_type = serializers.CharField(source="message.event_type", read_only=True)
    submission = serializers.UUIDField(source="message.submission_id", read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook_id", "event_type", "submission", "attempted_at", "status_code", "latency_ms",
                  "response_excerpt", "error", "success", "manual"]
        read_only_fields = fields


def partner_endpoints(partner):
    return WebhookEndpoint.objects.filter(partner=partner)


def invalid(error: webhooks.InvalidEndpoint) -> Response:
    return Response({error.field: [error.message]}, status=status.HTTP_400_BAD_REQUEST)


ENDPOINT_FIELDS = frozenset({"url", "events", "active"})
ROTATE_FIELDS = frozenset({"overlap_hours"})


def json_object(request, fields: frozenset) -> dict:
    """The body, a JSON object of some of `fields`. Any other field is a 400
    naming it, as on the submissions endpoint: ignored, a misspelt field left
    the partner believing it had been applied."""
    if not isinstance(request.data, dict):
        raise ParseError("The body must be a JSON object.")
    if unknown := sorted(set(request.data) - fields):
        message = f"Unknown field. Allowed: {', '.join(sorted(fields))}."
        raise ValidationError({name: [message] for name in unknown})
    return request.data


def active_flag(data: dict) -> bool | None:
    active = data.get("active")
    if active is not None and not isinstance(active, bool):
        raise ValidationError({"active": ["Must be true or false."]})
    return active


WEBHOOK_DELIVERY_DOC = """\
The endpoint receives a `POST` for each event it subscribed to:
`submission.completed` (Hive's result is stored), `submission.failed` (Hive could not
score it) and `submission.decided` (approved, rejected or escalated, by the thresholds
or a moderator).

Body (JSON): `{"type": "<event>", "timestamp": "<ISO 8601>", "data": <the submission,
as GET /api/v1/submissions/{id}/ returns it>}`.

Signed per the Standard Webhooks specification:
- `webhook-id`: the message's id, the same on every retry of it (deduplicate on it);
- `webhook-timestamp`: seconds since the epoch when this attempt was sent;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`
  under the bytes of the secret after its `whsec_` prefix is removed and the rest
  base64-decoded. During a secret rotation's overlap it lists one signature per
  secret, separated by spaces.

Answer with any 2xx within 15 seconds. Anything else is retried with backoff (the endpoint's
`Retry-After` is honoured); every attempt is listed under `.../deliveries/`. The
`secret` is in this response only: store it now.
"""


class EndpointList(APIView):
    # JSON only: `events` is a list, which a form cannot carry.
    parser_classes = [SafeJSONParser]

    @extend_schema(tags=TAG, responses=EndpointSerializer(many=True), summary="List your webhook endpoints")
    def get(self, request):
        return Response(EndpointSerializer(partner_endpoints(request.user), many=True).data)

    @extend_schema(
        tags=TAG, request=EndpointCreateSerializer, summary="Register a webhook endpoint",
        description=WEBHOOK_DELIVERY_DOC,
        responses={201: EndpointCreatedSerializer,
                   400: error("Invalid or unknown field (named in the body), or the most endpoints a "
                              "partner may have"),
                   415: error("The body is not JSON")},
    )
    def post(self, request):
        data = json_object(request, ENDPOINT_FIELDS)
        active = active_flag(data)
        try:
            endpoint = webhooks.create_endpoint(request.user, data.get("url"), data.get("events"),
                                                active=active is not False)
        except webhooks.InvalidEndpoint as error:
            return invalid(error)
        response = Response(EndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"  # the secret is in it
        return response


class EndpointDetail(APIView):
    parser_classes = [SafeJSONParser]  # as EndpointList

    @extend_schema(tags=TAG, responses={200: EndpointSerializer, 404: error("Not yours")})
    def get(self, request, pk):
        return Response(EndpointSerializer(get_object_or_404(partner_endpoints(request.user), pk=pk)).data)

    @extend_schema(tags=TAG, request=EndpointUpdateSerializer, summary="Change or re-enable an endpoint",
                   responses={200: EndpointSerializer, 400: error("Invalid or unknown field"),
                              404: error("Not yours"), 415: error("The body is not JSON")})
    def patch(self, request, pk):
        endpoint = get_object_or_404(partner_endpoints(request.user), pk=pk)
        data = json_object(request, ENDPOINT_FIELDS)
        active = active_flag(data)
        try:
            webhooks.update_endpoint(endpoint, url=data.get("url"), events=data.get("events"), active=active)
        except webhooks.InvalidEndpoint as error:
            return invalid(error)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(tags=TAG, summary="Delete an endpoint (and its delivery log)",
                   responses={204: None, 404: error("Not yours")})
    def delete(self, request, pk):
        webhooks.delete_endpoint(get_object_or_404(partner_endpoints(request.user), pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecret(APIView):
    @extend_schema(
        tags=TAG, request=RotateSerializer, summary="Rotate the signing secret",
        description="Returns the new secret once. Until `previous_secret_expires_at`, every message is signed "
                    "with both secrets (`webhook-signature: v1,<new> v1,<old>`).",
        responses={
            200: inline_serializer("RotatedSecret", {
                "secret": serializers.CharField(),
                "previous_secret_expires_at": serializers.DateTimeField(allow_null=True),
            }),
            400: error("Invalid `overlap_hours`, or an unknown field"),
            404: error("Not yours"),
        },
    )
    def post(self, request, pk):
        endpoint = get_object_or_404(partner_endpoints(request.user), pk=pk)
        form = RotateSerializer(data=json_object(request, ROTATE_FIELDS))
        form.is_valid(raise_exception=True)
        overlap = form.validated_data.get("overlap_hours", webhooks.DEFAULT_OVERLAP_HOURS)
        secret = webhooks.rotate_secret(endpoint, overlap)
        expires = EndpointSerializer(endpoint).data["previous_secret_expires_at"]
        response = Response({"secret": secret, "previous_secret_expires_at": expires})
        response["Cache-Control"] = "no-store"
        return response


class DeliveryCursor(TimestampCursorPagination):
    ordering = ("-attempted_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class DeliveryList(generics.ListAPIView):
    serializer_class = DeliverySerializer
    pagination_class = DeliveryCursor
    filter_backends: list = []

    @extend_schema(tags=TAG, summary="The endpoint's delivery log, newest first", responses={
        200: DeliverySerializer(many=True), 400: error("Invalid `webhook_id`, `success` or `page_size`"),
        404: error("Not yours, or an invalid cursor"),
    }, parameters=[
        OpenApiParameter("webhook_id", str, description="Only the attempts of this message (`webhook-id`)."),
        OpenApiParameter("success", bool, description="Only successful (true) or failed (false) attempts."),
    ])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        endpoint = get_object_or_404(partner_endpoints(self.request.user), pk=self.kwargs["pk"])
        deliveries = (WebhookDelivery.objects.filter(message__endpoint=endpoint)
                      .select_related("message"))
        if webhook_id := self.request.query_params.get("webhook_id"):
            if "\x00" in webhook_id:  # PostgreSQL compares no text holding a NUL
                raise ValidationError({"webhook_id": ["Must not contain the NUL character (\\u0000)."]})
            deliveries = deliveries.filter(message_id=webhook_id)
        if success := self.request.query_params.get("success"):  # empty is no filter, as with django-filter
            if success not in ("true", "false"):
                raise ValidationError({"success": ["Must be true or false."]})
            deliveries = deliveries.filter(success=success == "true")
        return deliveries


class Redeliver(APIView):
    @extend_schema(
        tags=TAG, request=None, summary="Send a message again",
        description="Queues one more attempt of the delivery's message, with the same `webhook-id`.",
        responses={202: inline_serializer("Redelivery", {"webhook_id": serializers.CharField(),
                                                         "queued": serializers.BooleanField()}),
                   404: error("Not yours"),
                   409: error("The endpoint is disabled")},
    )
    def post(self, request, pk, delivery_id: int):
        endpoint = get_object_or_404(partner_endpoints(request.user), pk=pk)
        delivery = get_object_or_404(WebhookDelivery.objects.select_related("message__endpoint"),
                                     pk=delivery_id, message__endpoint=endpoint)
        try:
            webhook_id = webhooks.redeliver(delivery)
        except webhooks.EndpointDisabled as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response({"webhook_id": webhook_id, "queued": True}, status=status.HTTP_202_ACCEPTED)
