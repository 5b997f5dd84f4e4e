"""The partner API for webhook endpoints: /api/v1/webhooks/ (PRODUCT.md "Partner webhooks")."""

from __future__ import annotations

import base64
import logging
import socket
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from moderation.models import AuditEvent, Partner, Status, Submission, WebhookDelivery, WebhookEndpoint
from moderation.services import notify, safe_http, webhooks
from moderation.services.keys import issue_key
from tests.webhook_receiver import Reply


@pytest.fixture
def other_api(db) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_key(Partner.objects.create(name='globex')).plaintext}")
    return client


def register(api, url="https://hooks.example.com/in", events=("submission.completed",)):
    return api.post("/api/v1/webhooks/", {"url": url, "events": list(events)}, format="json")


def test_registering_an_endpoint_shows_its_secret_once(api, partner, receiver):
    response = register(api, receiver.url, ["submission.completed", "submission.decided"])
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "url", "events", "active", "secret"}
    assert body["url"] == receiver.url
    assert body["events"] == ["submission.completed", "submission.decided"]
    assert body["active"] is True
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24
    assert response["Cache-Control"] == "no-store"
    assert WebhookEndpoint.objects.get(pk=body["id"]).partner == partner

    listed = api.get("/api/v1/webhooks/").json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0] and body["secret"] not in str(listed)
    detail = api.get(f"/api/v1/webhooks/{body['id']}/")
    assert detail.status_code == 200 and body["secret"] not in detail.content.decode()


def test_a_partner_lists_only_its_own_endpoints(api, other_api):
    mine = register(api).json()["id"]
    register(other_api, "https://globex.example.com/hook")
    assert [e["id"] for e in api.get("/api/v1/webhooks/").json()] == [mine]


@pytest.mark.parametrize("body, field", [
    ({"events": ["submission.completed"]}, "url"),
    ({"url": "ftp://hooks.example.com/in", "events": ["submission.completed"]}, "url"),
    ({"url": "not a url", "events": ["submission.completed"]}, "url"),
    ({"url": "https://hooks.example.com/" + "x" * 2100, "events": ["submission.completed"]}, "url"),
    ({"url": "https://hooks.example.com/in"}, "events"),
    ({"url": "https://hooks.example.com/in", "events": []}, "events"),
    ({"url": "https://hooks.example.com/in", "events": "submission.completed"}, "events"),
    ({"url": "https://hooks.example.com/in", "events": ["submission.created"]}, "events"),
])
def test_an_invalid_field_is_a_400_naming_it(api, body, field):
    response = api.post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not WebhookEndpoint.objects.exists()


def test_a_body_that_is_not_an_object_is_a_400(api):
    assert api.post("/api/v1/webhooks/", ["https://hooks.example.com/in"], format="json").status_code == 400


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://10.0.0.7/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://localhost/hook",
])
def test_a_private_url_is_refused_unless_allowed(api, settings, url):
    settings.ALLOW_PRIVATE_URLS = False
    response = register(api, url)
    assert response.status_code == 400
    assert "url" in response.json()
    settings.ALLOW_PRIVATE_URLS = True
    assert register(api, url).status_code == 201


def test_a_public_looking_name_that_resolves_inside_is_refused_without_naming_the_address(
        api, settings, monkeypatch, caplog):
    settings.ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["192.168.1.20"])
    with caplog.at_level(logging.INFO, logger="moderation.safe_http"):
        response = register(api, "https://hooks.partner.example/in")
    assert response.status_code == 400
    assert response.json() == {"url": ["The URL's host resolves to a private or reserved address."]}
    assert [(r.host, r.address) for r in caplog.records if r.name == "moderation.safe_http"] == [
        ("hooks.partner.example", "192.168.1.20")]  # for the operator
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["93.184.216.34"])
    assert register(api, "https://hooks.partner.example/in").status_code == 201


