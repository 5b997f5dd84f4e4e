"""The partner API at its edges, as a partner's client meets them: chunked
bodies, URLs without the trailing slash, ids as other languages print them,
malformed list parameters and fields the API does not take."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from moderation.models import Status, Submission, WebhookDelivery, WebhookEndpoint
from moderation.services import notify, webhooks
from tests.webhook_receiver import Reply


@pytest.fixture
def text(make_project, partner):
    project = make_project("chat", endpoint_type="text", hive_api_key="sim-text-x")
    partner.projects.add(project)
    return project


@pytest.fixture
def submission(text, partner) -> Submission:
    return Submission.objects.create(project=text, partner=partner, source="text_data", text_data="hi")


def register(api, **fields):
    body = {"url": "https://hooks.example.com/in", "events": ["submission.completed"], **fields}
    return api.post("/api/v1/webhooks/", body, format="json")


def assert_error(response, status: int, field: str) -> str:
    """The API's error body: JSON naming `field`; returns its reason."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    reason = response.json()[field]
    reason = reason[0] if isinstance(reason, list) else reason
    assert isinstance(reason, str) and reason.strip()
    return reason


# --- 1. A chunked body (no Content-Length) is a 411, not a misleading 400 --------------------------


def test_a_chunked_request_without_content_length_is_a_411(api, text):
    response = api.generic("POST", "/api/v1/projects/chat/submissions/", content_type="application/json",
                           HTTP_TRANSFER_ENCODING="chunked")
    assert "Content-Length" in assert_error(response, 411, "detail")
    assert not Submission.objects.exists()


def test_a_chunked_webhook_registration_is_a_411_too(api):
    response = api.generic("POST", "/api/v1/webhooks/", content_type="application/json",
                           HTTP_TRANSFER_ENCODING="chunked")
    assert_error(response, 411, "detail")
    assert not WebhookEndpoint.objects.exists()


def test_a_chunked_hive_callback_is_a_411_too(client, db):
    response = client.generic("POST", "/hive/callback/any-id/any-token/", content_type="application/json",
                              HTTP_TRANSFER_ENCODING="chunked")
    assert_error(response, 411, "detail")


def test_a_real_chunked_upload_is_a_411_over_http(live_server, api_key, text):
    """What curl -H 'Transfer-Encoding: chunked' sends: the body in chunks, no
    Content-Length. Django read none of it, and answered that no content was sent.
    One write for the whole request: the server answers before it reads the body."""
    address = urlsplit(live_server.url)
    body = b'{"text_data": "hello"}'
    request = (f"POST /api/v1/projects/chat/submissions/ HTTP/1.1\r\nHost: {address.netloc}\r\n"
               f"Authorization: Token {api_key}\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode()
    request += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in (body[:10], body[10:])) + b"0\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = json.loads(response.read())
    assert response.status == 411
    assert response.getheader("Content-Type").startswith("application/json")
    assert "chunked" in answer["detail"]
    assert not Submission.objects.exists()


# --- 2. API URLs answer without their trailing slash (no 301 that loses a POST) --------------------


def test_a_post_without_the_trailing_slash_creates_the_submission(api, text):
    response = api.post("/api/v1/projects/chat/submissions", {"text_data": "hello"}, format="json")
    assert response.status_code == 202, (response.status_code, response.content[:200])
    assert Submission.objects.get().text_data == "hello"


def test_reads_and_webhook_calls_without_the_trailing_slash_answer_directly(api, submission):
    listed = api.get("/api/v1/submissions")
    assert listed.status_code == 200 and [s["id"] for s in listed.json()["results"]] == [str(submission.pk)]
    assert api.get(f"/api/v1/submissions/{submission.pk}").json()["id"] == str(submission.pk)
    assert api.get("/api/v1/projects").status_code == 200

    created = api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/in",
                                            "events": ["submission.completed"]}, format="json")
    assert created.status_code == 201, created.content
    endpoint = created.json()["id"]
    changed = api.patch(f"/api/v1/webhooks/{endpoint}", {"active": False}, format="json")
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert api.get(f"/api/v1/webhooks/{endpoint}/deliveries").status_code == 200
    assert api.post(f"/api/v1/webhooks/{endpoint}/rotate-secret", {}, format="json").status_code == 200
    assert api.delete(f"/api/v1/webhooks/{endpoint}").status_code == 204


def test_an_unknown_api_path_without_a_slash_is_still_a_json_404(api, text):
    response = api.post("/api/v1/projects/chat/submission", {"text_data": "hello"}, format="json")
    assert_error(response, 404, "detail")


