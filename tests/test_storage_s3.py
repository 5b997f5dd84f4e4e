"""Media in an S3-compatible store: a real S3 server (moto in server mode, its
own process on loopback) behind django-storages, never a mock of the client.

An upload through the partner API lands in the private bucket; the worker
streams it from the bucket to Hive unchanged and in bounded memory; the
portal serves it to a permitted reviewer only; the bucket refuses anyone
without a signature, and the storage's URLs are presigned and short-lived.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.test import Client

from moderation.models import Result, Status, Submission
from moderation.services import dispatch
from tests.conftest import FIXTURES
from tests.ops_stack import MotoServer, make_private_bucket, s3_storages

BUCKET = "hiveportal-media-test"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    make_private_bucket(server.endpoint, BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_media(moto, settings):
    """Every FileField in this test stores to the bucket."""
    settings.STORAGES = s3_storages(moto.endpoint, BUCKET, expire=120)  # pytest-django restores it
    return moto


@pytest.fixture
def visual(make_project, partner):
    project = make_project("pics", hive_api_key="sim-visual-s3")
    partner.projects.add(project)
    return project


def stored_bytes(moto: MotoServer, name: str) -> bytes:
    return moto.client().get_object(Bucket=BUCKET, Key=name)["Body"].read()


def upload(api, project, sample: Path) -> Submission:
    with open(sample, "rb") as handle:
        response = api.post(f"/api/v1/projects/{project.slug}/submissions/", {"media": handle}, format="multipart")
    assert response.status_code == 202, response.content
    return Submission.objects.get(pk=response.json()["id"])


def test_an_upload_through_the_partner_api_lands_in_the_private_bucket(s3_media, api, visual, media_samples):
    sample = media_samples / "sample.jpg"
    submission = upload(api, visual, sample)

    assert stored_bytes(s3_media, submission.media.name) == sample.read_bytes()
    grants = s3_media.client().get_object_acl(Bucket=BUCKET, Key=submission.media.name)["Grants"]
    assert all(grant["Grantee"].get("Type") == "CanonicalUser" for grant in grants)  # owner only
    anonymous = requests.get(f"{s3_media.endpoint}/{BUCKET}/{submission.media.name}", timeout=5)
    assert anonymous.status_code == 403


def test_nothing_is_written_to_local_disk_when_the_store_is_configured(s3_media, api, visual, media_samples,
                                                                       settings):
    submission = upload(api, visual, media_samples / "sample.png")
    assert not (Path(settings.MEDIA_ROOT) / submission.media.name).exists()
    assert stored_bytes(s3_media, submission.media.name) == (media_samples / "sample.png").read_bytes()


def test_the_worker_streams_the_stored_media_to_hive_unchanged(s3_media, simulator, settings, api, visual,
                                                               media_samples):
    settings.HIVE_API_URL = simulator
    sample = media_samples / "sample.mp4"
    submission = upload(api, visual, sample)

    dispatch.dispatch_submission(submission.pk)

    submission.refresh_from_db()
    assert submission.status == Status.COMPLETED, submission.error
    result = json.loads(Result.objects.get(submission=submission).raw)
    # The simulator reports the sha256 of the bytes it received.
    assert result["status"][0]["response"]["input"]["hash"] == hashlib.sha256(sample.read_bytes()).hexdigest()


class _Sink:
    """A stand-in for Hive that writes the request body to disk as it arrives
    and answers a sync result: the test can check every byte without holding
    the upload in this process's memory."""

    def __init__(self, directory: Path):
        self.body = directory / "body.bin"
        answer = (FIXTURES / "hive" / "image.json").read_bytes()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                sink.content_type = self.headers["Content-Type"]
                remaining = int(self.headers["Content-Length"])
                with open(sink.body, "wb") as out:
                    while remaining:
                        chunk = self.rfile.read(min(65536, remaining))
                        if not chunk:
                            break
                        out.write(chunk)
                        remaining -= len(chunk)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def media_sha256(self) -> str:
        """sha256 of the `media` part (sent last) of the multipart body on disk."""
        boundary = self.content_type.split("boundary=")[1].encode()
        with open(self.body, "rb") as body:
            head = body.read(8192)
            start = head.index(b"\r\n\r\n", head.index(b'name="media"')) + 4
            end = os.path.getsize(self.body) - len(b"\r\n--" + boundary + b"--\r\n")
            body.seek(start)
            sha, remaining = hashlib.sha256(), end - start
            while remaining:
                chunk = body.read(min(1 << 20, remaining))
                sha.update(chunk)
                remaining -= len(chunk)
        return sha.hexdigest()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_large_file_streams_from_the_bucket_to_hive_in_bounded_memory(s3_media, settings, visual, partner):
    size = 48 * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="hiveportal-s3-"))
    sink = _Sink(work)
    try:
        source, sha = work / "big.mp4", hashlib.sha256()
        with open(source, "wb") as out:
            for _ in range(size // (1 << 20)):
                block = os.urandom(1 << 20)
                sha.update(block)
                out.write(block)
        with open(source, "rb") as handle:
            name = default_storage.save("submissions/big.mp4", File(handle))
        submission = Submission.objects.create(project=visual, partner=partner, source="media", media=name,
                                               media_kind="video", media_mime="video/mp4", size_bytes=size)
        settings.HIVE_API_URL = sink.url
        claimed = dispatch.claim(visual.pk, submission.pk).submission
        tracemalloc.start()
        try:
            dispatch.call_hive(claimed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        submission.refresh_from_db()
        assert submission.status == Status.COMPLETED, submission.error
        assert sink.media_sha256() == sha.hexdigest()
        assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_storage_urls_are_presigned_and_short_lived_and_unsigned_ones_are_refused(s3_media, api, visual,
                                                                                  media_samples):
    submission = upload(api, visual, media_samples / "sample.png")
    url = default_storage.url(submission.media.name)

    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]  # AWS_QUERYSTRING_EXPIRE
    assert "X-Amz-Signature" in query
    assert requests.get(url, timeout=5).content == (media_samples / "sample.png").read_bytes()
    unsigned = url.split("?", 1)[0]
    assert requests.get(unsigned, timeout=5).status_code == 403


def test_the_portal_streams_stored_media_to_a_permitted_reviewer_only(s3_media, api, visual, media_samples):
    sample = media_samples / "sample.mp4"
    submission = upload(api, visual, sample)
    lead = Client()
    lead.force_login(get_user_model().objects.create_user("lead", is_superuser=True))

    part = lead.get(f"/portal/item/{submission.pk}/media/", HTTP_RANGE="bytes=100-199")
    anonymous = Client().get(f"/portal/item/{submission.pk}/media/")

    assert part.status_code == 206
    assert b"".join(part.streaming_content) == sample.read_bytes()[100:200]
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_a_missing_object_is_a_404_in_the_portal_not_a_crash(s3_media, api, visual, media_samples):
    submission = upload(api, visual, media_samples / "sample.png")
    s3_media.client().delete_object(Bucket=BUCKET, Key=submission.media.name)
    lead = Client()
    lead.force_login(get_user_model().objects.create_user("lead", is_superuser=True))

    assert lead.get(f"/portal/item/{submission.pk}/media/").status_code == 404
