"""The Hive client against the live simulator over loopback HTTP: every endpoint
type, sync and async, through the normaliser."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from moderation.hive.client import Content, HiveClient
from moderation.hive.errors import HiveError
from moderation.hive.normalise import normalise
from moderation.hive.rules import ENDPOINT_RULES

SEVERITY = {"text", "speech"}


@pytest.fixture(autouse=True)
def fresh(simulator):
    requests.post(f"{simulator}/control", json={"reset": True, "callback_delay_ms": 20}, timeout=5)


@pytest.fixture
def receiver():
    """A loopback endpoint standing in for our callback URL."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/cb", received
    server.shutdown()


def content_for(endpoint_type: str, media_samples) -> tuple[Content, object]:
    if endpoint_type == "text":
        return Content(text_data="have a nice day, you idiot"), None
    sample = media_samples / ("sample.mp3" if endpoint_type == "speech" else "sample.mp4")
    handle = open(sample, "rb")
    return Content(media=handle, media_name=sample.name), handle


@pytest.mark.parametrize("endpoint_type", sorted(ENDPOINT_RULES))
def test_sync_calls_for_every_endpoint_type_normalise_to_scores(simulator, media_samples, endpoint_type):
    content, handle = content_for(endpoint_type, media_samples)
    try:
        answer = HiveClient(api_key=f"sim-{endpoint_type}-live", base_url=simulator).submit_sync(
            content, metadata="sub-1")
    finally:
        if handle:
            handle.close()
    assert json.loads(answer.raw) == answer.result
    result = normalise(answer.result, severity_scale=endpoint_type in SEVERITY)
    assert result.scores and all(0 <= s <= 1 for s in result.scores.values())
    assert result.metadata == "sub-1"
    if endpoint_type != "text":
        assert len(result.timeline) >= 2  # video frames / speech segments over time
    if endpoint_type == "speech":
        assert result.transcript


@pytest.mark.parametrize("endpoint_type", sorted(ENDPOINT_RULES))
def test_async_calls_for_every_endpoint_type_are_answered_by_callback(simulator, media_samples, receiver,
                                                                      endpoint_type):
    callback_url, received = receiver
    content, handle = content_for(endpoint_type, media_samples)
    try:
        ack = HiveClient(api_key=f"sim-{endpoint_type}-live", base_url=simulator).submit_async(
            content, metadata="sub-2", callback_url=callback_url)
    finally:
        if handle:
            handle.close()
    body = received.get(timeout=10)
    assert body["id"] == ack.task_id
    assert normalise(body, severity_scale=endpoint_type in SEVERITY).scores


def test_the_same_content_scores_the_same_every_time(simulator, media_samples):
    client = HiveClient(api_key="sim-visual-live", base_url=simulator)
    scores = []
    for _ in range(2):
        with open(media_samples / "sample.png", "rb") as handle:
            scores.append(normalise(client.submit_sync(Content(media=handle), metadata="x").result).scores)
    assert scores[0] == scores[1]


def test_a_bad_key_is_a_permanent_error_with_hives_message(simulator):
    with pytest.raises(HiveError) as caught:
        HiveClient(api_key="nope", base_url=simulator).submit_sync(Content(text_data="hi"), metadata="x")
    assert caught.value.permanent and caught.value.status_code == 401


def test_an_injected_429_is_transient_with_retry_after(simulator):
    requests.post(f"{simulator}/control", json={"fail_next": 1, "error_status": 429}, timeout=5)
    with pytest.raises(HiveError) as caught:
        HiveClient(api_key="sim-text-live", base_url=simulator).submit_sync(Content(text_data="hi"), metadata="x")
    assert not caught.value.permanent
    assert caught.value.retry_after == 1
    assert "rate limited" in caught.value.message


def test_a_field_the_endpoint_type_does_not_take_is_a_permanent_400(simulator):
    with pytest.raises(HiveError) as caught:
        HiveClient(api_key="sim-text-live", base_url=simulator).submit_sync(
            Content(url="https://cdn.example.com/a.png"), metadata="x")
    assert caught.value.permanent and caught.value.status_code == 400
