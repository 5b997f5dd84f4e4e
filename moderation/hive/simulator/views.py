"""HTTP face of the simulator: Hive's v2 task API plus `control` and `stats`.

Plain Django views (not DRF): Hive is not a REST framework app, and the simulator
must answer in Hive's shapes, not DRF's. Scoring lives in `engine`, run-time
state and callbacks in `state`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from moderation.hive.rules import CONTENT_FIELDS, ENDPOINT_RULES, MEDIA_FIELD, TEXT, TEXT_FIELD, URL_FIELD

from . import engine, state
from .engine import Content, SimError, Submission

# Bytes kept from the start (for sniffing; filetype reads 262) and from the end
# (for spotting a truncated file) of an upload that is otherwise only hashed.
_HEAD_BYTES = 262
_TAIL_BYTES = 16
_CHUNK = 64 * 1024

_STATUS_MESSAGES = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Forbidden",
    405: "Insufficient balance",
    429: "Project has been rate limited",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


def hive_error(status: int, message: str | None = None) -> JsonResponse:
    message = message or _STATUS_MESSAGES.get(status, "Request failed")
    response = JsonResponse(engine.error_body(status, message), status=status)
    if status == 429:
        response["Retry-After"] = "1"
    return response


@csrf_exempt
def task_sync(request: HttpRequest) -> JsonResponse:
    return _task(request, "sync")


@csrf_exempt
def task_async(request: HttpRequest) -> JsonResponse:
    return _task(request, "async")


def _task(request: HttpRequest, mode: str) -> JsonResponse:
    if request.method != "POST":
        return hive_error(405, "Method not allowed: task endpoints take POST")
    started = time.monotonic()
    state.count_call(mode)
    latency = state.control()["latency_ms"] / 1000
    response, callbacks = _answer(request, mode)
    # Hive answers `latency_ms` after the call arrives: the simulator's own work
    # (parsing, building the result) is part of that time, not added to it.
    time.sleep(max(0.0, started + latency - time.monotonic()))
    if callbacks:
        state.send_callbacks(*callbacks)  # after the ack is due, as before
    return response


def _answer(request: HttpRequest, mode: str) -> tuple[JsonResponse, tuple | None]:
    """The response, and for an accepted async task (callback URL, bodies) to send."""
    injected = state.injected_error()
    if injected:
        return hive_error(injected), None
    try:
        sub = _read_submission(request, mode)
    except SimError as exc:
        state.count_rejected()
        return hive_error(exc.status, exc.message), None
    result = engine.build_result(sub, str(uuid.uuid4()), timezone.now())
    if mode == "sync":
        return JsonResponse(result), None
    bodies = [result]
    if sub.project.review and engine.succeeded(result):
        bodies.append(engine.with_review(sub, result, timezone.now()))
    return JsonResponse(engine.async_ack(result)), (sub.callback_url, bodies)


def _read_submission(request: HttpRequest, mode: str) -> Submission:
    """Validate the call as Hive would and reduce it to a `Submission`."""
    project = engine.project_for_key(request.headers.get("Authorization", ""))
    if mode == "sync" and project.review:
        raise SimError(400, "This project uses manual review, which is async only: use /api/v2/task/async")
    form, files = _form(request)
    callback_url = form.get("callback_url") or None
    if mode == "async":
        _check_callback_url(callback_url)
    return Submission(
        project=project,
        content=_content(form, files, project.endpoint_type),
        metadata=form.get("metadata"),
        callback_url=callback_url,
        options=engine.parse_options(form.get("options")),
    )


def _form(request: HttpRequest) -> tuple[Any, Any]:
    """The form fields and files; a body Django cannot parse is the caller's fault."""
    try:
        return request.POST, request.FILES
    except RequestDataTooBig:
        raise SimError(413, "Request fields too large") from None
    except (TooManyFieldsSent, MultiPartParserError, SuspiciousOperation) as exc:
        raise SimError(400, f"Malformed form data: {exc}") from None


def _check_callback_url(url: str | None) -> None:
    if not url:
        raise SimError(400, "callback_url is required for async tasks")
    if not url.startswith(("http://", "https://")):
        raise SimError(400, "callback_url must be an http(s) URL")


def _content(form: Any, files: Any, endpoint_type: str) -> Content:
    present = [name for name in CONTENT_FIELDS if name in files or form.get(name)]
    if len(present) != 1:
        raise SimError(400, "Exactly one of media, url or text_data is required")
    name = present[0]
    rule = ENDPOINT_RULES[endpoint_type]
    if not rule.accepts_field(name):
        accepted = " or ".join(rule.fields)
        raise SimError(400, f"{name} is not accepted by {endpoint_type} projects: send {accepted}")
    if name == MEDIA_FIELD:
        if MEDIA_FIELD not in files:
            raise SimError(400, "media must be a file upload (multipart/form-data)")
        return _media_content(files[MEDIA_FIELD])
    if name == URL_FIELD:
        return _url_content(form[URL_FIELD], endpoint_type)
    return _text_content(form[TEXT_FIELD])


def _media_content(upload: UploadedFile) -> Content:
    """Hash the upload chunk by chunk: a large video never sits whole in memory."""
    digest = hashlib.sha256()
    head, tail, size = b"", b"", 0
    for chunk in upload.chunks(_CHUNK):
        if len(head) < _HEAD_BYTES:
            head += chunk[: _HEAD_BYTES - len(head)]
        tail = (tail + chunk[-_TAIL_BYTES:])[-_TAIL_BYTES:]
        digest.update(chunk)
        size += len(chunk)
    if size == 0:
        raise SimError(400, "media is empty")
    kind, mime = engine.sniff(head)
    return Content(
        field=MEDIA_FIELD,
        digest=digest.hexdigest(),
        kind=kind,
        mimetype=mime,
        size=size,
        filename=upload.name or "",
        corrupt=engine.looks_truncated(mime, tail),
    )


def _url_content(url: str, endpoint_type: str) -> Content:
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise SimError(400, "url must be an http(s) URL")
    kind, mime = engine.kind_from_url(url, endpoint_type)
    digest = hashlib.sha256(url.encode()).hexdigest()
    return Content(field=URL_FIELD, digest=digest, kind=kind, mimetype=mime, value=url)


def _text_content(text: str) -> Content:
    limit = state.control()["text_limit"]
    if len(text) > limit:
        raise SimError(400, f"text_data is {len(text)} characters long; the limit is {limit}")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Content(field=TEXT_FIELD, digest=digest, kind=TEXT, size=len(text), value=text)


@csrf_exempt
def control(request: HttpRequest) -> JsonResponse:
    """GET shows the control settings; POST (JSON) changes any subset of them."""
    if request.method == "GET":
        return JsonResponse(state.control())
    if request.method != "POST":
        return JsonResponse({"error": "use GET or POST"}, status=405)
    try:
        changes = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "body: must be JSON", "field": "body"}, status=400)
    try:
        return JsonResponse(state.update_control(changes))
    except state.ControlError as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=400)


def stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(state.stats())