def test_a_name_that_does_not_resolve_is_refused_without_the_resolvers_words(api, settings, monkeypatch, caplog):
    settings.ALLOW_PRIVATE_URLS = False

    def no_such_name(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(safe_http, "_resolve", no_such_name)
    with caplog.at_level(logging.INFO, logger="moderation.safe_http"):
        response = register(api, "https://intranet.corp.example/in")
    assert response.status_code == 400
    assert response.json() == {"url": ["The URL's host does not resolve."]}
    [record] = [r for r in caplog.records if r.name == "moderation.safe_http"]
    assert record.host == "intranet.corp.example" and "Name or service not known" in record.error


def test_deleting_an_endpoint_removes_it(api, partner):
    endpoint_id = register(api).json()["id"]
    assert api.delete(f"/api/v1/webhooks/{endpoint_id}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert api.get(f"/api/v1/webhooks/{endpoint_id}/").status_code == 404
    assert AuditEvent.objects.filter(action="webhook.endpoint_deleted", partner=partner).exists()


def test_a_partner_may_have_at_most_the_configured_number_of_endpoints(api, other_api, settings):
    settings.WEBHOOK_ENDPOINTS_PER_PARTNER = 3
    ids = [register(api, f"https://hooks.example.com/{n}").json()["id"] for n in range(3)]
    refused = register(api, "https://hooks.example.com/4")
    assert refused.status_code == 400
    assert refused.json() == {"url": ["You already have 3 webhook endpoints, the most allowed: delete one, "
                                      "or send more events to one endpoint."]}
    assert WebhookEndpoint.objects.count() == 3
    assert register(other_api).status_code == 201  # the limit is each partner's own

    assert api.delete(f"/api/v1/webhooks/{ids[0]}/").status_code == 204
    assert register(api, "https://hooks.example.com/4").status_code == 201


def test_another_partners_endpoint_is_a_404_everywhere(api, other_api):
    theirs = register(other_api, "https://globex.example.com/hook").json()["id"]
    base = f"/api/v1/webhooks/{theirs}/"
    assert api.get(base).status_code == 404
    assert api.patch(base, {"active": False}, format="json").status_code == 404
    assert api.delete(base).status_code == 404
    assert api.post(base + "rotate-secret/", {}, format="json").status_code == 404
    assert api.get(base + "deliveries/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=theirs).exists()


def test_without_a_key_it_is_a_401(db):
    assert APIClient().get("/api/v1/webhooks/").status_code == 401


def test_rotating_the_secret_returns_the_new_one_and_keeps_the_old_for_the_overlap(api):
    created = register(api).json()
    response = api.post(f"/api/v1/webhooks/{created['id']}/rotate-secret/", {"overlap_hours": 2}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert webhooks.signing_secrets(endpoint) == (body["secret"], created["secret"])
    left = endpoint.previous_secret_expires_at - timezone.now()
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)
    assert body["secret"] not in api.get("/api/v1/webhooks/").content.decode()


def test_a_rotation_without_overlap_drops_the_old_secret_at_once(api):
    endpoint_id = register(api).json()["id"]
    new = api.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret/", {"overlap_hours": 0}, format="json").json()
    assert webhooks.signing_secrets(WebhookEndpoint.objects.get()) == (new["secret"],)
    bad = api.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret/", {"overlap_hours": -1}, format="json")
    assert bad.status_code == 400 and "overlap_hours" in bad.json()


def test_a_disabled_endpoint_can_be_switched_back_on(api):
    endpoint_id = register(api).json()["id"]
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        is_active=False, disabled_reason="The endpoint answered 410 Gone.", failing_since=timezone.now())
    response = api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"active": True}, format="json")
    assert response.status_code == 200
    assert response.json()["active"] is True and response.json()["disabled_reason"] == ""
    assert WebhookEndpoint.objects.get().failing_since is None


def test_changing_the_events_is_validated(api):
    endpoint_id = register(api).json()["id"]
    bad = api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"events": ["nope"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["events"]
    good = api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"events": ["submission.failed"]}, format="json")
    assert good.json()["events"] == ["submission.failed"]


