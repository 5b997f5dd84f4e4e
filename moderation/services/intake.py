"""Accepting a submission: validate against the project, store, enqueue.

Everything is checked before anything is stored or queued. Each refusal is an
`IntakeError` naming the field, with the HTTP status the API answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from moderation.hive.rules import CONTENT_FIELDS, MEDIA_FIELD, TEXT_FIELD, URL_FIELD
from moderation.models import Actor, Partner, Project, Submission
from moderation.services import audit, dispatch
from moderation.services.media import CorruptMedia, EmptyMedia, MediaError, sniff
from moderation.services.safe_http import UnsafeURL, validate_url_syntax

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32
MAX_EXTERNAL_ID = 255
MAX_URL = 2048
ALLOWED_FIELDS = frozenset({*CONTENT_FIELDS, "metadata", "external_id"})


logger = logging.getLogger("moderation.pipeline")


class IntakeError(Exception):
    def __init__(self, field_name: str, message: str, status: int = 400):
        super().__init__(message)
        self.field = field_name
        self.message = message
        self.status = status


@dataclass
class SubmissionInput:
    media: UploadedFile | None = None
    url: str | None = None
    text_data: str | None = None
    metadata: dict = field(default_factory=dict)
    external_id: str = ""
    sha256: str = ""  # of the content, computed once by `digest`

    @property
    def content_field(self) -> str:
        if self.media is not None:
            return MEDIA_FIELD
        return URL_FIELD if self.url is not None else TEXT_FIELD


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def parse_input(data: Any, files: Any, project: Project) -> SubmissionInput:
    """Request fields → SubmissionInput, refusing anything malformed. `data`
    is a dict (JSON) or a QueryDict (form/multipart); `files` a MultiValueDict."""
    if not hasattr(data, "keys"):
        raise IntakeError("body", "Expected a JSON object or form fields.")
    names = set(data.keys()) | set(files.keys())
    unknown = sorted(names - ALLOWED_FIELDS)
    if unknown:
        raise IntakeError(unknown[0], f"Unknown field. Allowed: {', '.join(sorted(ALLOWED_FIELDS))}.")
    for name in names:
        # DRF's request.data also holds the uploaded files, so count each place alone.
        repeated = len(files.getlist(name)) > 1 or (
            name not in files and hasattr(data, "getlist") and len(data.getlist(name)) > 1)
        if repeated:
            raise IntakeError(name, "Given more than once.")

    given = [name for name in CONTENT_FIELDS if name in names]
    accepted = project.rule.fields
    if not given:
        raise IntakeError("content", f"Send exactly one of {', '.join(CONTENT_FIELDS)}; "
                                     f"this project takes {' or '.join(accepted)}.")
    if len(given) > 1:
        raise IntakeError(given[1], f"Send exactly one content field, not {' and '.join(given)}.")
    content = given[0]
    if content not in accepted:
        raise IntakeError(content, f"A {project.endpoint_type} project does not take {content}; "
                                   f"send {' or '.join(accepted)}.")

    result = SubmissionInput(metadata=_metadata(data.get("metadata")), external_id=_external_id(data))
    if content == MEDIA_FIELD:
        result.media = _media(files.get(MEDIA_FIELD), data.get(MEDIA_FIELD))
    elif content == URL_FIELD:
        result.url = _url(data.get(URL_FIELD))
    else:
        result.text_data = _text(data.get(TEXT_FIELD), project.text_limit)
    return result


def _media(upload: Any, non_file: Any) -> UploadedFile:
    if upload is None:
        raise IntakeError(MEDIA_FIELD, "Send the media as a file in a multipart/form-data upload.")
    if upload.size == 0:
        raise IntakeError(MEDIA_FIELD, "The file is empty.")
    if upload.size > max_upload_bytes():
        raise IntakeError(MEDIA_FIELD, f"The file is larger than {settings.MAX_UPLOAD_MB} MB.", status=413)
    return upload


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IntakeError(URL_FIELD, "Expected a URL string.")
    value = value.strip()
    if len(value) > MAX_URL:
        raise IntakeError(URL_FIELD, f"At most {MAX_URL} characters.")
    try:
        validate_url_syntax(value)  # refuses NUL and lone surrogates too
    except UnsafeURL as error:
        raise IntakeError(URL_FIELD, f"Expected an http(s) URL with a host: {error}") from None
    scheme, rest = value.split(":", 1)
    return scheme.lower() + ":" + rest  # HTTP://x is http://x; Hive takes only the lower-case form


# PostgreSQL stores no NUL character in text or JSON (SQLite does): refused here
# as a 400 naming the field, not a database error.
NUL_MESSAGE = "Must not contain the NUL character (\\u0000)."
# JSON's "\ud800" escape decodes to half of a UTF-16 pair, which has no UTF-8 form:
# stored, it could never be rendered again (the 202, GET, webhooks).
SURROGATE_MESSAGE = "Must be valid Unicode: contains an unpaired UTF-16 surrogate (such as \\ud800)."


def _refuse_unstorable(field: str, value: str) -> None:
    if "\x00" in value:
        raise IntakeError(field, NUL_MESSAGE)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise IntakeError(field, SURROGATE_MESSAGE) from None


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise IntakeError(TEXT_FIELD, "Expected a string.")
    _refuse_unstorable(TEXT_FIELD, value)
    if not value.strip():
        raise IntakeError(TEXT_FIELD, "The text is empty.")
    if len(value) > limit:
        raise IntakeError(TEXT_FIELD, f"At most {limit} characters for this project; got {len(value)}.")
    return value


def _metadata(value: Any) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, str):  # multipart and form bodies carry it as a JSON string
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise IntakeError("metadata", "Expected a JSON object (as a JSON string in form uploads).") from None
    if not isinstance(value, dict):
        raise IntakeError("metadata", "Expected a JSON object.")
    if _depth(value) > MAX_METADATA_DEPTH:
        raise IntakeError("metadata", f"Nested more than {MAX_METADATA_DEPTH} levels deep.")
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise IntakeError("metadata", SURROGATE_MESSAGE) from None
    except ValueError:  # Python's json reads NaN, Infinity and 1e400 (inf); no database stores them
        raise IntakeError("metadata", "Numbers must be finite: no NaN or Infinity, none beyond 1.8e308.") from None
    if size > MAX_METADATA_BYTES:
        raise IntakeError("metadata", f"At most {MAX_METADATA_BYTES // 1024} KB of JSON (UTF-8).")
    if _has_nul(value):
        raise IntakeError("metadata", NUL_MESSAGE)
    return value


def _has_nul(value: Any) -> bool:
    """A NUL in any key or string of the JSON value (already depth-checked)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a recursive walk could itself overflow)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_METADATA_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _external_id(data: Any) -> str:
    value = data.get("external_id", "")
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise IntakeError("external_id", "Expected a string.")
    value = str(value)
    if len(value) > MAX_EXTERNAL_ID:
        raise IntakeError("external_id", f"At most {MAX_EXTERNAL_ID} characters.")
    _refuse_unstorable("external_id", value)
    return value


