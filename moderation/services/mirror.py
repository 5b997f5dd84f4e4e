"""Mirroring URL media: fetch it into our storage and send Hive the bytes.

Used when a project opts in (hosts throttle or time out Hive's downloads) and
as the fallback after Hive reports repeated download errors.
"""

from __future__ import annotations

import hashlib
import tempfile

import requests

from django.conf import settings
from django.core.files import File

from moderation.models import Actor, Submission
from moderation.services import audit
from moderation.services.media import MediaError, sniff
from moderation.services.safe_http import FetchError, FetchTooLarge, UnsafeURL, fetch_to_file


class MirrorError(Exception):
    def __init__(self, message: str, *, permanent: bool = True):
        super().__init__(message)
        self.permanent = permanent


def mirror_url(submission: Submission) -> None:
    """Fetch `submission.url` into storage as its media. Raises MirrorError
    with a message a partner can act on."""
    project = submission.project
    with tempfile.TemporaryFile() as spool:
        try:
            fetched = fetch_to_file(submission.url, spool, max_bytes=settings.MAX_UPLOAD_MB * 1024 * 1024)
        except UnsafeURL as error:
            raise MirrorError(f"the URL may not be fetched: {error}") from None
        except FetchTooLarge:
            raise MirrorError(f"the URL's content is larger than {settings.MAX_UPLOAD_MB} MB") from None
        except (FetchError, requests.RequestException) as error:
            # Network trouble or a 5xx may pass; the attempt budget bounds the retries.
            raise MirrorError(f"fetching the URL failed: {error}", permanent=False) from None
        spool.seek(0)
        try:
            info = sniff(spool)
        except MediaError as error:
            raise MirrorError(str(error)) from None
        if not project.rule.accepts_media(info.kind):
            raise MirrorError(f"the URL points at {info.kind} media, which a {project.endpoint_type} project "
                              f"does not take ({', '.join(project.rule.media)})")
        digest = hashlib.sha256()
        for chunk in iter(lambda: spool.read(1024 * 1024), b""):
            digest.update(chunk)
        spool.seek(0)
        submission.media.save(f"mirror.{info.extension}", File(spool), save=False)
    submission.media_kind = info.kind
    submission.media_mime = info.mime
    submission.size_bytes = fetched.size
    submission.sha256 = digest.hexdigest()
    submission.save(update_fields=["media", "media_kind", "media_mime", "size_bytes", "sha256", "updated_at"])
    audit.record("media.mirrored", actor=Actor.SYSTEM, submission=submission, size=fetched.size, kind=info.kind)
