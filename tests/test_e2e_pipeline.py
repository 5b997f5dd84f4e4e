"""End to end: each demo project driven through the partner API over HTTP, with
gunicorn (simulator mounted), a running django-q2 worker and the real database."""

from __future__ import annotations

import pytest
import requests
from django_q.models import Schedule

from moderation.models import Project, Result, Submission
from moderation.services.demo import seed_demo
from moderation.services.routing import route
from tests.stack import start_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        running = start_stack(str(tmp_path_factory.mktemp("stack")))
    yield running
    running.stop()


@pytest.fixture
def demo(stack):
    seed = seed_demo()
    # The flush between tests removed the sweep schedule the migration made.
    Schedule.objects.get_or_create(name="hiveportal-sweep", defaults=dict(
        func="moderation.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=1, repeats=-1))
    stack.control(reset=True, callback_delay_ms=50)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {seed.api_key}"
    return session


def submit(stack, session, slug: str, files=None, **data) -> dict:
    response = session.post(f"{stack.base_url}/api/v1/projects/{slug}/submissions/", data=data, files=files,
                            timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def finished(stack, session, submission_id: str, timeout: float = 40) -> dict:
    def done():
        body = session.get(f"{stack.base_url}/api/v1/submissions/{submission_id}/", timeout=10).json()
        return body if body["status"] in {"completed", "failed"} else None

    try:
        return wait_for(done, timeout=timeout, message=f"submission {submission_id} to finish")
    except AssertionError:
        print(stack.log("worker"))
        print(stack.log("web"))
        raise


def test_sync_visual_upload_completes_with_scores_and_routes_on_them(stack, demo, media_samples):
    with open(media_samples / "sample.jpg", "rb") as image:
        created = submit(stack, demo, "demo-visual-sync", files={"media": ("photo.jpg", image)})
    body = finished(stack, demo, created["id"])
    assert body["status"] == "completed"
    assert [r["source"] for r in body["results"]] == ["sync"]
    thresholds = Project.objects.get(slug="demo-visual-sync").thresholds
    routed = route(body["scores"], thresholds).decision
    assert body["decision"] == routed


def test_sync_visual_url_is_rejected_above_the_reject_threshold(stack, demo):
    created = submit(stack, demo, "demo-visual-sync", url="https://cdn.example.com/sim:reject/a.jpg")
    body = finished(stack, demo, created["id"])
    assert body["decision"] == "rejected"
    assert body["scores"]["general_nsfw"] >= 0.9


def test_async_visual_video_completes_by_callback(stack, demo, media_samples):
    with open(media_samples / "sample.mp4", "rb") as video:
        created = submit(stack, demo, "demo-visual-async", files={"media": ("clip.mp4", video)})
    body = finished(stack, demo, created["id"])
    assert body["status"] == "completed", body
    assert body["hive_task_id"]
    assert [r["source"] for r in body["results"]] == ["callback"]
    result = Result.objects.get(submission_id=created["id"])
    assert len(result.timeline) >= 3  # one entry per sampled frame


def test_model_and_manual_review_project_keeps_hives_review_as_a_second_result(stack, demo):
    created = submit(stack, demo, "demo-visual-review", url="https://cdn.example.com/sim:reject/a.png")
    finished(stack, demo, created["id"])

    def reviewed():
        body = demo.get(f"{stack.base_url}/api/v1/submissions/{created['id']}/", timeout=10).json()
        return body if len(body["results"]) == 2 else None

    body = wait_for(reviewed, timeout=30, message="Hive's review callback")
    assert body["results"][1]["review"]["decision"] == "reject"
    assert body["decision"] == "rejected"


def test_text_and_speech_projects_complete(stack, demo, media_samples):
    text = submit(stack, demo, "demo-text", text_data="you idiot, sim:review")
    with open(media_samples / "sample.mp3", "rb") as audio:
        speech = submit(stack, demo, "demo-speech", files={"media": ("call.mp3", audio)})
    text_body = finished(stack, demo, text["id"])
    speech_body = finished(stack, demo, speech["id"])
    assert text_body["decision"] == "pending"
    assert all(0 <= score <= 1 for score in text_body["scores"].values())
    assert speech_body["status"] == "completed"
    assert Result.objects.get(submission_id=speech["id"]).transcript


def test_hive_answering_503_for_a_while_delays_but_loses_nothing(stack, demo):
    stack.control(fail_next=4, error_status=503)
    created = [submit(stack, demo, "demo-text", text_data=f"hello {n}") for n in range(3)]
    bodies = [finished(stack, demo, c["id"], timeout=60) for c in created]
    assert [b["status"] for b in bodies] == ["completed"] * 3
    assert stack.stats()["errors_returned"] == 4
    assert Result.objects.filter(submission_id__in=[c["id"] for c in created]).count() == 3


def test_a_refused_key_fails_once_without_retries(stack, demo):
    Project.objects.filter(slug="demo-text").update(hive_api_key="not-a-simulator-key")
    created = submit(stack, demo, "demo-text", text_data="hello")
    body = finished(stack, demo, created["id"])
    assert body["status"] == "failed"
    assert "API key" in body["error"]
    assert stack.stats()["rejected"] == 1
    assert Submission.objects.get(pk=created["id"]).attempts == 1
