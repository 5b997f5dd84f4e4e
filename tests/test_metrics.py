"""/metrics as Prometheus scrapes it: protected by a bearer token, request
rates and latencies from django-prometheus, and our own series for Hive calls,
callbacks, submissions and queue depth, moving when those things happen."""

from __future__ import annotations

import json

import pytest
import requests
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from moderation.models import Delivery, Status, Submission
from moderation.services import callbacks, dispatch
from tests.conftest import FIXTURES

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def scraper(settings, db) -> Client:
    settings.METRICS_TOKEN = TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def scrape(scraper: Client) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}"""
    response = scraper.get("/metrics")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def text_project(make_project, partner, settings, simulator, monkeypatch):
    settings.HIVE_API_URL = simulator
    # One attempt per dispatch: pumps end instead of waiting for the retry.
    monkeypatch.setattr(dispatch, "PUMP_MAX_WAIT_SECONDS", 0)
    monkeypatch.setattr(dispatch, "PROBE_MAX_WAIT_SECONDS", 0)
    requests.post(f"{simulator}/control", json={"reset": True}, timeout=5)
    project = make_project("metered", endpoint_type="text", hive_api_key="sim-text-metered")
    partner.projects.add(project)
    return project


def text_submission(project, partner) -> Submission:
    return Submission.objects.create(project=project, partner=partner, source="text_data", text_data="hi there",
                                     media_kind="text")


# --- Protection ----------------------------------------------------------------------


def test_metrics_need_the_bearer_token_when_one_is_set(settings, db):
    settings.METRICS_TOKEN = TOKEN
    assert Client().get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/metrics").status_code == 200


def test_without_a_token_metrics_are_off_under_production_settings(settings, db):
    settings.METRICS_TOKEN = ""
    settings.DEMO_MODE = False
    assert Client().get("/metrics").status_code == 404


def test_without_a_token_demo_mode_serves_metrics_to_loopback_only(settings, db):
    settings.METRICS_TOKEN = ""
    settings.DEMO_MODE = True
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 404
    # Behind a proxy every request comes from loopback: a forwarded one is not local.
    assert Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").get("/metrics").status_code == 404


# --- Series ------------------------------------------------------------------------------


def test_requests_are_counted_by_view_and_status(scraper, api):
    before = scrape(scraper)
    api.get("/api/v1/projects/")
    after = scrape(scraper)
    name = "django_http_responses_total_by_status_view_method_total"
    labels = dict(method="GET", status="200", view="api:project-list")
    assert value(after, name, **labels) == value(before, name, **labels) + 1
    assert value(after, "django_http_requests_latency_seconds_by_view_method_count",
                 view="api:project-list", method="GET") >= 1


def test_hive_calls_are_timed_and_labelled_by_outcome(scraper, text_project, partner, simulator):
    name = "hiveportal_hive_call_seconds_count"
    before = scrape(scraper)
    dispatch.dispatch_submission(text_submission(text_project, partner).pk)  # ok
    requests.post(f"{simulator}/control", json={"fail_next": 1, "error_status": 503}, timeout=5)
    dispatch.dispatch_submission(text_submission(text_project, partner).pk)  # retry
    text_project.hive_api_key = "sim-balance-metered"  # 405: insufficient balance, permanent
    text_project.hive_consecutive_failures, text_project.hive_paused_until = 0, None
    text_project.save()
    dispatch.dispatch_submission(text_submission(text_project, partner).pk)  # failed
    after = scrape(scraper)

    for outcome in ("ok", "retry", "failed"):
        assert value(after, name, project="metered", outcome=outcome) == (
            value(before, name, project="metered", outcome=outcome) + 1), outcome
    assert value(after, "hiveportal_hive_call_seconds_sum", project="metered", outcome="ok") > 0


def test_callbacks_are_counted_as_accepted_or_refused(scraper, make_project, partner):
    project = make_project("async-metered", delivery=Delivery.ASYNC)
    body = json.loads((FIXTURES / "hive" / "image.json").read_text())
    submission = Submission.objects.create(project=project, partner=partner, source="url",
                                           url="https://cdn.example.com/a.jpg", status=Status.AWAITING_CALLBACK,
                                           hive_task_id=body["id"])
    body["metadata"] = str(submission.pk)
    before = scrape(scraper)
    client = Client()
    good = client.post(f"/hive/callback/{submission.pk}/{callbacks.token_for(submission.pk)}/",
                       data=json.dumps(body), content_type="application/json")
    bad = client.post(f"/hive/callback/{submission.pk}/{'0' * 64}/", data=json.dumps(body),
                      content_type="application/json")
    after = scrape(scraper)

    assert (good.status_code, bad.status_code) == (200, 403)
    name = "hiveportal_hive_callbacks_total"
    assert value(after, name, outcome="accepted") == value(before, name, outcome="accepted") + 1
    assert value(after, name, outcome="refused") == value(before, name, outcome="refused") + 1


def test_submissions_are_counted_when_received_completed_and_failed(scraper, text_project, partner,
                                                                    django_capture_on_commit_callbacks):
    name = "hiveportal_submissions_total"
    before = scrape(scraper)
    with django_capture_on_commit_callbacks(execute=True):  # completion is announced on commit
        dispatch.dispatch_submission(text_submission(text_project, partner).pk)
        text_project.hive_api_key = "sim-balance-metered"
        text_project.save()
        dispatch.dispatch_submission(text_submission(text_project, partner).pk)
    after = scrape(scraper)

    for status in ("received", "received", "completed", "failed"):
        expected = 2 if status == "received" else 1
        assert value(after, name, status=status) == value(before, name, status=status) + expected, status


def test_queue_depth_is_read_per_project_and_status_at_scrape_time(scraper, make_project, partner):
    busy, idle = make_project("busy"), make_project("idle")
    for status in (Status.QUEUED, Status.QUEUED, Status.QUEUED, Status.PROCESSING, Status.COMPLETED):
        Submission.objects.create(project=busy, partner=partner, source="text_data", text_data="x", status=status)
    Submission.objects.create(project=idle, partner=partner, source="text_data", text_data="x",
                              status=Status.AWAITING_CALLBACK)

    samples = scrape(scraper)

    assert value(samples, "hiveportal_queue_depth", project="busy", status="queued") == 3
    assert value(samples, "hiveportal_queue_depth", project="busy", status="processing") == 1
    assert value(samples, "hiveportal_queue_depth", project="idle", status="awaiting_callback") == 1
    assert ("hiveportal_queue_depth", (("project", "busy"), ("status", "completed"))) not in samples
    assert ("hiveportal_task_queue_length", ()) in samples
