"""Hostile input to the partner API (issue 8): (a) another partner's objects,
(b) very long headers, (c) uploads built to hurt, (d) paths no route matches,
(e) values SQLite stores and PostgreSQL refuses (NUL characters, UTC offsets
past 15:59, forged cursors). Every refusal is a clear 4xx with a JSON body,
never a 500, and leaves nothing behind: no row, no file on disk, no change to
anyone else's objects.

tests/test_api_submissions.py already checks the status and the field named
for the refused uploads; this file adds what is left on disk, and the cases it
does not have. CI runs it on SQLite and again on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from moderation.models import (
    IdempotencyRecord, Partner, Status, Submission, WebhookDelivery, WebhookEndpoint, WebhookMessage,
)
from moderation.services import notify, webhooks
from tests.conftest import MEDIA_SAMPLES

SUBMIT = "/api/v1/projects/{slug}/submissions/"


def assert_json_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict) and body, body
    if field is not None:
        assert field in body, body
        reason = body[field][0] if isinstance(body[field], list) else body[field]
        assert isinstance(reason, str) and reason.strip(), body
    return body


# --- (a) Another partner's objects: a 404 everywhere, and nothing changed ---------------------------


@dataclass
class Objects:
    """One partner's objects, by the names the matrix's paths use."""

    slug: str
    submission: str
    external_id: str
    endpoint: str
    delivery: int
    message: str


@pytest.fixture
def two_partners(api, partner, make_project, receiver):
    """`partner` (the caller, through `api`) and globex, who share one project;
    each has a private project, a submission, and a webhook endpoint with one
    delivery in its log."""
    globex = Partner.objects.create(name="globex")
    shared = make_project("shared")
    partner.projects.add(shared, make_project("mine"))
    globex.projects.add(shared, make_project("theirs"))

    def objects(owner: Partner, slug: str, external_id: str) -> Objects:
        submission = Submission.objects.create(
            project=shared, partner=owner, source="url", url="https://cdn.example.com/a.jpg",
            external_id=external_id, status=Status.COMPLETED, decision="approved",
        )
        endpoint = webhooks.create_endpoint(owner, receiver.url, ["submission.decided"])
        receiver.secrets.append(endpoint.secret)
        webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
        delivery = WebhookDelivery.objects.select_related("message").get(message__endpoint=endpoint)
        return Objects(slug, str(submission.pk), external_id, str(endpoint.pk), delivery.pk, delivery.message_id)

    mine = objects(partner, "mine", "acme-1")
    theirs = objects(globex, "theirs", "globex-1")
    Submission.objects.create(project=globex.projects.get(slug="theirs"), partner=globex, source="text_data",
                              text_data="hi", media_kind="text", external_id="globex-2")
    return mine, theirs


ABSENT = Objects(slug="no-such-project", submission=str(uuid.uuid4()), external_id="none",
                 endpoint=str(uuid.uuid4()), delivery=2**31 - 1, message="msg_none")


def snapshot() -> dict:
    """Everything the caller might change of anyone's: endpoints with their
    secrets, submissions, the delivery log and the messages' state."""
    return {
        "endpoints": sorted(WebhookEndpoint.objects.values_list(
            "pk", "url", "events", "secret", "previous_secret", "previous_secret_expires_at", "is_active",
            "disabled_reason")),
        "submissions": sorted(Submission.objects.values_list("pk", "partner_id", "project_id", "status")),
        "deliveries": sorted(WebhookDelivery.objects.values_list("pk", "message_id", "success")),
        "messages": sorted(WebhookMessage.objects.values_list("pk", "status", "attempts")),
    }


@dataclass
class Attempt:
    """One endpoint called with another partner's object (`o`: theirs;
    `me`: the caller's own, for paths that mix the two)."""

    method: str
    path: str
    body: dict | None = None

    def send(self, api: APIClient, o: Objects, me: Objects):
        path = self.path.format(o=o, me=me)
        return getattr(api, self.method)(path, self.body, format="json")


