"""The Hive HTTP client: every outcome of a call, with Hive patched by `responses`."""

from __future__ import annotations

import email.utils
import io
import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder

from moderation.hive.client import AsyncAck, Content, HiveClient, SyncResult
from moderation.hive.errors import HiveError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hive"
BASE = "https://hive.test"
SYNC = f"{BASE}/api/v2/task/sync"
ASYNC = f"{BASE}/api/v2/task/async"
KEY = "hive-project-key-do-not-leak"
CALLBACK = "https://portal.test/hive/callback/abc/token/"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def hive():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def hive_client() -> HiveClient:
    return HiveClient(KEY, base_url=BASE, connect_timeout=1, read_timeout=2)


def text_content() -> Content:
    return Content(text_data="hello")


def raised(call) -> HiveError:
    with pytest.raises(HiveError) as caught:
        call()
    return caught.value


# --- content -------------------------------------------------------------

@pytest.mark.parametrize("fields", [{}, {"url": "https://x.test/a.jpg", "text_data": "hi"},
                                    {"media": io.BytesIO(b"x"), "url": "https://x.test/a.jpg"}])
def test_content_needs_exactly_one_of_media_url_or_text(fields):
    with pytest.raises(ValueError):
        Content(**fields)


# --- results -------------------------------------------------------------

def test_a_sync_result_keeps_the_raw_body_verbatim(hive, hive_client):
    body = fixture_text("video.json")
    hive.add(responses.POST, SYNC, body=body, status=200, content_type="application/json")
    result = hive_client.submit_sync(text_content(), metadata="sub-1")
    assert isinstance(result, SyncResult)
    assert result.raw == body
    assert result.result == json.loads(body)
    assert result.status_code == 200
    assert result.elapsed >= 0


def test_a_non_ascii_body_without_charset_is_read_as_utf8(hive, hive_client):
    body = '{"id": "t", "metadata": "café ✓", "status": []}'
    hive.add(responses.POST, SYNC, body=body.encode("utf-8"), status=200, content_type="application/octet-stream")
    assert hive_client.submit_sync(text_content(), metadata="m").raw == body


@pytest.mark.parametrize("fixture", ["ack_task_id.json", "ack_id.json", "ack_status_task_id.json"])
def test_an_async_ack_gives_the_task_id_wherever_hive_puts_it(hive, hive_client, fixture):
    body = fixture_text(fixture)
    hive.add(responses.POST, ASYNC, body=body, status=200, content_type="application/json")
    ack = hive_client.submit_async(text_content(), metadata="sub-1", callback_url=CALLBACK)
    assert isinstance(ack, AsyncAck)
    assert ack.task_id == "f1e2d3c4-5a0e-11f0-9c1a-0242ac120002"
    assert ack.raw == body


def test_a_top_level_task_id_wins_over_id(hive, hive_client):
    hive.add(responses.POST, ASYNC, json={"task_id": "from-task-id", "id": "from-id"})
    assert hive_client.submit_async(text_content(), metadata="m", callback_url=CALLBACK).task_id == "from-task-id"


def test_an_ack_without_a_task_id_is_transient(hive, hive_client):
    hive.add(responses.POST, ASYNC, body=fixture_text("ack_without_id.json"), status=200)
    error = raised(lambda: hive_client.submit_async(text_content(), metadata="m", callback_url=CALLBACK))
    assert not error.permanent
    assert "ack without a task id" in error.message


@pytest.mark.parametrize("body", ["<html>Bad gateway</html>", "", "[1, 2]"])
def test_a_2xx_body_that_is_not_a_json_object_is_transient(hive, hive_client, body):
    hive.add(responses.POST, SYNC, body=body, status=200)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert (error.permanent, error.status_code) == (False, 200)


# --- HTTP errors ---------------------------------------------------------

def test_a_429_is_transient_with_retry_after_seconds_and_hives_message(hive, hive_client):
    hive.add(responses.POST, SYNC, body=fixture_text("rate_limited_429.json"), status=429,
             headers={"Retry-After": "17"})
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert not error.permanent
    assert error.status_code == 429
    assert error.retry_after == 17.0
    assert "Project has been rate limited" in error.message


def test_a_429_retry_after_may_be_an_http_date(hive, hive_client):
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    hive.add(responses.POST, SYNC, json={"return_code": 429, "message": "Project has been rate limited"},
             status=429, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)})
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert not error.permanent
    assert 110 <= error.retry_after <= 121