def test_urls_and_the_openapi_document_keep_the_canonical_slashed_paths(api, submission):
    assert reverse("api:submission-create", kwargs={"slug": "chat"}) == "/api/v1/projects/chat/submissions/"
    assert reverse("api:submission-detail", kwargs={"pk": submission.pk}) == f"/api/v1/submissions/{submission.pk}/"
    assert reverse("api:webhook-list") == "/api/v1/webhooks/"
    paths = list(api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"])
    assert all(p.endswith("/") for p in paths), paths
    assert len({p.rstrip("/") for p in paths}) == len(paths)  # each path once
    assert "/api/v1/submissions/{id}/" in paths and "/api/v1/webhooks/{id}/deliveries/" in paths


# --- 3. Ids in upper case (Swift's uuidString) or without dashes ----------------------------------


@pytest.mark.parametrize("spell", [str.upper, lambda s: s.replace("-", ""), lambda s: s.replace("-", "").upper()],
                         ids=["upper-case", "32-hex", "32-hex-upper-case"])
def test_a_submission_id_in_any_case_or_without_dashes_finds_it(api, submission, spell):
    response = api.get(f"/api/v1/submissions/{spell(str(submission.pk))}/")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(submission.pk)  # answered in the canonical form


def test_a_webhook_id_in_upper_case_finds_it(api):
    endpoint = register(api).json()["id"]
    upper = endpoint.upper()
    assert api.get(f"/api/v1/webhooks/{upper}/").json()["id"] == endpoint
    assert api.get(f"/api/v1/webhooks/{upper}/deliveries/").status_code == 200
    assert api.post(f"/api/v1/webhooks/{upper}/rotate-secret/", {}, format="json").status_code == 200
    assert api.delete(f"/api/v1/webhooks/{upper}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("bad", ["D5505B12-79CA-491D-8BAD-0763AD19559", "G5505B12-79CA-491D-8BAD-0763AD19559D",
                                 "d5505b1279ca-491d-8bad-0763ad19559d"])
def test_an_id_that_is_no_uuid_is_still_a_json_404(api, submission, bad):
    assert_error(api.get(f"/api/v1/submissions/{bad}/"), 404, "detail")


def test_the_openapi_document_still_types_ids_as_uuids(api):
    paths = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path, method in [("/api/v1/submissions/{id}/", "get"), ("/api/v1/webhooks/{id}/", "patch")]:
        (parameter,) = [p for p in paths[path][method]["parameters"] if p["in"] == "path"]
        assert parameter["schema"] == {"type": "string", "format": "uuid"}


# --- 4. Malformed list parameters are a 400 naming them and what is accepted ----------------------


@pytest.mark.parametrize("page_size", ["abc", "0", "-1", "2.5"])
def test_a_malformed_page_size_is_a_400_naming_it(api, submission, page_size):
    reason = assert_error(api.get("/api/v1/submissions/", {"page_size": page_size}), 400, "page_size")
    assert "500" in reason  # the most one page returns


def test_a_page_size_within_range_still_pages(api, submission, text, partner):
    Submission.objects.create(project=text, partner=partner, source="text_data", text_data="two")
    page = api.get("/api/v1/submissions/", {"page_size": "1"}).json()
    assert len(page["results"]) == 1 and page["next"]


def test_an_invalid_status_names_the_accepted_values(api, submission):
    reason = assert_error(api.get("/api/v1/submissions/", {"status": "sideways"}), 400, "status")
    assert all(value in reason for value in Status.values), reason


def test_the_list_selects_submissions_with_no_decision_yet(api, text, partner):
    undecided = Submission.objects.create(project=text, partner=partner, source="text_data", text_data="a")
    Submission.objects.create(project=text, partner=partner, source="text_data", text_data="b",
                              decision="approved")
    body = api.get("/api/v1/submissions/", {"decision": "none"}).json()
    assert [s["id"] for s in body["results"]] == [str(undecided.pk)]
    reason = assert_error(api.get("/api/v1/submissions/", {"decision": "maybe"}), 400, "decision")
    assert "none" in reason and "approved" in reason


def test_the_openapi_document_lists_decision_none(api):
    paths = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    (decision,) = [p for p in paths["/api/v1/submissions/"]["get"]["parameters"] if p["name"] == "decision"]
    assert "none" in decision["schema"]["enum"]