# --- Delivery log and redelivery -----------------------------------------------------------------


@pytest.fixture
def delivered(api, partner, make_project, receiver):
    """An endpoint of the partner that received one decision after a 500."""
    project = make_project("pics")
    submission = Submission.objects.create(project=project, partner=partner, source="url",
                                           url="https://cdn.example.com/a.jpg", status=Status.COMPLETED)
    created = register(api, receiver.url, ["submission.decided"]).json()
    receiver.secrets.append(created["secret"])
    receiver.script = [Reply(500, body=b"oops")]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    return created["id"]


def test_the_delivery_log_shows_every_attempt(api, delivered):
    response = api.get(f"/api/v1/webhooks/{delivered}/deliveries/")
    assert response.status_code == 200
    (attempt,) = response.json()["results"]
    assert attempt["status_code"] == 500
    assert attempt["success"] is False
    assert attempt["error"] == "HTTP 500"
    assert attempt["response_excerpt"] == "oops"
    assert attempt["latency_ms"] is not None and attempt["attempted_at"]
    assert attempt["webhook_id"].startswith("msg_")
    assert attempt["event_type"] == "submission.decided"


def test_a_delivery_refused_for_a_private_address_names_no_address_in_the_log(
        api, partner, make_project, settings, monkeypatch):
    project = make_project("pics")
    submission = Submission.objects.create(project=project, partner=partner, source="url",
                                           url="https://cdn.example.com/a.jpg", status=Status.COMPLETED)
    endpoint_id = register(api, "https://hooks.partner.example/in", ["submission.decided"]).json()["id"]
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["10.20.30.40"])  # DNS now points inside
    settings.ALLOW_PRIVATE_URLS = False
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    response = api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/")
    (attempt,) = response.json()["results"]
    assert attempt["error"] == "Refused: The URL's host resolves to a private or reserved address."
    assert "10.20.30.40" not in response.content.decode()


def test_redelivering_sends_the_message_again_with_the_same_webhook_id(api, delivered, receiver):
    first = WebhookDelivery.objects.get()
    response = api.post(f"/api/v1/webhooks/{delivered}/deliveries/{first.pk}/redeliver/")
    assert response.status_code == 202
    assert response.json()["webhook_id"] == first.message_id

    log = api.get(f"/api/v1/webhooks/{delivered}/deliveries/").json()["results"]
    assert [(a["success"], a["manual"]) for a in log] == [(True, True), (False, False)]
    assert {a["webhook_id"] for a in log} == {first.message_id}
    assert [r.webhook_id for r in receiver.received] == [first.message_id] * 2
    only_failed = api.get(f"/api/v1/webhooks/{delivered}/deliveries/?success=false").json()["results"]
    assert [a["id"] for a in only_failed] == [first.pk]


def test_redelivering_to_a_disabled_endpoint_is_a_409(api, delivered, receiver):
    first = WebhookDelivery.objects.get()
    WebhookEndpoint.objects.update(is_active=False)
    response = api.post(f"/api/v1/webhooks/{delivered}/deliveries/{first.pk}/redeliver/")
    assert response.status_code == 409
    assert len(receiver.received) == 1


def test_a_delivery_of_another_endpoint_cannot_be_redelivered_through_this_one(api, delivered):
    other = register(api).json()["id"]
    first = WebhookDelivery.objects.get()
    assert api.post(f"/api/v1/webhooks/{other}/deliveries/{first.pk}/redeliver/").status_code == 404


def test_the_openapi_schema_documents_the_webhook_endpoints(client, db):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/webhooks/"] and "get" in paths["/api/v1/webhooks/"]
    assert "delete" in paths["/api/v1/webhooks/{id}/"]
    assert "/api/v1/webhooks/{id}/rotate-secret/" in paths
    assert "/api/v1/webhooks/{id}/deliveries/" in paths
    assert "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver/" in paths
    created = paths["/api/v1/webhooks/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("EndpointCreated")
