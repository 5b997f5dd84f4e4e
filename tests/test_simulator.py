"""The built-in Hive simulator, exercised over real loopback HTTP like a client would."""

from __future__ import annotations

import importlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.test import Client, override_settings
from django.urls import clear_url_caches

from moderation.hive.simulator.engine import VISUAL_HEADS

VISUAL_TYPES = ("visual", "ocr", "logo", "scene", "face")


@pytest.fixture(scope="module")
def sim_url(simulator):
    return simulator


@pytest.fixture(scope="module")
def http():
    session = requests.Session()
    session.trust_env = False  # loopback only, never through an env proxy
    yield session
    session.close()


@pytest.fixture(autouse=True)
def fresh_simulator(sim_url, http):
    """Defaults and zero stats for every test; callbacks fast; none left in flight after."""
    http.post(f"{sim_url}/control", json={"reset": True, "callback_delay_ms": 20}).raise_for_status()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        callbacks = http.get(f"{sim_url}/stats").json()["callbacks"]
        if callbacks["sent"] + callbacks["given_up"] >= callbacks["scheduled"]:
            break
        time.sleep(0.01)


def task(http, sim_url, key, mode="sync", files=None, **data):
    return http.post(
        f"{sim_url}/api/v2/task/{mode}",
        headers={"Authorization": f"Token {key}"},
        data=data,
        files=files,
        timeout=10,
    )


def upload(media_samples: Path, name: str) -> dict:
    return {"media": (name, (media_samples / name).read_bytes())}


def first_entry(body: dict) -> dict:
    assert len(body["status"]) == 1
    return body["status"][0]


def outputs(body: dict) -> list:
    entry = first_entry(body)
    assert entry["status"] == {"code": "0", "message": "SUCCESS"}
    return entry["response"]["output"]


def error_code(body: dict) -> str:
    entry = first_entry(body)
    assert entry["status"]["message"] != "SUCCESS"
    return entry["status"]["code"]


def settled_callbacks(http, sim_url, **expected) -> dict:
    """Callback counters once they reach `expected`: they move just after the receiver answers."""
    deadline = time.monotonic() + 5
    while True:
        callbacks = http.get(f"{sim_url}/stats").json()["callbacks"]
        if all(callbacks[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
            return callbacks
        time.sleep(0.01)


class Receiver:
    """A tiny callback endpoint on loopback: records JSON bodies, answers scripted statuses."""

    def __init__(self, statuses=()):
        self.bodies: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(json.loads(raw))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hive/callback/abc/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.bodies) >= count, f"expected {count} callbacks, got {len(self.bodies)}"
        return self.bodies

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


# --- Shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_type", VISUAL_TYPES)
def test_visual_types_score_an_image_in_heads_that_sum_to_one(http, sim_url, media_samples, endpoint_type):
    response = task(http, sim_url, f"sim-{endpoint_type}-t", files=upload(media_samples, "sample.png"), metadata="m-1")
    assert response.status_code == 200
    body = response.json()
    assert body["metadata"] == "m-1"
    assert body["code"] == 200 and body["from_cache"] is False and body["id"]
    assert first_entry(body)["response"]["input"]["model_version"]
    [frame] = outputs(body)
    assert frame["time"] == 0
    scores = {c["class"]: c["score"] for c in frame["classes"]}
    for head in VISUAL_HEADS[endpoint_type]:
        assert sum(scores[name] for name in head) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= scores[name] <= 1 for name in head)