def test_a_429_without_retry_after_leaves_the_delay_to_the_caller(hive, hive_client):
    hive.add(responses.POST, SYNC, json={"return_code": 429, "message": "Project has been rate limited"}, status=429)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert (error.permanent, error.retry_after) == (False, None)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(hive, hive_client, status):
    hive.add(responses.POST, SYNC, json={"message": "upstream unavailable"}, status=status)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert (error.permanent, error.status_code) == (False, status)
    assert "upstream unavailable" in error.message


@pytest.mark.parametrize("status, message", [
    (401, "Invalid API token"),
    (403, "Forbidden: project key revoked"),
    (405, "Insufficient balance"),
    (400, "text_data exceeds 1024 characters"),
    (404, "Not found"),
])
def test_client_errors_are_permanent_with_hives_message(hive, hive_client, status, message):
    hive.add(responses.POST, SYNC, json={"return_code": status, "message": message}, status=status)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert (error.permanent, error.status_code) == (True, status)
    assert message in error.message


def test_a_plain_text_error_body_becomes_the_message_cut_to_size(hive, hive_client):
    hive.add(responses.POST, SYNC, body="x" * 5000, status=400)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert "x" * 400 in error.message
    assert len(error.message) < 600
    assert len(error.body) < 600


def test_a_redirect_is_transient_and_not_followed(hive, hive_client):
    hive.add(responses.POST, SYNC, status=302, headers={"Location": "https://elsewhere.test/api/v2/task/sync"})
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert (error.permanent, error.status_code) == (False, 302)
    assert "elsewhere.test" in error.message
    assert len(hive.calls) == 1


# --- network errors ------------------------------------------------------

@pytest.mark.parametrize("exc", [requests.ConnectionError("Connection refused"), requests.ConnectTimeout("slow"),
                                 requests.ReadTimeout("slower")])
def test_network_errors_and_timeouts_are_transient(hive, hive_client, exc):
    hive.add(responses.POST, SYNC, body=exc)
    error = raised(lambda: hive_client.submit_sync(text_content(), metadata="m"))
    assert not error.permanent
    assert error.status_code is None


def test_a_refused_connection_on_a_real_socket_is_transient():
    with socket.socket() as sock:  # find a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = requests.Session()
    session.trust_env = False
    client = HiveClient(KEY, base_url=f"http://127.0.0.1:{port}", connect_timeout=1, read_timeout=1, session=session)
    error = raised(lambda: client.submit_sync(text_content(), metadata="m"))
    assert not error.permanent
    assert "could not reach Hive" in error.message


def test_the_api_key_never_reaches_logs_or_errors(hive, hive_client, caplog):
    hive.add(responses.POST, SYNC, json={"message": "Invalid API token"}, status=401)
    hive.add(responses.POST, ASYNC, body=requests.ConnectionError("Connection refused"))
    errors = [raised(lambda: hive_client.submit_sync(text_content(), metadata="m")),
              raised(lambda: hive_client.submit_async(text_content(), metadata="m", callback_url=CALLBACK))]
    assert caplog.records  # both failures were logged
    assert KEY not in caplog.text
    assert all(KEY not in f"{e} {e!r} {e.body}" for e in errors)
    assert KEY not in repr(hive_client)


# --- the request ---------------------------------------------------------

def test_it_authenticates_with_the_project_token(hive, hive_client):
    hive.add(responses.POST, SYNC, json={"id": "t", "status": []})
    hive_client.submit_sync(text_content(), metadata="m")
    assert hive.calls[0].request.headers["Authorization"] == f"Token {KEY}"


def test_defaults_come_from_settings(hive, settings):
    settings.HIVE_API_URL = "https://configured-hive.test/"
    settings.HIVE_CONNECT_TIMEOUT, settings.HIVE_READ_TIMEOUT = 3.0, 42.0
    hive.add(responses.POST, "https://configured-hive.test/api/v2/task/sync", json={"id": "t", "status": []})
    HiveClient(KEY).submit_sync(text_content(), metadata="m")
    assert hive.calls[0].request.req_kwargs["timeout"] == (3.0, 42.0)


