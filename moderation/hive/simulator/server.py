"""A small threaded WSGI server running the simulator alone, on loopback.

Used by `run_hive_simulator` and by tests (ours and other engineers' end-to-end
tests) that need a real Hive-like service on a port: `start_simulator(port=0)`.
"""

from __future__ import annotations

import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import django
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse

URLCONF = "moderation.hive.simulator.standalone_urls"
_DRAIN_CHUNK = 64 * 1024


class SimulatorHandler(WSGIHandler):
    """Django's WSGI handler, routed to the simulator's URLconf and nothing else.

    No middleware: the portal's stack (SSL redirect, host checks, sessions) is for
    people and browsers, and would redirect or refuse a machine-to-machine test
    tool running on plain-HTTP loopback under production-like settings."""

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware builds for an empty settings.MIDDLEWARE.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response)

    def get_response(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = URLCONF  # Django honours a per-request URLconf
        response = super().get_response(request)
        _drain(request)
        return response


def _drain(request: HttpRequest) -> None:
    """Read what the view did not (a 401 before a big upload was parsed), so the
    client receives our answer instead of a connection reset mid-upload."""
    try:
        while request.read(_DRAIN_CHUNK):
            pass
    except Exception:  # the body was already consumed another way: nothing left
        pass


class QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, so `latency_ms` delays overlap like at a real service."""

    daemon_threads = True
    allow_reuse_address = True


def make_server(host: str = "127.0.0.1", port: int = 0) -> ThreadingWSGIServer:
    django.setup()
    server = ThreadingWSGIServer((host, port), QuietRequestHandler)
    server.set_app(SimulatorHandler())
    return server


def base_url(server: ThreadingWSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def start_simulator(port: int = 0, host: str = "127.0.0.1") -> tuple[ThreadingWSGIServer, str]:
    """Serve the simulator from a background thread; returns (server, base URL).

    Port 0 picks a free port. The base URL answers both `/api/v2/task/...` and
    `/simulator/api/v2/task/...`."""
    server = make_server(host, port)
    thread = threading.Thread(target=server.serve_forever, name="hive-simulator", daemon=True)
    thread.start()
    return server, base_url(server)


def stop_simulator(server: ThreadingWSGIServer) -> None:
    server.shutdown()
    server.server_close()