@pytest.fixture
def delivered(api, partner, text, receiver):
    """An endpoint of the partner with two attempts of one message: a 500, then a 200."""
    submission = Submission.objects.create(project=text, partner=partner, source="text_data", text_data="hi",
                                           status=Status.COMPLETED)
    created = register(api, url=receiver.url, events=["submission.decided"]).json()
    receiver.secrets.append(created["secret"])
    receiver.script = [Reply(500, body=b"oops")]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    webhooks.redeliver(WebhookDelivery.objects.get())
    assert WebhookDelivery.objects.count() == 2
    return created["id"]


@pytest.mark.parametrize("success", ["maybe", "1", "0", "TRUE"])
def test_a_malformed_success_filter_is_a_400(api, delivered, success):
    response = api.get(f"/api/v1/webhooks/{delivered}/deliveries/", {"success": success})
    reason = assert_error(response, 400, "success")
    assert "true" in reason and "false" in reason


def test_the_success_filter_still_filters(api, delivered):
    log = api.get(f"/api/v1/webhooks/{delivered}/deliveries/", {"success": "true"}).json()["results"]
    assert [a["success"] for a in log] == [True]


@pytest.mark.parametrize("page_size", ["abc", "0", "-1"])
def test_a_malformed_page_size_of_the_delivery_log_is_a_400(api, delivered, page_size):
    assert_error(api.get(f"/api/v1/webhooks/{delivered}/deliveries/", {"page_size": page_size}), 400, "page_size")


# --- 5. Webhook endpoints refuse fields they do not take; JSON only -------------------------------


def test_registering_with_an_unknown_field_is_a_400_naming_it(api):
    response = register(api, extra=1, secret="whsec_mine")
    body = response.json()
    assert response.status_code == 400, body
    assert set(body) == {"extra", "secret"}
    assert "active" in body["extra"][0]  # the fields it does take
    assert not WebhookEndpoint.objects.exists()


def test_an_endpoint_can_be_registered_switched_off(api):
    response = register(api, active=False)
    assert response.status_code == 201, response.content
    assert response.json()["active"] is False
    assert WebhookEndpoint.objects.get().is_active is False
    assert api.get(f"/api/v1/webhooks/{response.json()['id']}/").json()["active"] is False


def test_registering_with_a_non_boolean_active_is_a_400(api):
    assert_error(register(api, active="no"), 400, "active")
    assert not WebhookEndpoint.objects.exists()


def test_changing_an_endpoint_with_an_unknown_field_is_a_400_and_changes_nothing(api):
    endpoint = register(api).json()["id"]
    response = api.patch(f"/api/v1/webhooks/{endpoint}/", {"events": ["submission.failed"], "enabled": False},
                         format="json")
    assert list(response.json()) == ["enabled"] and response.status_code == 400
    assert WebhookEndpoint.objects.get().events == ["submission.completed"]


def test_rotating_with_an_unknown_field_is_a_400(api):
    endpoint = register(api).json()["id"]
    secret = WebhookEndpoint.objects.get().secret
    response = api.post(f"/api/v1/webhooks/{endpoint}/rotate-secret/", {"overlap": 2}, format="json")
    assert_error(response, 400, "overlap")
    assert WebhookEndpoint.objects.get().secret == secret


@pytest.mark.parametrize("fmt", ["multipart", "form"])
def test_a_form_body_on_the_webhook_api_is_a_415(api, fmt):
    endpoint = register(api).json()["id"]
    data = {"url": "https://hooks.example.com/other", "events": "submission.failed"}
    if fmt == "form":
        post = api.post("/api/v1/webhooks/", data, content_type="application/x-www-form-urlencoded")
        patch = api.patch(f"/api/v1/webhooks/{endpoint}/", "active=false",
                          content_type="application/x-www-form-urlencoded")
    else:
        post = api.post("/api/v1/webhooks/", data, format="multipart")
        patch = api.patch(f"/api/v1/webhooks/{endpoint}/", data, format="multipart")
    assert_error(post, 415, "detail")
    assert_error(patch, 415, "detail")
    assert WebhookEndpoint.objects.get().is_active is True


def test_the_openapi_document_offers_only_json_for_webhook_changes(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    create, change = schema["paths"]["/api/v1/webhooks/"]["post"], schema["paths"]["/api/v1/webhooks/{id}/"]["patch"]
    assert list(create["requestBody"]["content"]) == list(change["requestBody"]["content"]) == ["application/json"]
    assert "415" in create["responses"] and "415" in change["responses"]
    assert "active" in schema["components"]["schemas"]["EndpointCreateRequest"]["properties"]
