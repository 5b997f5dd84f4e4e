"""A partner's webhook endpoint for the tests: a real HTTP server on loopback
that checks each request with the `standardwebhooks` verifier. Test modules
import `receiver` (the fixture) and the classes they need from here."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A partner's endpoint: a real HTTP server on 127.0.0.1 that answers 401
    unless the `standardwebhooks` verifier accepts the request under one of
    `secrets`, and otherwise replies from `script` (then 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.secrets: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that timed out and left
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verifies(self, body: bytes, headers: dict) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def _reply(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if not self.verifies(received.body, received.headers):
                return Reply(401, body=b"bad signature")
            return self.script.pop(0) if self.script else Reply()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = receiver._reply(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args) -> None:
                pass

        return Handler


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