def test_a_video_gets_several_frames_with_increasing_times(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample.mp4")).json()
    times = [frame["time"] for frame in outputs(body)]
    assert 3 <= len(times) <= 8
    assert times == sorted(times) and len(set(times)) == len(times)


def test_a_gif_gets_a_few_frames(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample-animated.gif")).json()
    assert 2 <= len(outputs(body)) <= 4


def test_media_kind_is_sniffed_from_bytes_not_the_file_name(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "png-named-as.mp4")).json()
    assert len(outputs(body)) == 1


def test_text_gets_severities_filters_and_language(http, sim_url):
    text = "what a damn mess, write to bob@example.com or see https://example.com/x"
    body = task(http, sim_url, "sim-text-t", text_data=text, metadata="t-1").json()
    response = first_entry(body)["response"]
    [output] = outputs(body)
    assert all(c["score"] in (-1, 0, 1, 2, 3) for c in output["classes"])
    assert response["language"] == "EN"
    assert response["moderated_classes"]
    [profanity] = response["text_filters"]
    assert profanity["value"] == "damn"
    assert text[profanity["start_index"] : profanity["end_index"]] == "damn"
    assert [p["value"] for p in response["pii_entities"]] == ["bob@example.com"]
    assert [u["value"] for u in response["urls"]] == ["https://example.com/x"]


def test_speech_gets_segments_with_transcripts_and_classifications(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-speech-t", files=upload(media_samples, "sample.wav")).json()
    assert first_entry(body)["response"]["language"]
    segments = outputs(body)
    assert segments
    for segment in segments:
        assert segment["transcript"]
        [classification] = segment["classifications"]
        assert classification["text"] == segment["transcript"]
        assert all(c["score"] in (0, 1, 2, 3) for c in classification["classes"])


def test_speech_takes_a_url(http, sim_url):
    body = task(http, sim_url, "sim-speech-t", url="https://example.com/talk.mp3").json()
    assert outputs(body)[0]["transcript"]


# --- Determinism ------------------------------------------------------------------


def test_the_same_bytes_always_score_the_same(http, sim_url, media_samples):
    first = task(http, sim_url, "sim-visual-a", files=upload(media_samples, "sample.mp4")).json()
    again = task(http, sim_url, "sim-visual-a", files=upload(media_samples, "sample.mp4")).json()
    assert first["id"] != again["id"]
    assert outputs(first) == outputs(again)


def test_different_bytes_score_differently(http, sim_url, media_samples):
    png = task(http, sim_url, "sim-visual-a", files=upload(media_samples, "sample.png")).json()
    jpg = task(http, sim_url, "sim-visual-a", files=upload(media_samples, "sample.jpg")).json()
    assert outputs(png) != outputs(jpg)


def test_the_same_text_always_scores_the_same(http, sim_url):
    first = task(http, sim_url, "sim-text-a", text_data="hello there").json()
    again = task(http, sim_url, "sim-text-a", text_data="hello there").json()
    assert first_entry(first)["response"]["output"] == first_entry(again)["response"]["output"]


# --- Request errors -----------------------------------------------------------------


def test_a_field_the_endpoint_type_does_not_take_is_a_400(http, sim_url):
    response = task(http, sim_url, "sim-visual-t", text_data="hello")
    assert response.status_code == 400
    assert response.json()["return_code"] == 400
    assert "text_data" in response.json()["message"]
    assert task(http, sim_url, "sim-text-t", url="https://example.com/a.png").status_code == 400


def test_two_content_fields_are_a_400(http, sim_url, media_samples):
    response = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample.png"), url="https://e.com/a.png")
    assert response.status_code == 400


def test_text_over_the_limit_is_a_400(http, sim_url):
    assert task(http, sim_url, "sim-text-t", text_data="a" * 1024).status_code == 200
    response = task(http, sim_url, "sim-text-t", text_data="a" * 1025)
    assert response.status_code == 400
    assert "1024" in response.json()["message"]


def test_a_bad_token_is_a_401(http, sim_url):
    assert task(http, sim_url, "not-a-sim-key").status_code == 401
    response = http.post(f"{sim_url}/api/v2/task/sync", data={"text_data": "hi"})
    assert response.status_code == 401
    assert response.json()["return_code"] == 401


def test_the_token_scheme_is_accepted_in_any_case(http, sim_url):
    response = http.post(
        f"{sim_url}/api/v2/task/sync", headers={"Authorization": "TOKEN sim-text-t"}, data={"text_data": "hi"}
    )
    assert response.status_code == 200


def test_a_balance_key_is_a_405(http, sim_url):
    response = task(http, sim_url, "sim-balance-t", text_data="hi")
    assert response.status_code == 405
    assert "balance" in response.json()["message"].lower()


def test_async_without_callback_url_is_a_400(http, sim_url):
    response = task(http, sim_url, "sim-text-t", mode="async", text_data="hi")
    assert response.status_code == 400
    assert "callback_url" in response.json()["message"]


def test_sync_on_a_review_project_is_a_400(http, sim_url):
    response = task(http, sim_url, "sim-visual-review-t", url="https://example.com/a.png")
    assert response.status_code == 400
    assert "async" in response.json()["message"]


def test_media_the_endpoint_type_does_not_accept_fails_the_task(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample.wav")).json()
    assert error_code(body) == "3100"
    body = task(http, sim_url, "sim-speech-t", files=upload(media_samples, "sample.png")).json()
    assert error_code(body) == "3100"


def test_a_truncated_jpeg_fails_as_corrupt(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "truncated.jpg")).json()
    assert error_code(body) == "3300"


def test_the_standalone_server_also_answers_under_simulator_prefix(http, sim_url):
    response = http.post(
        f"{sim_url}/simulator/api/v2/task/sync", headers={"Authorization": "Token sim-text-t"}, data={"text_data": "hi"}
    )
    assert response.status_code == 200
    assert http.get(f"{sim_url}/simulator/stats").json()["calls"]["sync"] == 1


# --- Triggers ---------------------------------------------------------------------------


def test_sim_reject_in_metadata_scores_media_very_high(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample.png"), metadata="sim:reject").json()
    scores = {c["class"]: c["score"] for c in outputs(body)[0]["classes"]}
    assert scores["general_nsfw"] >= 0.95


def test_sim_review_in_text_gives_middling_severity(http, sim_url):
    body = task(http, sim_url, "sim-text-t", text_data="please look at this sim:review").json()
    assert max(c["score"] for c in outputs(body)[0]["classes"]) == 2


def test_sim_reject_in_text_gives_top_severity(http, sim_url):
    body = task(http, sim_url, "sim-text-t", text_data="sim:reject").json()
    assert max(c["score"] for c in outputs(body)[0]["classes"]) == 3


def test_sim_approve_scores_very_low(http, sim_url):
    body = task(http, sim_url, "sim-visual-t", url="https://example.com/cat.png?sim:approve").json()
    scores = {c["class"]: c["score"] for c in outputs(body)[0]["classes"]}
    assert scores["general_nsfw"] < 0.01


def test_sim_fail_fails_the_task_as_corrupt(http, sim_url, media_samples):
    body = task(http, sim_url, "sim-visual-t", files=upload(media_samples, "sample.png"), metadata="x sim:fail").json()
    assert error_code(body) == "3300"


def test_sim_download_error_fails_a_url_task_with_2101(http, sim_url):
    body = task(http, sim_url, "sim-visual-t", url="https://example.com/a.png?sim:download-error").json()
    assert error_code(body) == "2101"


# --- Async and callbacks ----------------------------------------------------------------------


def test_async_acks_with_a_task_id_then_calls_back(http, sim_url, receiver):
    hook = receiver()
    response = task(http, sim_url, "sim-text-t", mode="async", text_data="hi", metadata="sub-42", callback_url=hook.url)
    assert response.status_code == 200
    ack = response.json()
    assert ack["task_id"] == ack["id"]
    [callback] = hook.wait_for(1)
    assert callback["id"] == ack["task_id"]
    assert callback["metadata"] == "sub-42"
    assert outputs(callback)


def test_a_callback_is_retried_when_the_receiver_answers_503(http, sim_url, receiver):
    hook = receiver(statuses=[503])
    ack = task(http, sim_url, "sim-text-t", mode="async", text_data="hi", callback_url=hook.url).json()
    first, second = hook.wait_for(2)
    assert first == second
    assert second["id"] == ack["task_id"]
    callbacks = settled_callbacks(http, sim_url, sent=1)
    assert callbacks["failed_attempts"] == 1 and callbacks["sent"] == 1


def test_a_callback_refused_with_a_4xx_is_not_retried(http, sim_url, receiver):
    hook = receiver(statuses=[403])
    task(http, sim_url, "sim-text-t", mode="async", text_data="hi", callback_url=hook.url)
    hook.wait_for(1)
    assert settled_callbacks(http, sim_url, given_up=1)["given_up"] == 1
    time.sleep(0.4)  # longer than the first retry's backoff
    assert len(hook.bodies) == 1


def test_a_review_project_calls_back_twice_the_second_with_the_verdict(http, sim_url, receiver):
    hook = receiver()
    ack = task(
        http, sim_url, "sim-visual-review-t", mode="async",
        url="https://example.com/a.png", metadata="sim:reject", callback_url=hook.url,
    ).json()
    model, reviewed = hook.wait_for(2)
    assert "review" not in model
    assert model["id"] == reviewed["id"] == ack["task_id"]
    assert reviewed["review"]["decision"] == "reject"
    assert reviewed["review"]["reviewer"] == "sim-reviewer"
    assert reviewed["status"] == model["status"]


# --- Control and stats -------------------------------------------------------------------------


def test_fail_next_answers_that_many_errors_then_works(http, sim_url):
    http.post(f"{sim_url}/control", json={"fail_next": 2, "error_status": 503})
    statuses = [task(http, sim_url, "sim-text-t", text_data="hi").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_error_status_429_is_hives_rate_limit_answer(http, sim_url):
    http.post(f"{sim_url}/control", json={"fail_next": 1, "error_status": 429})
    response = task(http, sim_url, "sim-text-t", text_data="hi")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"return_code": 429, "message": "Project has been rate limited"}


def test_error_rate_one_fails_every_call(http, sim_url):
    http.post(f"{sim_url}/control", json={"error_rate": 1, "error_status": 500})
    assert [task(http, sim_url, "sim-text-t", text_data="hi").status_code for _ in range(3)] == [500] * 3


def test_latency_is_respected(http, sim_url):
    http.post(f"{sim_url}/control", json={"latency_ms": 300})
    started = time.monotonic()
    assert task(http, sim_url, "sim-text-t", text_data="hi").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_control_refuses_an_invalid_value_naming_the_field(http, sim_url):
    response = http.post(f"{sim_url}/control", json={"error_rate": 2})
    assert response.status_code == 400
    assert response.json()["field"] == "error_rate"
    assert http.post(f"{sim_url}/control", json={"latency_ms": "slow"}).json()["field"] == "latency_ms"
    assert http.post(f"{sim_url}/control", json={"bogus": 1}).json()["field"] == "bogus"
    assert http.get(f"{sim_url}/stats").json()["control"]["error_rate"] == 0


def test_control_answers_the_whole_state_and_reset_restores_defaults(http, sim_url):
    state = http.post(f"{sim_url}/control", json={"latency_ms": 5}).json()
    assert state["latency_ms"] == 5 and state["error_status"] == 503 and state["callback_delay_ms"] == 20
    assert http.post(f"{sim_url}/control", json={"reset": True}).json()["latency_ms"] == 0


def test_stats_count_calls_errors_and_callbacks(http, sim_url, receiver):
    hook = receiver()
    task(http, sim_url, "sim-text-t", text_data="hi")
    task(http, sim_url, "sim-text-t", mode="async", text_data="hi", callback_url=hook.url)
    http.post(f"{sim_url}/control", json={"fail_next": 1})
    task(http, sim_url, "sim-text-t", text_data="hi")
    hook.wait_for(1)
    settled_callbacks(http, sim_url, sent=1)
    stats = http.get(f"{sim_url}/stats").json()
    assert stats["calls"] == {"sync": 2, "async": 1}
    assert stats["errors_returned"] == 1
    assert stats["callbacks"]["sent"] == 1
    assert stats["control"]["fail_next"] == 0


# --- Mounting -------------------------------------------------------------------------------------


def test_the_simulator_is_mounted_in_demo_mode():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/simulator/api/v2/task/sync", {"text_data": "hi"}, HTTP_AUTHORIZATION="Token sim-text-t")
    assert response.status_code == 200
    assert response.json()["status"][0]["status"]["message"] == "SUCCESS"


def test_the_simulator_is_not_mounted_under_production_settings():
    import hiveportal.urls

    try:
        with override_settings(HIVE_SIMULATOR=False):
            importlib.reload(hiveportal.urls)
            clear_url_caches()
            response = Client().post("/simulator/api/v2/task/sync", {"text_data": "hi"})
            assert response.status_code == 404
            assert Client().get("/simulator/stats").status_code == 404
    finally:
        importlib.reload(hiveportal.urls)
        clear_url_caches()
