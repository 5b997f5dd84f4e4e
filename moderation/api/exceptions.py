"""Every API error is JSON that names the field and the reason."""

from __future__ import annotations

import logging
import math

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views import defaults
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


class UnsupportedMediaKind(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_media"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class BackendUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = ("The portal cannot reach its database or queue right now; this request was not "
                      "completed. Try again in a moment.")
    default_code = "unavailable"


# The database or Redis is unreachable (or SQLite stayed locked): the request's
# transaction rolled back, so the client may simply try again.
UNAVAILABLE = (OperationalError, InterfaceError, RedisError)
RETRY_AFTER_UNAVAILABLE = 30
logger = logging.getLogger("moderation.api")


# How much of a refused Content-Type the 415 quotes back: DRF quotes it whole,
# and a client may send 64 KB of it.
MAX_QUOTED_MEDIA_TYPE = 100


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge({"body": [str(exc) or "Request body too large."]})
    if isinstance(exc, UNAVAILABLE):
        logger.error("API request failed: a backend is unavailable", exc_info=exc)
        response = drf_exception_handler(BackendUnavailable(), context)
        response["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
        return response
    if isinstance(exc, exceptions.UnsupportedMediaType) and "request" in context:
        media_type = context["request"].content_type or ""
        if len(media_type) > MAX_QUOTED_MEDIA_TYPE:
            exc = exceptions.UnsupportedMediaType(media_type[:MAX_QUOTED_MEDIA_TYPE] + "...")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    if not isinstance(response.data, dict):
        response.data = {"detail": response.data}
    return response


def field_error(field: str, message: str, status_code: int = 400) -> Response:
    return Response({field: [message]}, status=status_code)


def page_not_found(request, exception):
    """handler404: a path under /api/ that matches no route (a slug with a
    character a slug cannot have, an id that is not a UUID) answers JSON like
    every other API error; the portal keeps its HTML page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: what escapes DRF's handler (middleware, a failure before the
    view) is JSON under /api/ and on Hive's callback path, never an HTML page."""
    if request.path.startswith(("/api/", "/hive/")):
        return JsonResponse({"detail": "Internal error; it is logged for the operators. Try again later."},
                            status=500)
    return defaults.server_error(request)