MATRIX = {
    "submission create in their project": Attempt("post", "/api/v1/projects/{o.slug}/submissions/",
                                                  {"url": "https://cdn.example.com/x.jpg"}),
    "submission detail": Attempt("get", "/api/v1/submissions/{o.submission}/"),
    "webhook detail GET": Attempt("get", "/api/v1/webhooks/{o.endpoint}/"),
    "webhook detail PATCH": Attempt("patch", "/api/v1/webhooks/{o.endpoint}/",
                                    {"url": "https://evil.example.com/steal", "events": ["submission.failed"],
                                     "active": False}),
    "webhook detail DELETE": Attempt("delete", "/api/v1/webhooks/{o.endpoint}/"),
    "webhook rotate-secret": Attempt("post", "/api/v1/webhooks/{o.endpoint}/rotate-secret/", {"overlap_hours": 0}),
    "webhook deliveries list": Attempt("get", "/api/v1/webhooks/{o.endpoint}/deliveries/"),
    "redeliver their delivery of their endpoint": Attempt(
        "post", "/api/v1/webhooks/{o.endpoint}/deliveries/{o.delivery}/redeliver/"),
    "redeliver their delivery through my endpoint": Attempt(
        "post", "/api/v1/webhooks/{me.endpoint}/deliveries/{o.delivery}/redeliver/"),
}


@pytest.mark.parametrize("attempt", MATRIX.values(), ids=MATRIX.keys())
def test_another_partners_object_is_a_404_like_an_absent_one_and_nothing_changes(
        api, two_partners, receiver, attempt):
    mine, theirs = two_partners
    before, sent = snapshot(), len(receiver.received)

    response = attempt.send(api, theirs, mine)

    body = assert_json_error(response, 404, "detail")
    assert snapshot() == before
    assert len(receiver.received) == sent  # nothing was sent to their endpoint (or mine)
    # The same answer as for an object that does not exist: no way to tell "not yours" from "absent".
    absent = attempt.send(api, ABSENT, mine)
    assert (absent.status_code, absent.json()) == (404, body)


