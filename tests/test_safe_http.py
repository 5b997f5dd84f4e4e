"""The outgoing-HTTP choke point, against a real HTTP server on loopback.

The test settings allow private URLs (the server is on 127.0.0.1), so tests
about refusing them pass allow_private=False explicitly.
"""

from __future__ import annotations

import io
import logging
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
from tests.hostile_net import PUBLIC_ADDRESS, drip_server, rebinding_dns, refuse_beyond_loopback  # noqa: F401

PRIVATE = "The URL's host resolves to a private or reserved address."

BODY = b"\x89PNG" + b"x" * 996


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []
    hosts: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.hosts.append(self.headers["Host"])
        path = self.path
        if path == "/ok":
            self.reply(200, BODY, content_type="image/png")
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(302, f"/redirect/{left - 1}" if left > 1 else "/ok")
        elif path == "/big-declared":
            self.reply(200, b"x" * 5000)
        elif path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            self.wfile.write(b"x" * 5000)
        elif path == "/slow":
            time.sleep(5)
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
    Handler.hosts.clear()


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def logged(caplog) -> list[logging.LogRecord]:
    """What safe_http told the operators."""
    return [r for r in caplog.records if r.name == "moderation.safe_http"]


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
    with pytest.raises(UnsafeURL, match="private or reserved"):
        check_url("https://media.example/a.png", allow_private=False)


def test_the_refusal_names_no_host_or_address_but_the_log_does(monkeypatch, caplog):
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["10.0.0.7"])
    with caplog.at_level(logging.INFO, logger="moderation.safe_http"):
        with pytest.raises(UnsafeURL) as refused:
            check_url("https://media.example/a.png", allow_private=False)
    assert str(refused.value) == PRIVATE
    assert [(r.host, r.address) for r in logged(caplog)] == [("media.example", "10.0.0.7")]


def test_a_name_that_does_not_resolve_is_reported_without_the_resolvers_words(monkeypatch, caplog):
    def no_such_name(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(safe_http, "_resolve", no_such_name)
    with caplog.at_level(logging.INFO, logger="moderation.safe_http"):
        with pytest.raises(requests.ConnectionError) as failed:
            check_url("https://intranet.corp.example/a.png", allow_private=False)
    assert str(failed.value) == "The URL's host does not resolve."
    [record] = logged(caplog)
    assert record.host == "intranet.corp.example" and "Name or service not known" in record.error


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


def test_it_refuses_a_redirect_to_a_private_address(server, caplog):
    local = f"http://localhost:{port_of(server)}/ok"
    with responses.RequestsMock() as partner_site, caplog.at_level(logging.INFO, logger="moderation.safe_http"):
        partner_site.get("https://media.partner.test/a.png", status=302, headers={"Location": local})
        partner_site.add_passthru(local)  # the second hop is a real connection
        with pytest.raises(UnsafeURL, match="private or reserved"):
            safe_request("GET", "https://media.partner.test/a.png", allow_private=False)
    assert Handler.hits == []
    assert [r.host for r in logged(caplog)] == ["localhost"]


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
    assert time.monotonic() - started < 3  # the answer takes 5 s


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


# --- DNS rebinding: the connection goes to the address that was checked -------------------


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_reached(server, monkeypatch):
    """The DNS server answers the check with a public address and the next
    lookup with 127.0.0.1: only the checked address is ever dialled."""
    rebinding_dns(monkeypatch, "media.partner.test")
    dialled = refuse_beyond_loopback(monkeypatch)
    port = port_of(server)
    with pytest.raises(requests.ConnectionError):
        safe_request("GET", f"http://media.partner.test:{port}/ok", allow_private=False)
    assert Handler.hits == []
    assert dialled == [(PUBLIC_ADDRESS, port)]


def test_the_address_is_checked_when_connecting_not_only_before(server, monkeypatch):
    """`_resolve` answers public; the operating system would answer loopback for
    `localhost`. The portal connects where `_resolve` said, having checked it."""
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: [PUBLIC_ADDRESS])
    dialled = refuse_beyond_loopback(monkeypatch)
    port = port_of(server)
    with pytest.raises(requests.ConnectionError):
        safe_request("GET", f"http://localhost:{port}/ok", allow_private=False)
    assert Handler.hits == []
    assert dialled == [(PUBLIC_ADDRESS, port)]


def test_the_connection_to_the_checked_address_still_names_the_host(server, monkeypatch):
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["127.0.0.1"])
    port = port_of(server)
    response = safe_request("GET", f"http://media.partner.test:{port}/ok", allow_private=True)
    assert response.status_code == 200
    assert Handler.hosts == [f"media.partner.test:{port}"]


# --- HTTPS: the certificate is checked against the URL's name, not the address -----------

TLS_HOST = "media.partner.test"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 whose certificate, from a throwaway CA,
    names TLS_HOST only. Yields (base port, CA file, server names sent by clients)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hive Portal test CA")])
    now = datetime.now(timezone.utc)

    def certificate(subject, public_key, extension):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
                .add_extension(extension, critical=False).sign(ca_key, hashes.SHA256()))

    ca = certificate(ca_name, ca_key.public_key(), x509.BasicConstraints(ca=True, path_length=None))
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_HOST)]), key.public_key(),
                       x509.SubjectAlternativeName([x509.DNSName(TLS_HOST)]))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    names: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "leaf.pem")
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_port, str(folder / "ca.pem"), names
    httpd.shutdown()
    httpd.server_close()


def test_https_to_the_checked_address_sends_the_name_and_verifies_the_certificate_for_it(tls_server, monkeypatch):
    port, ca_file, names = tls_server
    names.clear()
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["127.0.0.1"])
    response = safe_request("GET", f"https://{TLS_HOST}:{port}/ok", allow_private=True, verify=ca_file)
    assert response.status_code == 200
    assert names == [TLS_HOST]  # SNI
    assert Handler.hosts == [f"{TLS_HOST}:{port}"]


def test_https_refuses_a_certificate_for_another_name_at_the_same_address(tls_server, monkeypatch):
    port, ca_file, _ = tls_server
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(requests.exceptions.SSLError, match="Hostname mismatch"):
        safe_request("GET", f"https://other.partner.test:{port}/ok", allow_private=True, verify=ca_file)
    assert Handler.hits == []


# --- A time limit on the whole exchange ----------------------------------------------------


def test_a_server_dribbling_its_headers_is_cut_off_at_the_deadline(drip_server, monkeypatch):
    monkeypatch.setattr(safe_http, "FETCH_DEADLINE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than 0.5 s"):
        fetch_to_file(f"{drip_server}/headers", io.BytesIO(), max_bytes=10_000)
    assert time.monotonic() - started < 3  # the headers alone take 6 s


def test_a_server_dribbling_its_body_is_cut_off_at_the_deadline(drip_server, monkeypatch):
    monkeypatch.setattr(safe_http, "FETCH_DEADLINE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than 0.5 s"):
        fetch_to_file(f"{drip_server}/body", io.BytesIO(), max_bytes=10_000)
    assert time.monotonic() - started < 3  # the body alone takes 6 s


def test_a_server_that_never_finishes_the_tls_handshake_is_cut_off_at_the_deadline(monkeypatch):
    monkeypatch.setattr(safe_http, "FETCH_DEADLINE_SECONDS", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        started = time.monotonic()
        with pytest.raises(FetchError, match="longer than 0.5 s"):
            fetch_to_file(f"https://127.0.0.1:{silent.getsockname()[1]}/a.png", io.BytesIO(), max_bytes=10_000)
    assert time.monotonic() - started < 3  # each read of the handshake may take the 5 s connect timeout
