"""The outgoing-HTTP choke point, against a real HTTP server on loopback.

The test settings allow private URLs (the server is on 127.0.0.1), so tests
about refusing them pass allow_private=False explicitly.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from moderation.services import safe_http
from moderation.services.safe_http import (
    FetchError,
    FetchTooLarge,
    UnsafeURL,
    check_url,
    fetch_to_file,
    safe_request,
    validate_url_syntax,
)

BODY = b"\x89PNG" + b"x" * 996


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        path = self.path
        if path == "/ok":
            self.reply(200, BODY, content_type="image/png")
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(302, f"/redirect/{left - 1}" if left > 1 else "/ok")
        elif path == "/to-localhost":
            self.redirect(302, f"http://localhost:{self.server.server_port}/ok")
        elif path == "/big-declared":
            self.reply(200, b"x" * 5000)
        elif path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            self.wfile.write(b"x" * 5000)
        elif path == "/slow":
            time.sleep(1)
            self.reply(200, b"late")
        else:
            self.reply(404, b"not here")

    def do_POST(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.redirect(303, "/ok")

    def reply(self, status: int, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def clear_hits():
    Handler.hits.clear()


def resolve_127_as_public(monkeypatch) -> None:
    """Pretend 127.0.0.1 is a public host, so a test can start from an allowed URL."""
    real = safe_http._resolve
    monkeypatch.setattr(
        safe_http, "_resolve", lambda host, port: ["93.184.216.34"] if host == "127.0.0.1" else real(host, port)
    )


# --- What is refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "javascript:alert(1)", "", "example.com/a.png"]
)
def test_it_refuses_schemes_other_than_http_and_https(url):
    with pytest.raises(UnsafeURL, match="only http and https"):
        validate_url_syntax(url)
    with pytest.raises(UnsafeURL):
        check_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://", "https:///a.png", "http://:80/a.png"])
def test_it_refuses_a_url_without_a_host(url):
    with pytest.raises(UnsafeURL, match="no host"):
        validate_url_syntax(url)


def test_it_refuses_a_url_with_a_bad_port():
    with pytest.raises(UnsafeURL, match="not a valid URL"):
        validate_url_syntax("http://example.com:99999/")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.0.0.1",
        "192.168.1.10",
        "169.254.169.254",
        "[::1]",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "2130706433",  # 127.0.0.1 written as one number
        "224.0.0.1",
    ],
)
def test_it_refuses_private_and_reserved_addresses_when_not_allowed(host):
    with pytest.raises(UnsafeURL, match="private or reserved"):
        check_url(f"http://{host}/a.png", allow_private=False)


def test_it_allows_a_host_that_resolves_to_public_addresses_only(monkeypatch):
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["93.184.216.34", "2606:2800:220:1::1"])
    check_url("https://media.example/a.png", allow_private=False)


def test_it_refuses_a_host_when_any_of_its_addresses_is_private(monkeypatch):
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(UnsafeURL, match="10.0.0.7"):
        check_url("https://media.example/a.png", allow_private=False)


def test_it_follows_the_allow_private_urls_setting_by_default(settings):
    settings.ALLOW_PRIVATE_URLS = False
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.1/a.png")
    settings.ALLOW_PRIVATE_URLS = True
    check_url("http://127.0.0.1/a.png")


def test_it_never_connects_to_a_refused_url(server):
    with pytest.raises(UnsafeURL):
        safe_request("GET", f"{server}/ok", allow_private=False)
    assert Handler.hits == []


# --- Redirects ------------------------------------------------------------------------


def test_it_follows_redirects_up_to_the_limit(server):
    response = safe_request("GET", f"{server}/redirect/3", max_redirects=3)
    assert response.status_code == 200
    assert response.url == f"{server}/ok"


def test_it_refuses_a_redirect_chain_longer_than_the_limit(server):
    with pytest.raises(requests.TooManyRedirects):
        safe_request("GET", f"{server}/redirect/4", max_redirects=3)
    assert len(Handler.hits) == 4


def test_it_refuses_a_redirect_to_a_private_address(server, monkeypatch):
    resolve_127_as_public(monkeypatch)
    with pytest.raises(UnsafeURL, match="localhost"):
        safe_request("GET", f"{server}/to-localhost", allow_private=False)
    assert Handler.hits == ["GET /to-localhost"]


def test_it_turns_a_post_into_a_get_on_a_303(server):
    response = safe_request("POST", f"{server}/submit", json={"a": 1})
    assert response.status_code == 200
    assert Handler.hits == ["POST /submit", "GET /ok"]


# --- Fetching into a file ---------------------------------------------------------------


def test_it_fetches_the_body_into_the_file(server):
    dest = io.BytesIO()
    result = fetch_to_file(f"{server}/redirect/1", dest, max_bytes=10_000)
    assert dest.getvalue() == BODY
    assert (result.size, result.content_type, result.final_url) == (len(BODY), "image/png", f"{server}/ok")


def test_it_refuses_a_body_declared_larger_than_the_limit_before_reading_it(server):
    dest = io.BytesIO()
    with pytest.raises(FetchTooLarge, match="5000"):
        fetch_to_file(f"{server}/big-declared", dest, max_bytes=4000)
    assert dest.getvalue() == b""


def test_it_stops_a_body_without_a_length_at_the_limit(server):
    dest = io.BytesIO()
    with pytest.raises(FetchTooLarge):
        fetch_to_file(f"{server}/big-undeclared", dest, max_bytes=4000)
    assert len(dest.getvalue()) <= 4000


def test_it_reports_the_status_of_an_error_response(server):
    with pytest.raises(FetchError, match="404"):
        fetch_to_file(f"{server}/missing", io.BytesIO(), max_bytes=10_000)


def test_it_gives_up_on_a_server_that_does_not_answer_in_time(server):
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_to_file(f"{server}/slow", io.BytesIO(), max_bytes=10_000, timeout=(1, 0.2))
    assert time.monotonic() - started < 0.9


def test_it_reports_a_refused_connection_as_a_fetch_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="could not fetch"):
        fetch_to_file(f"http://127.0.0.1:{port}/a.png", io.BytesIO(), max_bytes=10_000)


def test_it_turns_a_too_long_redirect_chain_into_a_fetch_error(server):
    with pytest.raises(FetchError, match="redirects"):
        fetch_to_file(f"{server}/redirect/9", io.BytesIO(), max_bytes=10_000)


def test_it_lets_an_unsafe_url_through_as_unsafe_not_as_a_fetch_error(server):
    with pytest.raises(UnsafeURL):
        fetch_to_file(f"{server}/ok", io.BytesIO(), max_bytes=10_000, allow_private=False)
