"""When a backend fails under the partner API: Redis, the database, the media
disk. Each answers JSON a client can act on (never an HTML 500) and keeps
nothing half-written (PRODUCT.md: "Never a 500")."""

from __future__ import annotations

import errno
import os

from django.core.files.storage import FileSystemStorage
from django.db import OperationalError
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError

from moderation.api import throttling, views
from moderation.models import Submission
from moderation.ops import health
from moderation.services import intake
from tests.test_api_submissions import post, upload, visual  # noqa: F401  (fixture)


def files_under(root) -> list[str]:
    return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]


def test_with_the_throttles_counter_unreachable_an_upload_is_still_accepted(api, visual, media_samples,  # noqa: F811
                                                                            monkeypatch):
    def redis_down(self, key, previous_key):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(throttling.PartnerRateThrottle, "_count", redis_down)
    response = post(api, "pics", {"media": upload(media_samples / "sample.png")})
    assert response.status_code == 202, response.content
    assert Submission.objects.filter(pk=response.json()["id"]).exists()


def test_a_database_that_went_away_is_a_json_503_to_retry_and_nothing_is_kept(api, visual, media_samples,  # noqa
                                                                              monkeypatch, settings):
    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(intake, "create_submission", database_gone)
    response = post(api, "pics", {"media": upload(media_samples / "sample.png")})
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "30"
    assert "Try again" in response.json()["detail"]
    assert not Submission.objects.exists()


def test_an_unexpected_error_under_the_api_is_a_json_500_not_an_html_page(api_key, visual, monkeypatch):  # noqa
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.ProjectList, "get", broken)
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {api_key}")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Internal error; it is logged for the operators. Try again later."}


def test_a_full_disk_is_a_503_naming_the_file_and_leaves_no_partial_file(api, visual, media_samples,  # noqa: F811
                                                                         monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    real_save = FileSystemStorage._save

    def disk_full(self, name, content):
        # What the disk does when it fills: the first bytes land, then ENOSPC.
        with open(self.path(name), "wb") as partial:
            partial.write(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", disk_full)
    response = post(api, "pics", {"media": upload(media_samples / "sample.png")})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response.json()["media"] == ["The portal could not store the file (its storage is full or failing); "
                                        "nothing was kept. Try again later."]
    assert not Submission.objects.exists()
    assert files_under(tmp_path) == []

    monkeypatch.setattr(FileSystemStorage, "_save", real_save)  # space again
    assert post(api, "pics", {"media": upload(media_samples / "sample.png")}).status_code == 202


def test_readyz_says_storage_is_down_when_the_media_disk_is_full(client, monkeypatch, db, tmp_path, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(health.shutil, "disk_usage", lambda path: type("usage", (), {"free": 10 * 2**20})())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["storage"]
