"""HTTP client for Hive's v2 task API: the one choke point for calls to Hive.

Every call has a timeout, never follows a redirect, and ends in exactly one of
three outcomes (STYLE.md provider pattern): a result, a transient `HiveError`
(retry later) or a permanent one (give up with Hive's message).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO

import requests
from django.conf import settings
from requests_toolbelt import MultipartEncoder

from moderation.hive.errors import HiveError

logger = logging.getLogger("moderation.hive")

MESSAGE_LIMIT = 500
MAX_RETRY_AFTER_SECONDS = 86_400.0
# Statuses that say "not now" rather than "never": retry them.
_RETRYABLE_4XX = {408, 429}
# What a bare status means at Hive (HIVE_API.md "Errors"), added to its message.
_STATUS_HINTS = {
    401: "API key refused",
    403: "API key refused",
    405: "insufficient balance",
    408: "request timeout",
    429: "rate limited",
}


@dataclass
class Content:
    """What to moderate: exactly one of a file, a URL or text.

    `media` must be readable and seekable; it is rewound and streamed on every
    call, so a retry sends the whole file again without loading it in memory."""

    media: BinaryIO | None = None
    media_name: str = "media"
    media_content_type: str = "application/octet-stream"
    url: str | None = None
    text_data: str | None = None

    def __post_init__(self) -> None:
        given = [self.media is not None, self.url not in (None, ""), self.text_data not in (None, "")]
        if sum(given) != 1:
            raise ValueError("Content needs exactly one of media, url or text_data")


@dataclass
class SyncResult:
    result: dict
    raw: str  # the body exactly as Hive sent it: stored verbatim
    status_code: int
    elapsed: float


@dataclass
class AsyncAck:
    task_id: str
    raw: str
    elapsed: float


class HiveClient:
    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        session: requests.Session | None = None,
    ):
        self._api_key = api_key
        self.base_url = (base_url or settings.HIVE_API_URL).rstrip("/")
        self.connect_timeout = connect_timeout if connect_timeout is not None else settings.HIVE_CONNECT_TIMEOUT
        self.read_timeout = read_timeout if read_timeout is not None else settings.HIVE_READ_TIMEOUT
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        # Never show the key, even in a traceback's locals.
        return f"HiveClient(base_url={self.base_url!r})"

    def submit_sync(self, content: Content, *, metadata: str, options: dict | None = None) -> SyncResult:
        """Run a task and wait for its result (Hive may take minutes on video)."""
        what = "Hive sync call"
        response, elapsed = self._post("sync", content, metadata=metadata, options=options, what=what)
        raw = _body_text(response)
        return SyncResult(result=_json_object(raw, response, what), raw=raw,
                          status_code=response.status_code, elapsed=elapsed)

    def submit_async(
        self, content: Content, *, metadata: str, callback_url: str, options: dict | None = None
    ) -> AsyncAck:
        """Start a task whose result Hive will POST to `callback_url`."""
        what = "Hive async call"
        response, elapsed = self._post(
            "async", content, metadata=metadata, options=options, callback_url=callback_url, what=what
        )
        raw = _body_text(response)
        task_id = _task_id(_json_object(raw, response, what))
        if not task_id:
            logger.warning("%s: HTTP %s ack without a task id: %s", what, response.status_code, _excerpt(raw))
            raise HiveError(f"{what}: ack without a task id", permanent=False,
                            status_code=response.status_code, body=_excerpt(raw))
        return AsyncAck(task_id=task_id, raw=raw, elapsed=elapsed)

    def _post(
        self, endpoint: str, content: Content, *, metadata: str, options: dict | None,
        what: str, callback_url: str | None = None,
    ) -> tuple[requests.Response, float]:
        """POST one task; return a 2xx response or raise HiveError."""
        fields: dict[str, Any] = {"metadata": metadata}
        if callback_url is not None:
            fields["callback_url"] = callback_url
        if options is not None:
            fields["options"] = json.dumps(options)
        headers = {"Authorization": f"Token {self._api_key}", "Accept": "application/json"}
        started = time.monotonic()
        try:
            data = self._body(content, fields, headers)
            response = self.session.post(
                f"{self.base_url}/api/v2/task/{endpoint}",
                data=data,
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            logger.warning("%s timed out: %s", what, exc)
            raise HiveError(f"{what}: timed out waiting for Hive ({exc})", permanent=False) from exc
        except requests.RequestException as exc:
            logger.warning("%s failed: %s", what, exc)
            raise HiveError(f"{what}: could not reach Hive ({exc})", permanent=False) from exc
        except Exception as exc:  # e.g. the media file vanished mid-upload
            logger.exception("%s failed unexpectedly", what)
            raise HiveError(f"{what}: {exc.__class__.__name__}: {exc}", permanent=False) from exc
        elapsed = time.monotonic() - started
        _raise_for_status(response, what)
        return response, elapsed

    @staticmethod
    def _body(content: Content, fields: dict[str, Any], headers: dict[str, str]) -> Any:
        """Form fields for url/text_data; a streaming multipart encoder for media.

        `requests` would build a multipart body whole in memory; the encoder
        reads the file in chunks as the socket takes them."""
        if content.media is None:
            if content.url not in (None, ""):
                return {**fields, "url": content.url}
            return {**fields, "text_data": content.text_data}
        content.media.seek(0)  # the pipeline may have sniffed it, or this is a retry
        # Media last, so the small fields arrive before the big one.
        encoder = MultipartEncoder(
            fields={**fields, "media": (content.media_name or "media", content.media, content.media_content_type)}
        )
        headers["Content-Type"] = encoder.content_type
        return encoder


def _raise_for_status(response: requests.Response, what: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    body = _excerpt(_body_text(response))
    hive_message = _hive_message(response) or response.reason or "no message"
    hint = _STATUS_HINTS.get(status)
    message = f"{what}: HTTP {status}{f' ({hint})' if hint else ''}: {hive_message}"
    retry_after = None
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        message = f"{what}: HTTP {status} redirect to {location or '?'} not followed: {hive_message}"
        permanent = False
    elif status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        permanent = False
    else:
        permanent = status < 500 and status not in _RETRYABLE_4XX
    logger.warning("%s", message)
    raise HiveError(message, permanent=permanent, status_code=status, retry_after=retry_after, body=body)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (Hive's, or a partner webhook
    endpoint's): delta-seconds or an HTTP date,
    at most MAX_RETRY_AFTER_SECONDS (a date in the year 9999 or "inf" would
    overflow the retry time; a day is already far longer than any real pause)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        logger.warning("unreadable Retry-After header: %r", value[:100])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - datetime.now(timezone.utc)).total_seconds()), MAX_RETRY_AFTER_SECONDS)


def _body_text(response: requests.Response) -> str:
    # JSON is UTF-8 unless said otherwise; don't let requests guess a charset.
    return response.content.decode(response.encoding or "utf-8", errors="replace")


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"


def _hive_message(response: requests.Response) -> str:
    """Hive's own words: the `message` of a JSON body, else the text itself."""
    text = _body_text(response)
    try:
        body = json.loads(text)
    except ValueError:
        return _excerpt(text)
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if body.get(key):
                return _excerpt(str(body[key]))
    return _excerpt(text)


def _json_object(raw: str, response: requests.Response, what: str) -> dict:
    """The 2xx body as a JSON object; anything else is a transient failure."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        logger.warning("%s: HTTP %s with a body that is not a JSON object: %s",
                       what, response.status_code, _excerpt(raw))
        raise HiveError(f"{what}: HTTP {response.status_code} with a body that is not a JSON object",
                        permanent=False, status_code=response.status_code, body=_excerpt(raw))
    return body


def _task_id(ack: dict) -> str:
    """Integrations read `task_id`; accept `id` or `status[0].task_id` too."""
    for candidate in (ack.get("task_id"), ack.get("id")):
        if candidate not in (None, ""):
            return str(candidate)
    status = ack.get("status")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        candidate = status[0].get("task_id")
        if candidate not in (None, ""):
            return str(candidate)
    return ""
