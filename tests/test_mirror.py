"""Mirroring a URL into storage, over real HTTP to a media server on loopback;
the one DNS resolver in safe_http is patched for the private-address tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from moderation.models import Submission
from moderation.services import safe_http
from moderation.services.mirror import MirrorError, mirror_url
from tests.hostile_net import PUBLIC_ADDRESS, rebinding_dns, refuse_beyond_loopback


@pytest.fixture
def media_server(media_samples):
    """A partner's media host on 127.0.0.1 serving sample.jpg; its port and the paths asked for."""
    body = (media_samples / "sample.jpg").read_bytes()
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_port, asked
    server.shutdown()
    server.server_close()


@pytest.fixture
def submission_for(make_project, partner):
    project = make_project("pics", url_mirror="always")

    def make(url: str) -> Submission:
        return Submission.objects.create(project=project, partner=partner, source="url", url=url)

    return make


def test_the_media_is_fetched_into_storage(media_server, submission_for):
    port, asked = media_server
    submission = submission_for(f"http://127.0.0.1:{port}/a.jpg")  # the test settings allow private URLs
    mirror_url(submission)
    submission.refresh_from_db()
    assert asked == ["/a.jpg"]
    assert submission.media and (submission.media_kind, submission.media_mime) == ("image", "image/jpeg")


def test_a_host_that_resolves_inside_is_refused_without_naming_the_address(submission_for, settings, monkeypatch):
    settings.ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["10.0.0.9"])
    with pytest.raises(MirrorError) as refused:
        mirror_url(submission_for("https://cdn.partner.example/a.jpg"))
    assert refused.value.permanent
    assert str(refused.value) == (
        "the URL may not be fetched: The URL's host resolves to a private or reserved address.")


def test_a_host_that_rebinds_to_loopback_after_the_check_is_never_fetched(media_server, submission_for, settings,
                                                                          monkeypatch):
    port, asked = media_server
    settings.ALLOW_PRIVATE_URLS = False
    rebinding_dns(monkeypatch, "cdn.partner.example")
    dialled = refuse_beyond_loopback(monkeypatch)
    with pytest.raises(MirrorError) as failed:
        mirror_url(submission_for(f"http://cdn.partner.example:{port}/a.jpg"))
    assert not failed.value.permanent  # a network error: tried again later
    assert asked == []
    assert [address for address in dialled if address[1] == port] == [(PUBLIC_ADDRESS, port)]
