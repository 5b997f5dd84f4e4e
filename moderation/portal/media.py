"""The stored media of a submission, streamed only to its reviewers.

Never a public URL: every request is checked against the user's projects.
The Content-Type is the sniffed one (never the client's), browsers are told
not to second-guess it, and the response is sandboxed so that a file that is
more than it claims cannot run script in the portal's origin. Single byte
ranges are honoured so the video player can seek to a peak.
"""

from __future__ import annotations

import re

from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from moderation.portal.access import reviewer_required
from moderation.services import review
from moderation.services.media import MediaError, sniff

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@require_GET
@reviewer_required
def media(request, pk):
    submission = review.get_visible(request.user, pk)
    if submission is None or not submission.media:
        raise Http404("No media.")
    try:
        handle = submission.media.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    mime = submission.media_mime or _sniffed(handle)
    size = submission.media.size
    span = _range(request.headers.get("Range", ""), size)
    if span == "invalid":
        handle.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    elif span is None:
        response = FileResponse(handle, content_type=mime)
    else:
        start, end = span
        handle.seek(start)
        response = StreamingHttpResponse(_read(handle, end - start + 1), status=206, content_type=mime)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    return _harden(response)


def _sniffed(handle) -> str:
    try:
        return sniff(handle).mime
    except MediaError:
        return "application/octet-stream"


def _range(header: str, size: int):
    """(start, end) for one satisfiable byte range, None for the whole file,
    "invalid" for an unsatisfiable one. Multi-range requests get the whole file."""
    match = _RANGE.match(header.strip())
    if not match or size == 0:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "invalid"
    return start, end


def _read(handle, remaining: int):
    try:
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _harden(response: HttpResponse) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = "inline"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
