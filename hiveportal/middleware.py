"""Checks on a request that come before any view reads it."""

from __future__ import annotations

from django.http import JsonResponse

NO_LENGTH = "Send a Content-Length: chunked request bodies are not supported."


class RequireContentLengthMiddleware:
    """`411 Length Required` for a body sent without a Content-Length
    (`Transfer-Encoding: chunked`).

    Under WSGI, Django reads CONTENT_LENGTH bytes of a body, and none without
    it; gunicorn passes a chunked body on with no CONTENT_LENGTH. The view saw
    an empty request, and a partner who had sent a file was told to send one.
    Every path, not only the API's: any view would be handed the same empty
    body, and browsers always send a Content-Length."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.META.get("HTTP_TRANSFER_ENCODING") and not request.META.get("CONTENT_LENGTH"):
            return JsonResponse({"detail": NO_LENGTH}, status=411)
        return self.get_response(request)