def test_media_goes_as_multipart_with_metadata_and_no_callback_for_sync(hive, hive_client, media_samples):
    sample = media_samples / "sample.mp4"
    hive.add(responses.POST, SYNC, json={"id": "t", "status": []})
    with sample.open("rb") as media:
        hive_client.submit_sync(Content(media=media, media_name="sub-1.mp4", media_content_type="video/mp4"),
                           metadata="sub-1", options={"language": "en"})
    request = hive.calls[0].request
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(request.headers["Content-Length"]) == len(request.body)
    assert sample.read_bytes() in request.body
    assert b'name="media"; filename="sub-1.mp4"' in request.body
    assert b"Content-Type: video/mp4" in request.body
    assert b'name="metadata"\r\n\r\nsub-1\r\n' in request.body
    assert b'name="options"\r\n\r\n{"language": "en"}\r\n' in request.body
    assert b'name="callback_url"' not in request.body


def test_media_is_rewound_before_it_is_sent(hive, hive_client, media_samples):
    """The pipeline sniffs the file first, and a retry sends it again."""
    sample = media_samples / "sample.png"
    hive.add(responses.POST, ASYNC, json={"task_id": "t"})
    with sample.open("rb") as media:
        media.read(262)
        hive_client.submit_async(Content(media=media, media_name="a.png", media_content_type="image/png"),
                            metadata="m", callback_url=CALLBACK)
    assert sample.read_bytes() in hive.calls[0].request.body


def test_async_sends_the_callback_url(hive, hive_client, media_samples):
    hive.add(responses.POST, ASYNC, json={"task_id": "t"})
    with (media_samples / "sample.jpg").open("rb") as media:
        hive_client.submit_async(Content(media=media, media_name="a.jpg", media_content_type="image/jpeg"),
                            metadata="sub-2", callback_url=CALLBACK)
    assert f'name="callback_url"\r\n\r\n{CALLBACK}\r\n'.encode() in hive.calls[0].request.body


def test_url_is_a_form_field(hive, hive_client):
    hive.add(responses.POST, ASYNC, json={"task_id": "t"})
    hive_client.submit_async(Content(url="https://cdn.test/a.jpg?sig=1&x=2"), metadata="sub-3", callback_url=CALLBACK)
    request = hive.calls[0].request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body) == {"url": ["https://cdn.test/a.jpg?sig=1&x=2"], "metadata": ["sub-3"],
                                      "callback_url": [CALLBACK]}


def test_text_is_a_form_field_with_options_as_json(hive, hive_client):
    hive.add(responses.POST, SYNC, json={"id": "t", "status": []})
    hive_client.submit_sync(Content(text_data="héllo & bye"), metadata="sub-4", options={"language": "fr"})
    fields = parse_qs(hive.calls[0].request.body)
    assert fields == {"text_data": ["héllo & bye"], "metadata": ["sub-4"], "options": ['{"language": "fr"}']}


# --- streaming -----------------------------------------------------------

class RecordingAdapter(HTTPAdapter):
    """Sees the body exactly as requests hands it to the transport."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list = []

    def send(self, request, **kwargs):
        self.bodies.append(request.body)
        return super().send(request, **kwargs)


def test_the_upload_body_is_a_stream_not_bytes(hive, media_samples):
    adapter = RecordingAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    hive.add(responses.POST, SYNC, json={"id": "t", "status": []})
    with (media_samples / "sample.webm").open("rb") as media:
        HiveClient(KEY, base_url=BASE, session=session).submit_sync(
            Content(media=media, media_name="a.webm", media_content_type="video/webm"), metadata="m")
    assert isinstance(adapter.bodies[0], MultipartEncoder)


class RecordingFile(io.FileIO):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)


def test_a_large_upload_is_read_in_small_chunks(tmp_path):
    """Through a real loopback socket: the file is never read whole."""
    big = tmp_path / "big.mp4"
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB
    big.write_bytes(payload)
    received: list[bytes] = []

    class Hive(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps({"task_id": "t-big"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = requests.Session()
    session.trust_env = False
    try:
        client = HiveClient(KEY, base_url=f"http://127.0.0.1:{server.server_port}", session=session,
                            connect_timeout=2, read_timeout=10)
        with RecordingFile(big) as media:
            ack = client.submit_async(Content(media=media, media_name="big.mp4", media_content_type="video/mp4"),
                                      metadata="m", callback_url=CALLBACK)
    finally:
        server.shutdown()
        server.server_close()
    assert ack.task_id == "t-big"
    assert payload in received[0]
    assert media.reads and all(0 < size <= 1024 * 1024 for size in media.reads)
