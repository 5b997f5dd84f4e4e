"""Readiness: can this process reach what it needs to serve?

Three components, each checked with a short timeout so a probe answers in
seconds even when something hangs:
- database: a `SELECT 1` on the default connection;
- broker: django-q2's broker, i.e. Redis (PING) when REDIS_URL is set, which
  is also the cache; else the ORM broker, which is the database;
- storage: the media store, i.e. the bucket (HEAD) for S3, else MEDIA_ROOT
  being a writable directory.

Answers carry the component's state and, when down, only the error's class
name: never a URL, a host or a message that could hold a password.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.files.storage import storages
from django.db import connection

CHECK_TIMEOUT_SECONDS = 3
# Local media: less free space than this and uploads would start failing.
MIN_FREE_MEDIA_BYTES = 100 * 2**20


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str  # "ok", "ok (database)", or the failure's class name

    @property
    def state(self) -> str:
        return self.detail if self.ok else f"down: {self.detail}"


def readiness() -> list[Check]:
    return [_run(name, check) for name, check in
            (("database", check_database), ("broker", check_broker), ("storage", check_storage))]


def _run(name: str, check) -> Check:
    try:
        detail = check()
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        return Check(name, False, error.__class__.__name__)
    return Check(name, True, detail or "ok")


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # Drop the broken connection so the next request reconnects. Not
        # inside a transaction: closing there would break the caller's work.
        if not connection.in_atomic_block:
            connection.close()
        raise
    return "ok"


def check_broker() -> str:
    if not settings.REDIS_URL:
        check_database()
        return "ok (database)"
    _redis(settings.REDIS_URL).ping()
    return "ok"


@lru_cache(maxsize=4)
def _redis(url: str):
    """One small client per process and URL (redis-py clients are thread-safe)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
                                socket_timeout=CHECK_TIMEOUT_SECONDS, retry_on_timeout=False)


def check_storage() -> str:
    storage = storages["default"]
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        _s3_probe(storage.endpoint_url, storage.region_name, storage.access_key, storage.secret_key,
                  storage.security_token).head_bucket(Bucket=bucket)
        return "ok"
    root = getattr(storage, "location", None) or str(settings.MEDIA_ROOT)
    # FileSystemStorage makes the directory on the first upload; so do we.
    os.makedirs(root, exist_ok=True)
    if not os.access(root, os.W_OK):
        raise PermissionError("MEDIA_ROOT")
    # A full disk is still writable for os.access: every upload would fail.
    if shutil.disk_usage(root).free < MIN_FREE_MEDIA_BYTES:
        raise OSError(f"MEDIA_ROOT has less than {MIN_FREE_MEDIA_BYTES // 2**20} MB free")
    return "ok"


@lru_cache(maxsize=4)
def _s3_probe(endpoint_url, region_name, access_key, secret_key, security_token):
    """A client for probes only: short timeouts and no retries, unlike the
    storage's own, which rides out a blip while a file is being moved."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                    aws_session_token=security_token)
    return session.client("s3", endpoint_url=endpoint_url, region_name=region_name, config=Config(
        connect_timeout=CHECK_TIMEOUT_SECONDS, read_timeout=CHECK_TIMEOUT_SECONDS,
        retries={"max_attempts": 1, "mode": "standard"}))
