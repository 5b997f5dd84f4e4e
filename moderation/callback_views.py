"""Hive's callback endpoint: authenticate, store the receipt, answer fast."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from moderation.services import callbacks

# Results for long videos are large (a frame a second); far above JSON API bodies.
MAX_CALLBACK_BYTES = 64 * 1024 * 1024


@csrf_exempt
@require_POST
def hive_callback(request, submission_id: str, token: str):
    # Only a URL we issued may send a big body; from anyone else the receipt
    # log keeps an excerpt, so reading more would be work for nothing.
    if callbacks.token_valid(submission_id, token):
        body = request.read(MAX_CALLBACK_BYTES + 1)  # the stream: DATA_UPLOAD_MAX_MEMORY_SIZE is for forms
    else:
        body = request.read(callbacks.REFUSED_BODY_KEPT)
    if len(body) > MAX_CALLBACK_BYTES:
        return JsonResponse({"detail": "Callback body too large."}, status=413)
    try:
        callbacks.receive(submission_id, token, body, request.META)
    except callbacks.Refused as refused:
        return JsonResponse({"detail": f"Not authentic: {refused}."}, status=403)
    return JsonResponse({"received": True})