def digest(content: SubmissionInput) -> str:
    """sha256 of the content, read once in chunks (uploads may be huge)."""
    if not content.sha256:
        sha = hashlib.sha256()
        if content.media is not None:
            for chunk in content.media.chunks():
                sha.update(chunk)
            content.media.seek(0)
        else:
            sha.update((content.url if content.url is not None else content.text_data or "").encode())
        content.sha256 = sha.hexdigest()
    return content.sha256


def create_submission(
    partner: Partner, project: Project, content: SubmissionInput, *, idempotency_key: str | None = None,
    idempotency_fingerprint: str = "",
) -> Submission:
    submission = Submission(
        id=uuid.uuid4(), project=project, partner=partner, external_id=content.external_id,
        idempotency_key=idempotency_key, idempotency_fingerprint=idempotency_fingerprint,
        metadata=content.metadata, source=content.content_field,
        sha256=digest(content),
    )
    if content.media is not None:
        _attach_media(submission, project, content.media)
    elif content.url is not None:
        submission.url = content.url
    else:
        submission.text_data = content.text_data
        submission.media_kind = "text"
        submission.size_bytes = len(content.text_data.encode())
    try:
        with transaction.atomic():
            submission.save(force_insert=True)
            audit.record("submission.received", actor=Actor.PARTNER, partner=partner, submission=submission,
                         source=submission.source, media_kind=submission.media_kind, size=submission.size_bytes)
            dispatch.enqueue(submission.pk)
    except Exception:
        if submission.media:
            submission.media.delete(save=False)
        raise
    return submission


def _attach_media(submission: Submission, project: Project, upload: UploadedFile) -> None:
    try:
        info = sniff(upload)
    except EmptyMedia as error:
        raise IntakeError(MEDIA_FIELD, str(error)) from None
    except CorruptMedia as error:
        raise IntakeError(MEDIA_FIELD, str(error)) from None
    except MediaError as error:
        raise IntakeError(MEDIA_FIELD, str(error), status=415) from None
    if not project.rule.accepts_media(info.kind):
        raise IntakeError(
            MEDIA_FIELD,
            f"The file is {info.kind} ({info.mime}); a {project.endpoint_type} project takes "
            f"{', '.join(project.rule.media)}.",
            status=415,
        )
    submission.media_kind = info.kind
    submission.media_mime = info.mime
    submission.size_bytes = upload.size
    # Our own name: the client's file name never reaches a storage path.
    filename = f"upload.{info.extension}"
    try:
        submission.media.save(filename, upload, save=False)
    except OSError:
        # A full or failing disk: Django's storage leaves what it wrote so far,
        # under the path made from the new submission's id (so no other file's).
        logger.exception("could not store an upload", extra={"submission_id": str(submission.pk)})
        partial = submission.media.field.generate_filename(submission, filename)
        if submission.media.storage.exists(partial):
            submission.media.storage.delete(partial)
        raise IntakeError(MEDIA_FIELD, "The portal could not store the file (its storage is full or failing); "
                                       "nothing was kept. Try again later.", status=503) from None
