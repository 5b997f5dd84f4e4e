"""The partner API: every bad input has a clear error naming the field, and
nothing is stored or queued for it."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from moderation.api.serializers import SubmissionSerializer, submission_json
from moderation.models import Partner, Submission
from moderation.services import dispatch, sweep
from moderation.services.keys import issue_key
from tests.conftest import broker_down


@pytest.fixture
def visual(make_project, partner):
    project = make_project("pics", endpoint_type="visual")
    partner.projects.add(project)
    return project


@pytest.fixture
def text(make_project, partner):
    project = make_project("chat", endpoint_type="text", hive_api_key="sim-text-x", text_limit=50)
    partner.projects.add(project)
    return project


@pytest.fixture
def speech(make_project, partner):
    project = make_project("calls", endpoint_type="speech", delivery="async", hive_api_key="sim-speech-x")
    partner.projects.add(project)
    return project


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="application/octet-stream")


def post(api, slug, data, fmt="multipart", **headers):
    return api.post(f"/api/v1/projects/{slug}/submissions/", data, format=fmt, **headers)


def assert_refused(response, status: int, field: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert field in body, body
    assert body[field] and isinstance(body[field][0], str)
    assert not Submission.objects.exists()


# --- accepted ----------------------------------------------------------------

def test_an_image_upload_is_accepted_and_queued(api, visual, media_samples, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(api, "pics", {"media": upload(media_samples / "sample.jpg"), "external_id": "p-1",
                                      "metadata": json.dumps({"user": 7})})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["project"] == "pics"
    assert body["external_id"] == "p-1"
    assert body["metadata"] == {"user": 7}
    assert body["decision"] is None and body["scores"] is None and body["error"] is None
    submission = Submission.objects.get(pk=body["id"])
    assert submission.media_kind == "image"
    assert submission.media.name.endswith(f"{submission.pk}.jpg")
    assert len(callbacks) == 1  # the dispatch task, enqueued on commit


def test_the_202_body_is_the_submission_as_get_shows_it(api, visual, media_samples):
    created = post(api, "pics", {"media": upload(media_samples / "sample.png"), "external_id": "p-2",
                                 "metadata": json.dumps({"k": [1, 2]})})
    assert created.status_code == 202, created.content
    shown = api.get(f"/api/v1/submissions/{created.json()['id']}/").json()
    assert created.json() == shown


def test_submissions_rendered_at_once_on_many_threads_each_get_their_own_body(visual, partner):
    """The 202 and webhook bodies come from one serializer per thread (submission_json)."""
    submissions = [Submission.objects.create(project=visual, partner=partner, external_id=f"t-{i}", source="url",
                                             url=f"https://example.com/{i}.jpg", metadata={"i": i})
                   for i in range(24)]
    for submission in submissions:  # no query from the threads (each would open a connection)
        submission._prefetched_objects_cache = {"results": []}
    start = threading.Barrier(8)
    rendered: dict[str, dict] = {}
    differed = []

    def render(chunk):
        start.wait()
        for _ in range(20):
            for submission in chunk:
                body = submission_json(submission)
                if rendered.setdefault(str(submission.pk), body) != body:
                    differed.append(body)

    threads = [threading.Thread(target=render, args=(submissions[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not differed
    assert {body["external_id"]: body["metadata"]["i"] for body in rendered.values()} == {
        f"t-{i}": i for i in range(24)}
    assert all(rendered[str(s.pk)] == SubmissionSerializer(s).data for s in submissions)


@pytest.mark.parametrize("spooled", [False, True], ids=["in memory", "spooled to disk"])
def test_the_stored_sha256_is_the_uploaded_files(api, visual, media_samples, settings, spooled):
    if spooled:
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # the upload goes to a temporary file
    data = (media_samples / "sample.jpg").read_bytes()
    response = post(api, "pics", {"media": SimpleUploadedFile("x.jpg", data)})
    assert response.status_code == 202, response.content
    submission = Submission.objects.get()
    assert submission.sha256 == hashlib.sha256(data).hexdigest()
    with submission.media.open("rb") as stored:
        assert stored.read() == data


def test_a_lying_file_name_does_not_decide_the_kind(api, visual, media_samples):
    response = post(api, "pics", {"media": upload(media_samples / "png-named-as.mp4")})
    assert response.status_code == 202
    assert Submission.objects.get().media_kind == "image"


def test_a_path_traversal_file_name_never_reaches_storage(api, visual, media_samples):
    response = post(api, "pics", {"media": upload(media_samples / "sample.png", name="../../etc/passwd.png")})
    assert response.status_code == 202
    name = Submission.objects.get().media.name
    assert ".." not in name and "passwd" not in name


@pytest.mark.parametrize("sample", ["sample.mp3", "sample.wav", "sample.wma", "sample.mp4"])
def test_speech_takes_audio_and_video(api, speech, media_samples, sample):
    assert post(api, "calls", {"media": upload(media_samples / sample)}).status_code == 202


def test_text_is_accepted_as_json(api, text):
    response = post(api, "chat", {"text_data": "hello there", "metadata": {"room": "a"}}, fmt="json")
    assert response.status_code == 202
    assert Submission.objects.get().text_data == "hello there"


def test_a_url_is_accepted_as_a_form(api, visual):
    response = api.post("/api/v1/projects/pics/submissions/", {"url": "https://cdn.example.com/a.jpg"})
    assert response.status_code == 202
    assert Submission.objects.get().url == "https://cdn.example.com/a.jpg"


# --- refused -------------------------------------------------------------------

def test_no_content_field_is_refused(api, visual):
    assert_refused(post(api, "pics", {"external_id": "x"}, fmt="json"), 400, "content")


def test_two_content_fields_are_refused(api, visual, media_samples):
    response = post(api, "pics", {"media": upload(media_samples / "sample.png"), "url": "https://a.example/x.png"})
    assert_refused(response, 400, "url")


def test_a_field_the_endpoint_type_does_not_take_is_refused(api, text, visual):
    assert_refused(post(api, "chat", {"url": "https://a.example/x"}, fmt="json"), 400, "url")
    assert_refused(post(api, "pics", {"text_data": "hi"}, fmt="json"), 400, "text_data")


def test_unknown_fields_are_refused(api, text):
    assert_refused(post(api, "chat", {"text_data": "hi", "colour": "red"}, fmt="json"), 400, "colour")


@pytest.mark.parametrize("sample", ["not-accepted.svg", "document.pdf", "archive-named-as.png", "text-named-as.jpg"])
def test_media_hive_does_not_take_is_415(api, visual, media_samples, sample):
    assert_refused(post(api, "pics", {"media": upload(media_samples / sample)}), 415, "media")


def test_audio_sent_to_a_visual_project_is_415(api, visual, media_samples):
    response = post(api, "pics", {"media": upload(media_samples / "sample.wma")})
    assert_refused(response, 415, "media")
    assert "audio" in response.json()["media"][0]


def test_an_empty_file_is_400(api, visual, media_samples):
    assert_refused(post(api, "pics", {"media": upload(media_samples / "empty.png")}), 400, "media")


def test_a_truncated_file_is_400(api, visual, media_samples):
    assert_refused(post(api, "pics", {"media": upload(media_samples / "truncated.jpg")}), 400, "media")


@override_settings(MAX_UPLOAD_MB=1)
def test_a_file_over_the_upload_limit_is_413_as_json(api, visual):
    big = SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024))
    assert_refused(post(api, "pics", {"media": big}), 413, "body")


def test_an_oversized_json_body_is_413_as_json(api, text):
    response = post(api, "chat", {"text_data": "x" * (3 * 1024 * 1024)}, fmt="json")
    assert_refused(response, 413, "body")


def test_text_over_the_project_limit_is_refused(api, text):
    response = post(api, "chat", {"text_data": "x" * 51}, fmt="json")
    assert_refused(response, 400, "text_data")
    assert "50" in response.json()["text_data"][0]


def test_empty_text_is_refused(api, text):
    assert_refused(post(api, "chat", {"text_data": "   "}, fmt="json"), 400, "text_data")


@pytest.mark.parametrize("metadata", ["[1, 2]", "not json", "42"])
def test_metadata_must_be_a_json_object(api, text, metadata):
    assert_refused(post(api, "chat", {"text_data": "hi", "metadata": metadata}, fmt="multipart"), 400, "metadata")


def test_metadata_as_a_json_array_is_refused(api, text):
    assert_refused(post(api, "chat", {"text_data": "hi", "metadata": [1]}, fmt="json"), 400, "metadata")


@pytest.mark.parametrize("url", ["ftp://a.example/x.jpg", "javascript:alert(1)", "https://", "not a url", "/x.jpg"])
def test_a_url_must_be_http_with_a_host(api, visual, url):
    assert_refused(post(api, "pics", {"url": url}, fmt="json"), 400, "url")


def test_a_malformed_json_body_is_400(api, text):
    response = api.post("/api/v1/projects/chat/submissions/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_json_nested_too_deeply_for_the_parser_is_400(api, text):
    body = '{"text_data": "hi", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = api.post("/api/v1/projects/chat/submissions/", body, content_type="application/json")
    assert response.status_code == 400
    assert "deep" in response.json()["detail"]
    assert not Submission.objects.exists()


def test_metadata_nested_too_deeply_is_refused(api, text):
    metadata = '{"a":' * 40 + "1" + "}" * 40
    body = '{"text_data": "hi", "metadata": ' + metadata + "}"
    response = api.post("/api/v1/projects/chat/submissions/", body, content_type="application/json")
    assert_refused(response, 400, "metadata")


def test_an_overlong_external_id_is_refused(api, text):
    assert_refused(post(api, "chat", {"text_data": "hi", "external_id": "x" * 256}, fmt="json"), 400, "external_id")


# --- auth and visibility --------------------------------------------------------

def test_without_a_key_the_api_answers_401(visual):
    response = APIClient().get("/api/v1/projects/")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_another_partners_project_is_404(api, make_project):
    other = Partner.objects.create(name="other")
    other.projects.add(make_project("theirs"))
    response = post(api, "theirs", {"url": "https://a.example/x.jpg"}, fmt="json")
    assert response.status_code == 404
    assert not Submission.objects.exists()


def test_another_partners_submission_is_404(api, visual, make_project):
    other = Partner.objects.create(name="other")
    other.projects.add(visual)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_key(other).plaintext}")
    created = client.post("/api/v1/projects/pics/submissions/", {"url": "https://a.example/x.jpg"}, format="json")
    assert created.status_code == 202
    assert api.get(f"/api/v1/submissions/{created.json()['id']}/").status_code == 404
    assert api.get("/api/v1/submissions/").json()["results"] == []


# --- idempotency ------------------------------------------------------------------

def test_a_repeat_with_the_same_key_returns_the_same_submission(api, visual, media_samples):
    first = post(api, "pics", {"media": upload(media_samples / "sample.png")}, HTTP_IDEMPOTENCY_KEY="k1")
    again = post(api, "pics", {"media": upload(media_samples / "sample.png")}, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert Submission.objects.count() == 1


def test_the_same_key_with_a_different_file_is_409(api, visual, media_samples):
    post(api, "pics", {"media": upload(media_samples / "sample.png")}, HTTP_IDEMPOTENCY_KEY="k1")
    response = post(api, "pics", {"media": upload(media_samples / "sample.jpg")}, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()
    assert Submission.objects.count() == 1


def test_a_key_still_in_flight_is_409_with_retry_after(api, visual, partner):
    import hashlib

    from moderation.services import idempotency

    url = "https://a.example/x.jpg"
    digest = idempotency.fingerprint(project="pics", sha256=hashlib.sha256(url.encode()).hexdigest(), field="url",
                                     metadata={}, external_id="")
    idempotency.begin(partner, "busy", digest)
    response = post(api, "pics", {"url": url}, fmt="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert response.status_code == 409
    assert response["Retry-After"] == "1"


def test_a_retry_after_a_crash_between_storing_and_answering_gets_the_stored_submission(api, visual, partner):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.models import IdempotencyRecord

    first = post(api, "pics", {"url": "https://a.example/x.jpg"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k3")
    # The process died after the commit and before the answer was kept with the key.
    IdempotencyRecord.objects.filter(key="k3").update(response_status=None, response_body=None,
                                                       created_at=timezone.now() - timedelta(minutes=6))
    again = post(api, "pics", {"url": "https://a.example/x.jpg"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert again.status_code == 202, again.content[:300]
    assert again.json()["id"] == first.json()["id"]
    assert Submission.objects.count() == 1
    third = post(api, "pics", {"url": "https://a.example/x.jpg"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert third.status_code == 202 and third.json()["id"] == first.json()["id"]  # kept with the key now
    assert IdempotencyRecord.objects.get(key="k3").response_status == 202


def test_a_refused_request_frees_its_key(api, visual, media_samples):
    bad = post(api, "pics", {"media": upload(media_samples / "document.pdf")}, HTTP_IDEMPOTENCY_KEY="k2")
    assert bad.status_code == 415
    good = post(api, "pics", {"media": upload(media_samples / "sample.png")}, HTTP_IDEMPOTENCY_KEY="k2")
    assert good.status_code == 202


def _prune_every_answer() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import retention

    retention.prune_idempotency_records(now=timezone.now() + timedelta(days=400))


def test_after_its_answer_is_pruned_a_key_still_gets_its_submission_back(api, visual, media_samples):
    from moderation.models import IdempotencyRecord

    def send():
        return post(api, "pics", {"media": upload(media_samples / "sample.png"), "external_id": "e-4",
                                  # 1e16 and -0.0 come back from PostgreSQL's jsonb as 10000000000000000 and 0.0
                                  "metadata": json.dumps({"user": 7, "tags": ["a", "b"], "score": 0.5,
                                                          "ts": 1e16, "zero": -0.0})},
                    HTTP_IDEMPOTENCY_KEY="k4")

    first = send()
    _prune_every_answer()
    assert not IdempotencyRecord.objects.exists()
    again = send()
    assert again.status_code == 202, again.content[:300]
    assert again.json()["id"] == first.json()["id"]
    assert Submission.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="k4").response_status == 202  # kept with the key again


def test_after_its_answer_is_pruned_a_mirrored_url_still_gets_its_submission_back(api, visual):
    first = post(api, "pics", {"url": "https://a.example/x.jpg"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k6")
    # Mirroring stored the file and its digest in place of the URL's.
    Submission.objects.filter(pk=first.json()["id"]).update(sha256="f" * 64)
    _prune_every_answer()
    again = post(api, "pics", {"url": "https://a.example/x.jpg"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k6")
    assert again.status_code == 202, again.content[:300]
    assert again.json()["id"] == first.json()["id"]


def test_a_key_whose_record_is_pruned_between_two_statements_is_reserved_again(partner, monkeypatch):
    from django.db import IntegrityError

    from moderation.models import IdempotencyRecord
    from moderation.services import idempotency

    real_create = IdempotencyRecord.objects.create
    calls = []

    def create(**fields):
        calls.append(fields["key"])
        if len(calls) == 1:  # the record existed at the INSERT and was pruned before the SELECT
            raise IntegrityError("duplicate key value violates unique constraint")
        return real_create(**fields)

    monkeypatch.setattr(IdempotencyRecord.objects, "create", create)
    assert idempotency.begin(partner, "k7", "d" * 64) is None
    monkeypatch.undo()
    assert calls == ["k7", "k7"]
    assert IdempotencyRecord.objects.get(key="k7").fingerprint == "d" * 64


def test_after_its_answer_is_pruned_a_key_with_another_request_is_409_and_stays_free_of_it(api, text):
    first = post(api, "chat", {"text_data": "hello"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k5")
    _prune_every_answer()
    for _ in range(2):  # each time: the record this request reserved is given back
        response = post(api, "chat", {"text_data": "something else"}, fmt="json", HTTP_IDEMPOTENCY_KEY="k5")
        assert response.status_code == 409, response.content[:300]
        assert first.json()["id"] in response.json()["Idempotency-Key"][0]
    assert "Retry-After" not in response
    assert list(Submission.objects.values_list("text_data", flat=True)) == ["hello"]


# --- reading -----------------------------------------------------------------------

def test_the_list_filters_by_status_and_external_id(api, text):
    for n in range(3):
        post(api, "chat", {"text_data": f"hi {n}", "external_id": f"e{n}"}, fmt="json")
    Submission.objects.filter(external_id="e1").update(status="failed")
    body = api.get("/api/v1/submissions/", {"status": "failed"}).json()
    assert [s["external_id"] for s in body["results"]] == ["e1"]
    body = api.get("/api/v1/submissions/", {"external_id": "e2", "project": "chat"}).json()
    assert [s["external_id"] for s in body["results"]] == ["e2"]


def test_the_list_is_cursor_paginated_newest_first(api, text):
    for n in range(5):
        post(api, "chat", {"text_data": f"hi {n}", "external_id": f"e{n}"}, fmt="json")
    page = api.get("/api/v1/submissions/", {"page_size": 2}).json()
    seen = [s["external_id"] for s in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [s["external_id"] for s in page["results"]]
    assert seen == ["e4", "e3", "e2", "e1", "e0"]


def test_an_invalid_filter_value_is_400_naming_it(api, text):
    response = api.get("/api/v1/submissions/", {"status": "sideways"})
    assert response.status_code == 400
    assert "status" in response.json()


def test_the_openapi_document_and_docs_page_are_served_without_a_cdn(client):
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/projects/{slug}/submissions/" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_a_partner_over_its_rate_is_throttled_with_retry_after(api, text, monkeypatch):
    from django.core.cache import cache

    from moderation.api.throttling import PartnerRateThrottle

    cache.clear()
    monkeypatch.setattr(PartnerRateThrottle, "THROTTLE_RATES", {"partner": "2/min"})
    assert api.get("/api/v1/projects/").status_code == 200
    assert api.get("/api/v1/projects/").status_code == 200
    response = api.get("/api/v1/projects/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "detail" in response.json()


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_at_enqueue_still_answers_202_and_keeps_the_file_for_the_sweep(
        api, visual, media_samples, monkeypatch, caplog):
    """The row is committed before its task is queued: if the queue is down then,
    the submission is stored all the same and the minute's sweep dispatches it."""
    monkeypatch.setattr(dispatch, "async_task", broker_down)
    response = post(api, "pics", {"media": upload(media_samples / "sample.jpg")})

    assert response.status_code == 202, response.content
    submission = Submission.objects.get(pk=response.json()["id"])
    assert submission.status == "queued"
    with submission.media.open("rb") as stored:
        assert stored.read() == (media_samples / "sample.jpg").read_bytes()
    assert "Connection refused" in caplog.text  # logged for the operator
    woken = []
    monkeypatch.setattr(sweep, "enqueue_pump", woken.append)
    sweep.sweep()
    assert woken == [visual.pk]
