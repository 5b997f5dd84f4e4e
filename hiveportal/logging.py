"""Structured logs: one JSON object per line, the submission's ids on every
line about it, and secrets scrubbed from whatever is written.

- `log_context(...)` binds fields (submission_id, project, hive_task_id) for a
  span of work; `ContextFilter` copies them onto every record logged inside it,
  so lines from code that knows nothing of the submission (the Hive client,
  the normaliser, django-q2) still say which submission they are about.
- `JsonFormatter` (python-json-logger) and `TextFormatter` both pass their
  finished line through `redact()`: partner keys (`hp_...`), webhook secrets
  (`whsec_...`), Authorization values, callback URL tokens, S3 signatures, the
  settings' own secrets and any secret bound with `log_context(secrets=...)`
  (the Hive key during a call). Redacting the formatted line, not the record,
  also covers arguments, extras and tracebacks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

from django.core.signals import setting_changed
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

IDS = ("submission_id", "project", "hive_task_id")
REDACTED = "[redacted]"

_context: ContextVar[dict] = ContextVar("hiveportal_log_context", default={})

# (pattern, replacement); each keeps enough to tell what was there.
_PATTERNS: list[tuple[re.Pattern, str]] = [
    # Partner keys hp_<public prefix>_<secret>: keep the prefix, it names the key.
    (re.compile(r"\b(hp_[0-9a-f]{6,})_[A-Za-z0-9_\-]{8,}"), rf"\1_{REDACTED}"),
    (re.compile(r"\bhp_[A-Za-z0-9_\-]{16,}"), f"hp_{REDACTED}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]{8,}"), f"whsec_{REDACTED}"),
    # Authorization: <anything>, in headers, dict reprs and JSON.
    (re.compile(r"(?i)(authorization\\?[\"']?\s*[:=]\s*\\?[\"']?)[^\"'\\,}\n]+"), rf"\1{REDACTED}"),
    # "Token <key>" / "Bearer <token>" outside a header: anything key-like (a digit in it).
    (re.compile(r"(?i)\b(token|bearer|basic)(\s+)(?=[A-Za-z._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{12,}"),
     rf"\1\2{REDACTED}"),
    # The callback URL's token is an HMAC that authenticates Hive's POST.
    (re.compile(r"(/hive/callback/[^/\s\"']+/)[0-9a-fA-F]{16,}"), rf"\1{REDACTED}"),
    # A presigned URL is a bearer credential until it expires.
    (re.compile(r"(?i)(X-Amz-Signature=|Signature=)[0-9A-Za-z%+/=]+"), rf"\1{REDACTED}"),
]
# Shorter values would redact ordinary words.
_MIN_SECRET_LENGTH = 6


@contextmanager
def log_context(*, secrets: Iterable[str] = (), **fields) -> Iterator[None]:
    """Bind `fields` (None/'' are skipped) to every record logged inside, and
    scrub `secrets` from those records."""
    current = _context.get()
    merged = {**current, **{k: str(v) for k, v in fields.items() if v not in (None, "")}}
    extra = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH)
    if extra:
        merged["_secrets"] = current.get("_secrets", ()) + extra
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields) -> None:
    """Add fields to the current context (e.g. the Hive task id once known)."""
    current = _context.get()
    _context.set({**current, **{k: str(v) for k, v in fields.items() if v not in (None, "")}})


def current_context() -> dict:
    return {k: v for k, v in _context.get().items() if not k.startswith("_")}


class ContextFilter(logging.Filter):
    """Copies the bound ids onto the record unless the call gave its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for key, value in context.items():
            if key.startswith("_"):
                continue
            if getattr(record, key, None) in (None, ""):
                setattr(record, key, value)
        record._secrets = context.get("_secrets", ())
        return True


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in (*_settings_secrets(), *secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_SETTINGS_SECRETS: tuple[str, ...] | None = None


def _settings_secrets() -> tuple[str, ...]:
    """Secret values from the settings, read once settings are ready."""
    global _SETTINGS_SECRETS
    if _SETTINGS_SECRETS is None:
        from django.conf import settings

        if not settings.configured:
            return ()
        found = [getattr(settings, "SECRET_KEY", ""), getattr(settings, "METRICS_TOKEN", "")]
        found += [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
        options = settings.STORAGES.get("default", {}).get("OPTIONS", {})
        found.append(options.get("secret_key") or "")
        for url in (getattr(settings, "REDIS_URL", ""),):
            found.append(urlsplit(url).password or "" if url else "")
        _SETTINGS_SECRETS = tuple(s for s in found if s and len(s) >= _MIN_SECRET_LENGTH)
    return _SETTINGS_SECRETS


def _forget_settings_secrets(**kwargs) -> None:
    global _SETTINGS_SECRETS
    _SETTINGS_SECRETS = None


# Settings only change under tests (override_settings); read them again then.
setting_changed.connect(_forget_settings_secrets, dispatch_uid="hiveportal-logging-secrets")


def _line_secrets(record: logging.LogRecord) -> tuple[str, ...]:
    return getattr(record, "_secrets", ())


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, process, the
    submission ids when known, any `extra=` fields; then redacted."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        # The request object Django attaches would be dumped as its repr.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request", "_secrets", "color_message"])
        super().__init__("%(levelname)s %(name)s %(message)s %(process)d", *args, **kwargs)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        if any(getattr(record, key, None) for key in IDS):
            for key in IDS:  # every line about a submission carries all three keys
                log_data.setdefault(key, getattr(record, key, None))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), _line_secrets(record))


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal (LOG_FORMAT=text), redacted too."""

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record), _line_secrets(record))
        ids = " ".join(f"{key}={getattr(record, key)}" for key in IDS if getattr(record, key, None))
        return f"{line} [{ids}]" if ids else line
