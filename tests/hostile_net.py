"""A hostile network for the outbound-HTTP tests: a DNS server that changes its
answer after the portal checked it, a guard that keeps every connection on
loopback, and a partner server that answers a few bytes at a time.

Test modules import the `drip_server` fixture and the helpers they need."""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PUBLIC_ADDRESS = "93.184.216.34"


def refuse_beyond_loopback(monkeypatch) -> list[tuple[str, int]]:
    """Record every address a socket connects to and refuse all but loopback,
    so a test can show where the portal would have connected without leaving
    the machine. Returns the record."""
    attempts: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(tuple(address[:2]))
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "the tests stay on loopback")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def rebinding_dns(monkeypatch, name: str) -> None:
    """The system resolver answers `name` with a public address once, then with
    127.0.0.1 (DNS rebinding): whoever asks first sees a harmless host."""
    real_getaddrinfo = socket.getaddrinfo
    answers = iter([PUBLIC_ADDRESS])

    def getaddrinfo(host, port, *args, **kwargs):
        if host == name:
            host = next(answers, "127.0.0.1")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class DripHandler(BaseHTTPRequestHandler):
    """200 OK, then one header line (or, under /body, one body byte) every
    INTERVAL seconds for SECONDS. Every read gets bytes long before a read
    timeout, so only a limit on the whole exchange ends it sooner."""

    INTERVAL = 0.1
    SECONDS = 6.0

    def do_GET(self) -> None:
        self.drip()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.drip()

    def drip(self) -> None:
        steps = int(self.SECONDS / self.INTERVAL)
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            if self.path.endswith("/body"):
                self.wfile.write(f"Content-Length: {steps}\r\n\r\n".encode())
                for _ in range(steps):
                    time.sleep(self.INTERVAL)
                    self.wfile.write(b"x")
            else:
                for n in range(steps):
                    time.sleep(self.INTERVAL)
                    self.wfile.write(f"X-Drip-{n}: .\r\n".encode())
                self.wfile.write(b"Content-Length: 2\r\n\r\nok")
        except OSError:
            pass  # the client hung up, as it should

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def drip_server() -> Iterator[str]:
    """The slow partner server's base URL, on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