@pytest.mark.parametrize("query", [
    {"project": "theirs"},
    {"project": "shared"},
    {"external_id": "globex-1"},
    {"external_id": "globex-2", "project": "theirs"},
], ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_the_submission_list_filtered_by_their_objects_shows_none_of_theirs(api, two_partners, query):
    mine, theirs = two_partners
    response = api.get("/api/v1/submissions/", query)
    assert response.status_code == 200
    shown = [s["id"] for s in response.json()["results"]]
    assert theirs.submission not in shown
    assert set(shown) <= {mine.submission}
    if query.get("project") == "shared":
        assert shown == [mine.submission]  # the filter works: only the caller's own in the shared project


def test_my_delivery_log_filtered_by_their_webhook_id_is_empty(api, two_partners):
    mine, theirs = two_partners
    response = api.get(f"/api/v1/webhooks/{mine.endpoint}/deliveries/", {"webhook_id": theirs.message})
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_the_lists_never_show_their_objects(api, two_partners):
    mine, theirs = two_partners
    assert [p["slug"] for p in api.get("/api/v1/projects/").json()] == ["mine", "shared"]
    assert [e["id"] for e in api.get("/api/v1/webhooks/").json()] == [mine.endpoint]
    assert [s["id"] for s in api.get("/api/v1/submissions/").json()["results"]] == [mine.submission]


# --- (b) Very long headers ------------------------------------------------------------------------

LONG = 64 * 1024


@pytest.fixture
def text_project(make_project, partner):
    project = make_project("chat", endpoint_type="text", hive_api_key="sim-text-x")
    partner.projects.add(project)
    return project


@pytest.mark.parametrize("authorization", [
    "Token " + "a" * LONG,
    "Token hp_" + "a" * LONG + "_" + "b" * 16,
    "Token " + "a " * (LONG // 2),
    "Bearer " + "a" * LONG,
    "Token " + "\xff" * LONG,  # not UTF-8 once the server has decoded it as latin-1
    "a" * LONG,
], ids=["one-long-token", "long-key-shaped-token", "many-words", "other-scheme", "not-utf8", "no-scheme"])
def test_a_very_long_authorization_header_is_a_401(text_project, authorization):
    client = APIClient()
    for method, path, body in [("get", "/api/v1/projects/", None),
                               ("post", SUBMIT.format(slug="chat"), {"text_data": "hi"})]:
        response = getattr(client, method)(path, body, format="json", HTTP_AUTHORIZATION=authorization)
        assert_json_error(response, 401, "detail")
        assert len(response.content) < 1024  # the header is not echoed back
    assert not Submission.objects.exists()


@pytest.mark.parametrize("key", ["k" * 256, "k" * LONG, ""], ids=["256", "64KB", "empty"])
def test_an_idempotency_key_outside_1_to_255_characters_is_a_400_naming_the_header(api, text_project, key):
    response = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    body = assert_json_error(response, 400, "Idempotency-Key")
    assert "255" in body["Idempotency-Key"][0]
    assert len(response.content) < 1024
    assert not Submission.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_an_idempotency_key_of_255_characters_is_accepted(api, text_project):
    key = "k" * 255
    first = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize("content_type, status", [
    ("application/json; charset=utf-8; x=" + "a" * LONG, 415),  # DRF parses no media type over 256 characters
    ("application/" + "x" * LONG, 415),
    ("multipart/form-data; boundary=" + "b" * LONG, 415),
    ("multipart/form-data; " + "x=y; " * (LONG // 5), 415),
    ("x" * LONG, 415),
    ("multipart/form-data; boundary=" + "b" * 220, 400),  # under DRF's 256; Django takes boundaries up to 201
], ids=["json-long-param", "long-subtype", "long-boundary", "many-params", "junk", "boundary-220"])
def test_a_very_long_content_type_is_a_clear_4xx(api, text_project, content_type, status):
    response = api.generic("POST", SUBMIT.format(slug="chat"), json.dumps({"text_data": "hi"}),
                           content_type=content_type)
    assert_json_error(response, status, "detail")
    assert len(response.content) < 4096, "the header is echoed back in full"
    assert not Submission.objects.exists()


@pytest.mark.parametrize("content_type", ["application/" + "x" * LONG, "x" * LONG])
def test_a_very_long_content_type_on_the_webhook_api_is_a_clear_415(api, content_type):
    response = api.generic("POST", "/api/v1/webhooks/",
                           json.dumps({"url": "https://hooks.example.com/in", "events": ["submission.completed"]}),
                           content_type=content_type)
    assert_json_error(response, 415, "detail")
    assert len(response.content) < 4096, "the header is echoed back in full"
    assert not WebhookEndpoint.objects.exists()


# --- (c) Uploads: refused, and nothing stored -----------------------------------------------------


@pytest.fixture(params=["in-memory", "temp-file"])
def disk(request, settings, tmp_path) -> Path:
    """MEDIA_ROOT and the upload temp dir under tmp_path, deep enough that a
    `../..` in a name would still land inside tmp_path, where the test looks.
    temp-file: every upload is streamed to a temporary file, as a large one is."""
    media = tmp_path / "a" / "b" / "media"
    temp = tmp_path / "upload-tmp"
    media.mkdir(parents=True)
    temp.mkdir()
    settings.MEDIA_ROOT = str(media)
    settings.FILE_UPLOAD_TEMP_DIR = str(temp)
    if request.param == "temp-file":
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return tmp_path


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def projects(make_project, partner):
    visual = make_project("pics", endpoint_type="visual")
    text = make_project("chat", endpoint_type="text", hive_api_key="sim-text-x")
    partner.projects.add(visual, text)
    return visual, text


def upload(path: Path, name: str | None = None, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type=content_type)


def multipart(*parts: tuple[str, str | None, bytes], content_type: str = "application/octet-stream"):
    """A multipart body built by hand: Django's test client sends only the
    base name of a file, and a hostile client sends whatever it likes.
    Each part is (field, file name or None for a plain field, bytes)."""
    boundary = "hostile-boundary-7d3f"
    body = b""
    for field, filename, data in parts:
        head = f'Content-Disposition: form-data; name="{field}"'
        if filename is not None:
            head += f'; filename="{filename}"\r\nContent-Type: {content_type}'
        body += f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send(api, slug: str, body_and_type):
    body, content_type = body_and_type
    return api.generic("POST", SUBMIT.format(slug=slug), body, content_type=content_type)


def sample(name: str) -> bytes:
    return (MEDIA_SAMPLES / name).read_bytes()


UPLOADS = {
    # A name (and a declared type) that lies about what the bytes are.
    "zip named .png, sent as image/png": (
        lambda: multipart(("media", "photo.png", sample("archive-named-as.png")), content_type="image/png"),
        415, "media"),
    "text named .jpg, sent as image/jpeg": (
        lambda: multipart(("media", "photo.jpg", sample("text-named-as.jpg")), content_type="image/jpeg"),
        415, "media"),
    "pdf named .png": (lambda: multipart(("media", "scan.png", sample("document.pdf"))), 415, "media"),
    "audio named .jpg to an image project": (
        lambda: multipart(("media", "photo.jpg", sample("sample.mp3"))), 415, "media"),
    "truncated jpeg": (lambda: multipart(("media", "truncated.jpg", sample("truncated.jpg"))), 400, "media"),
    "png cut short": (lambda: multipart(("media", "half.png", sample("sample.png")[:200])), 400, "media"),
    "zero bytes": (lambda: multipart(("media", "empty.png", b"")), 400, "media"),
    # Django keeps a file part with an empty name as a plain field, and drops one whose name is only dots.
    "zero bytes, empty file name": (lambda: multipart(("media", "", b"")), 400, "media"),
    "real image, empty file name": (lambda: multipart(("media", "", sample("sample.png"))), 400, "media"),
    "real image named ..": (lambda: multipart(("media", "..", sample("sample.png"))), 400, "content"),
    "real image named ../": (lambda: multipart(("media", "../", sample("sample.png"))), 400, "content"),
    # Django caps a part's headers at 1024 bytes.
    "real image, 1000-character name": (lambda: multipart(("media", "x" * 1000, sample("sample.png"))),
                                        400, "detail"),
    "path traversal name, refused content": (
        lambda: multipart(("media", "../../../evil.png", sample("text-named-as.jpg"))), 415, "media"),
    "absolute path name, corrupt content": (
        lambda: multipart(("media", "/tmp/evil.jpg", sample("truncated.jpg"))), 400, "media"),
    "good file, metadata not JSON": (
        lambda: multipart(("media", "a.png", sample("sample.png")), ("metadata", None, b"{not json")),
        400, "metadata"),
    "good file, metadata too deep": (
        lambda: multipart(("media", "a.png", sample("sample.png")),
                          ("metadata", None, b'{"a":' * 40 + b"1" + b"}" * 40)), 400, "metadata"),
    "good file, overlong external_id": (
        lambda: multipart(("media", "a.png", sample("sample.png")), ("external_id", None, b"x" * 256)),
        400, "external_id"),
    "good file and a url": (
        lambda: multipart(("media", "a.png", sample("sample.png")), ("url", None, b"https://cdn.example.com/a.png")),
        400, "url"),
    "two files": (lambda: multipart(("media", "a.png", sample("sample.png")), ("media", "b.jpg", sample("sample.jpg"))),
                  400, "media"),
    "file under another field name": (lambda: multipart(("picture", "a.png", sample("sample.png"))), 400, "picture"),
    "file as text_data of an image project": (
        lambda: multipart(("text_data", "a.txt", b"hello")), 400, "text_data"),
}


@pytest.mark.parametrize("make_body, status, field", UPLOADS.values(), ids=UPLOADS.keys())
def test_a_refused_upload_leaves_no_row_and_no_file(api, projects, media_samples, disk, make_body, status, field):
    assert_json_error(send(api, "pics", make_body()), status, field)
    assert not Submission.objects.exists()
    assert files_under(disk) == []


def test_a_file_over_the_limit_mid_stream_leaves_no_file(api, projects, disk, settings):
    """Under the Content-Length pre-check (which allows for the multipart
    envelope) but over the limit: stopped by the upload handler while streaming."""
    settings.MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"0" * (2**20 + 16 * 1024))
    response = api.post(SUBMIT.format(slug="pics"), {"media": big}, format="multipart")
    assert_json_error(response, 413, "media")
    assert not Submission.objects.exists()
    assert files_under(disk) == []


def test_a_file_over_the_limit_by_content_length_leaves_no_file(api, projects, disk, settings):
    settings.MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 2**20))
    response = api.post(SUBMIT.format(slug="pics"), {"media": big}, format="multipart")
    assert_json_error(response, 413, "body")
    assert not Submission.objects.exists()
    assert files_under(disk) == []


def test_an_idempotency_conflict_with_a_file_leaves_only_the_first_file(api, projects, media_samples, disk):
    first = api.post(SUBMIT.format(slug="pics"), {"media": upload(media_samples / "sample.png")},
                     format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 202
    stored = files_under(disk)
    assert len(stored) == 1
    response = api.post(SUBMIT.format(slug="pics"), {"media": upload(media_samples / "sample.jpg")},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert_json_error(response, 409, "Idempotency-Key")
    assert Submission.objects.count() == 1
    assert files_under(disk) == stored


@pytest.mark.parametrize("name", [
    "../../../evil.png", "..\\..\\..\\evil.png", "/etc/passwd.png", "a/../../../evil.png", "....//....//evil.png",
    "%2e%2e%2f%2e%2e%2fevil.png", "evil.png%00.sh", "evil.sh", "no-extension", "x" * 200 + ".png",
], ids=lambda name: name if len(name) < 40 else f"{len(name)} characters")
def test_a_hostile_file_name_is_stored_under_our_own_name_inside_media_root(api, projects, disk, name):
    response = send(api, "pics", multipart(("media", name, sample("sample.png"))))
    assert response.status_code == 202, (name, response.content)
    submission = Submission.objects.get()
    assert files_under(disk) == [f"a/b/media/{submission.media.name}"]
    assert submission.media.name == f"submissions/{submission.created_at:%Y/%m/%d}/{submission.pk}.png"


HUGE = 3 * 1024 * 1024


@pytest.mark.parametrize("path, body", [
    (SUBMIT.format(slug="chat"), {"text_data": "hi", "metadata": {"blob": "x" * HUGE}}),
    (SUBMIT.format(slug="chat"), {"text_data": "hi", "metadata": {f"k{n}": n for n in range(HUGE // 10)}}),
    ("/api/v1/webhooks/", {"url": "https://hooks.example.com/in", "events": ["submission.completed"] * (HUGE // 20)}),
], ids=["submission-long-string", "submission-many-keys", "webhook-long-list"])
def test_a_huge_json_body_is_a_413_and_stores_nothing(api, projects, disk, path, body):
    response = api.post(path, body, format="json")
    assert_json_error(response, 413, "body")
    assert not Submission.objects.exists() and not WebhookEndpoint.objects.exists()
    assert files_under(disk) == []


def test_huge_metadata_in_a_multipart_upload_is_a_413_and_stores_no_file(api, projects, media_samples, disk):
    response = api.post(SUBMIT.format(slug="pics"), {"media": upload(media_samples / "sample.png"),
                                                     "metadata": json.dumps({"blob": "x" * HUGE})},
                        format="multipart")
    assert_json_error(response, 413, "body")
    assert not Submission.objects.exists()
    assert files_under(disk) == []


def test_metadata_just_over_its_own_limit_is_a_400_naming_it(api, projects, disk):
    response = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi", "metadata": {"blob": "x" * 70_000}},
                        format="json")
    assert_json_error(response, 400, "metadata")
    assert not Submission.objects.exists()


DEEP = 100_000


@pytest.mark.parametrize("path, body", [
    ("/api/v1/webhooks/", '{"url": "https://hooks.example.com/in", "events": ' + "[" * DEEP + "]" * DEEP + "}"),
    ("/api/v1/webhooks/", "[" * DEEP + "]" * DEEP),
    (SUBMIT.format(slug="chat"), '{"text_data": "hi", "external_id": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}"),
], ids=["webhook-events", "webhook-body", "submission-external-id"])
def test_json_nested_too_deeply_is_a_400_and_stores_nothing(api, projects, disk, path, body):
    response = api.generic("POST", path, body, content_type="application/json")
    assert_json_error(response, 400, "detail")
    assert not Submission.objects.exists() and not WebhookEndpoint.objects.exists()
    assert files_under(disk) == []


def test_a_deep_patch_or_rotation_body_changes_nothing(api, disk):
    endpoint_id = api.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/in",
                                                 "events": ["submission.completed"]}, format="json").json()["id"]
    before = snapshot()
    deep = '{"events": ' + "[" * DEEP + "]" * DEEP + "}"
    for method, path in [("PATCH", f"/api/v1/webhooks/{endpoint_id}/"),
                         ("POST", f"/api/v1/webhooks/{endpoint_id}/rotate-secret/")]:
        assert_json_error(api.generic(method, path, deep, content_type="application/json"), 400, "detail")
    assert snapshot() == before


# --- (d) Paths no route matches -------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/submissions/not-a-uuid/"),
    ("get", "/api/v1/submissions/" + "9" * 4096 + "/"),
    ("post", "/api/v1/projects/bad%20slug!/submissions/"),
    ("post", "/api/v1/projects/%C2%88%04/submissions/"),
    ("patch", "/api/v1/webhooks/null,null/"),
    ("post", "/api/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries/-1/redeliver/"),
    ("get", "/api/v1/../../etc/passwd"),
    ("get", "/api/v2/projects/"),
])
def test_an_unrouted_api_path_is_a_json_404(api, method, path):
    response = getattr(api, method)(path, {}, format="json")
    assert_json_error(response, 404, "detail")


def test_an_unrouted_portal_path_keeps_its_html_404(client, db):
    response = client.get("/portal/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- (e) NUL characters: SQLite stores them, PostgreSQL refuses them; the API refuses them first --------


NUL_SUBMISSIONS = {
    "text_data": ("chat", {"text_data": "hi\x00there"}, "text_data"),
    "external_id": ("chat", {"text_data": "hi", "external_id": "a\x00b"}, "external_id"),
    "metadata value": ("chat", {"text_data": "hi", "metadata": {"user": "a\x00b"}}, "metadata"),
    "metadata key": ("chat", {"text_data": "hi", "metadata": {"a\x00b": 1}}, "metadata"),
    "metadata nested": ("chat", {"text_data": "hi", "metadata": {"a": [{"b": ["c\x00"]}]}}, "metadata"),
    "url": ("pics", {"url": "https://cdn.example.com/a\x00.jpg"}, "url"),
}


@pytest.mark.parametrize("slug, body, field", NUL_SUBMISSIONS.values(), ids=NUL_SUBMISSIONS.keys())
def test_a_nul_character_in_a_submission_is_a_400_naming_the_field(api, projects, slug, body, field):
    response = api.post(SUBMIT.format(slug=slug), body, format="json")
    assert_json_error(response, 400, field)
    assert not Submission.objects.exists()


def test_a_nul_character_in_a_multipart_field_is_a_400_naming_it(api, projects, disk):
    response = send(api, "pics", multipart(("media", "a.png", sample("sample.png")), ("external_id", None, b"a\x00b")))
    assert_json_error(response, 400, "external_id")
    assert not Submission.objects.exists()
    assert files_under(disk) == []


@pytest.mark.parametrize("body, field", [
    ({"url": "https://hooks.example.com/in\x00", "events": ["submission.completed"]}, "url"),
    ({"url": "https://hooks.example.com/in", "events": ["submission.completed\x00"]}, "events"),
])
def test_a_nul_character_in_a_webhook_endpoint_is_a_400_naming_the_field(api, body, field):
    assert_json_error(api.post("/api/v1/webhooks/", body, format="json"), 400, field)
    assert not WebhookEndpoint.objects.exists()
    endpoint_id = api.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/in",
                                                 "events": ["submission.completed"]}, format="json").json()["id"]
    before = snapshot()
    assert_json_error(api.patch(f"/api/v1/webhooks/{endpoint_id}/", body, format="json"), 400, field)
    assert snapshot() == before


@pytest.mark.parametrize("query", [
    {"external_id": "a\x00"}, {"project": "a\x00"}, {"status": "queued\x00"}, {"created_after": "2026\x00"},
], ids=lambda q: next(iter(q)))
def test_a_nul_character_in_a_list_filter_is_a_400_naming_it(api, query):
    assert_json_error(api.get("/api/v1/submissions/", query), 400, next(iter(query)))


# --- (f) JSON that Python reads and no database stores: lone surrogates, NaN, Infinity, 1e400 ------------
# Each once came back as a 500; a lone surrogate was even stored first, and every
# later GET, list and webhook of that submission failed.

UNSTORABLE_JSON = {
    "text_data surrogate": ("chat", '{"text_data": "hi \\ud800"}', "text_data"),
    "external_id surrogate": ("chat", '{"text_data": "hi", "external_id": "a\\udfff"}', "external_id"),
    "metadata value surrogate": ("chat", '{"text_data": "hi", "metadata": {"a": "\\ud800"}}', "metadata"),
    "metadata key surrogate": ("chat", '{"text_data": "hi", "metadata": {"\\ud800": 1}}', "metadata"),
    "url surrogate": ("pics", '{"url": "https://cdn.example.com/\\ud800.jpg"}', "url"),
    "metadata 1e400": ("chat", '{"text_data": "hi", "metadata": {"a": [1e400]}}', "metadata"),
    "metadata -1e400": ("chat", '{"text_data": "hi", "metadata": {"a": -1e400}}', "metadata"),
}


@pytest.mark.parametrize("slug, body, field", UNSTORABLE_JSON.values(), ids=UNSTORABLE_JSON.keys())
def test_json_no_database_can_store_is_a_400_naming_the_field(api, projects, slug, body, field):
    response = api.generic("POST", SUBMIT.format(slug=slug), body, content_type="application/json")
    assert_json_error(response, 400, field)
    assert not Submission.objects.exists()


@pytest.mark.parametrize("metadata", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', '{"a": "\\ud800"}'])
def test_unstorable_metadata_in_a_multipart_upload_is_a_400_and_stores_nothing(api, projects, disk, metadata):
    response = send(api, "pics", multipart(("media", "a.png", sample("sample.png")),
                                           ("metadata", None, metadata.encode())))
    assert_json_error(response, 400, "metadata")
    assert not Submission.objects.exists()
    assert files_under(disk) == []


BAD_HOSTS = ["http://a..com/x.png", "http://.a.com/x.png", f"http://{'a' * 64}.com/x.png", "http://a b.com/x.png",
             "http://-a.com/x.png"]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_url_whose_host_no_dns_could_hold_is_a_400(api, projects, settings, url):
    # It was accepted, then crashed the worker's mirror fetch (UnicodeError from the IDNA codec) on every retry.
    settings.ALLOW_PRIVATE_URLS = False
    assert_json_error(api.post(SUBMIT.format(slug="pics"), {"url": url}, format="json"), 400, "url")
    assert not Submission.objects.exists()


@pytest.mark.parametrize("url", [*BAD_HOSTS, "https://hooks.example.com/\\ud800"])
def test_a_webhook_url_with_an_impossible_host_or_a_lone_surrogate_is_a_400(api, settings, url):
    settings.ALLOW_PRIVATE_URLS = False
    body = '{"url": "%s", "events": ["submission.completed"]}' % url
    assert_json_error(api.generic("POST", "/api/v1/webhooks/", body, content_type="application/json"), 400, "url")
    assert not WebhookEndpoint.objects.exists()


def test_a_paired_surrogate_is_just_an_emoji(api, projects):
    response = api.generic("POST", SUBMIT.format(slug="chat"),
                           '{"text_data": "hi \\ud83d\\ude00", "metadata": {"face": "\\ud83d\\ude00"}}',
                           content_type="application/json")
    assert response.status_code == 202, response.content[:300]
    submission = api.get(f"/api/v1/submissions/{response.json()['id']}/").json()
    assert submission["metadata"] == {"face": "\U0001F600"}


def test_the_metadata_limit_counts_utf8_bytes_not_escapes(api, projects):
    # 15,000 CJK characters: 45 KB in UTF-8, 90 KB as \uXXXX escapes; the limit is 64 KB.
    response = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi", "metadata": {"n": "中" * 15_000}},
                        format="json")
    assert response.status_code == 202, response.content[:300]
    response = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi", "metadata": {"n": "中" * 23_000}},
                        format="json")
    assert_json_error(response, 400, "metadata")


def test_an_upper_case_scheme_is_stored_and_sent_lower_case(api, projects):
    response = api.post(SUBMIT.format(slug="pics"), {"url": "HTTPS://CDN.example.com/A.jpg"}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert Submission.objects.get().url == "https://CDN.example.com/A.jpg"


@pytest.mark.parametrize("moment, status", [
    ("2026-01-01T00:00:00+17:41", 200),  # a valid ISO 8601 offset past PostgreSQL's ±15:59
    ("2026-01-01T00:00:00-23:59", 200),
    ("9999-12-31T23:59:59-14:00", 400),  # past year 9999 once in UTC
    ("0001-01-01T00:00:00+14:00", 400),  # before year 1 once in UTC
    ("2026-02-30T00:00:00Z", 400),
    ("2026-01-01T25:00:00Z", 400),
])
@pytest.mark.parametrize("bound", ["created_after", "created_before"])
def test_a_creation_time_filter_is_compared_in_utc_or_refused_naming_it(api, projects, bound, moment, status):
    created = api.post(SUBMIT.format(slug="chat"), {"text_data": "hi"}, format="json").json()["id"]
    response = api.get("/api/v1/submissions/", {bound: moment})
    if status == 400:
        assert_json_error(response, 400, bound)
        return
    assert response.status_code == 200, response.content[:300]
    shown = [s["id"] for s in response.json()["results"]]
    # 2026-01-01T00:00:00+17:41 is 2025-12-31T06:19Z and -23:59 is 2026-01-01T23:59Z: both before now.
    assert shown == ([created] if bound == "created_after" else [])


def test_a_nul_character_in_the_delivery_log_filter_is_a_400_naming_it(api):
    endpoint_id = api.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/in",
                                                 "events": ["submission.completed"]}, format="json").json()["id"]
    response = api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/", {"webhook_id": "msg_\x00"})
    assert_json_error(response, 400, "webhook_id")


FORGED_CURSORS = {  # the cursor's fields → the statuses a partner may get
    "position with a NUL": ({"p": "2026\x00"}, {404}),
    "position not a timestamp": ({"p": "not-a-date"}, {404}),
    "reversed, position not a timestamp": ({"r": "1", "p": "x"}, {404}),
    "month 13": ({"p": "2026-13-01 00:00:00+00:00"}, {404}),
    # Python takes any UTC offset under 24 hours; PostgreSQL none past 15:59.
    "offset PostgreSQL cannot hold": ({"p": "2026-01-01 00:00:00+17:41"}, {200}),
    "past year 9999 in UTC": ({"p": "9999-12-31 23:59:59-14:00"}, {404}),
    "before year 1 in UTC": ({"p": "0001-01-01 00:00:00+14:00"}, {404}),
    "huge offset": ({"o": "9" * 30, "p": "2026-01-01 00:00:00+00:00"}, {200}),  # DRF caps the offset
}


@pytest.mark.parametrize("fields, statuses", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
def test_a_forged_cursor_is_a_404_like_any_invalid_cursor(api, projects, fields, statuses):
    """DRF's cursor is base64 of `o=<offset>&r=<reverse>&p=<position>`, and the
    position went into the query as it was: a forged one must not be a 500."""
    api.post(SUBMIT.format(slug="chat"), {"text_data": "hi"}, format="json")
    endpoint_id = api.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/in",
                                                 "events": ["submission.completed"]}, format="json").json()["id"]
    cursor = base64.b64encode(urlencode(fields).encode()).decode()
    for path in ["/api/v1/submissions/", f"/api/v1/webhooks/{endpoint_id}/deliveries/"]:
        response = api.get(path, {"cursor": cursor})
        assert response.status_code in statuses, (path, response.status_code, response.content[:300])
        if response.status_code == 404:
            assert assert_json_error(response, 404, "detail") == {"detail": "Invalid cursor"}
        else:
            assert isinstance(response.json()["results"], list)


@pytest.mark.parametrize("cursor", ["x" * 4096, "%%%", "\x00"])
def test_a_cursor_that_is_not_base64_is_never_a_500(api, projects, cursor):
    response = api.get("/api/v1/submissions/", {"cursor": cursor})
    assert response.status_code in (200, 404), response.content[:300]  # DRF skips what is not base64
    assert response["Content-Type"].startswith("application/json")
