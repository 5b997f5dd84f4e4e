"""Operators manage webhook endpoints and read the delivery log in the admin."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.auth.models import User

from moderation.models import Status, Submission, WebhookDelivery, WebhookEndpoint, WebhookMessage
from moderation.services import notify, webhooks
from tests.webhook_receiver import Reply


@pytest.fixture
def operator(client, db):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


@pytest.fixture
def failed_once(partner, make_project, receiver):
    """A delivered-after-failing log: one endpoint, one message, a 503 attempt."""
    submission = Submission.objects.create(project=make_project("pics"), partner=partner, source="url",
                                           url="https://cdn.example.com/a.jpg", status=Status.COMPLETED)
    endpoint = webhooks.create_endpoint(partner, receiver.url, [notify.DECIDED])
    receiver.secrets.append(endpoint.secret)
    receiver.script = [Reply(503)]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    return endpoint


def test_creating_an_endpoint_shows_its_secret_once(operator, partner, receiver):
    response = operator.post("/admin/moderation/webhookendpoint/add/", {
        "partner": partner.pk, "url": receiver.url, "events": ["submission.completed"], "is_active": "on",
        "disabled_reason": "",
    }, follow=True)
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret in response.content.decode()

    page = operator.get(f"/admin/moderation/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert endpoint.secret not in page
    assert "Hidden" in page


def test_the_admin_refuses_a_private_url_when_not_allowed(operator, partner, settings):
    settings.ALLOW_PRIVATE_URLS = False
    response = operator.post("/admin/moderation/webhookendpoint/add/", {
        "partner": partner.pk, "url": "http://10.0.0.1/hook", "events": ["submission.completed"],
    })
    assert response.status_code == 200
    assert "private" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_rotating_a_secret_in_the_admin_shows_the_new_one_once(operator, failed_once):
    old = failed_once.secret
    response = operator.post("/admin/moderation/webhookendpoint/", {
        "action": "rotate_secrets", "_selected_action": [failed_once.pk]}, follow=True)
    failed_once.refresh_from_db()
    assert failed_once.secret != old
    assert failed_once.secret in response.content.decode()
    assert webhooks.signing_secrets(failed_once) == (failed_once.secret, old)


def test_the_log_pages_list_messages_and_attempts(operator, failed_once):
    message = WebhookMessage.objects.get()
    for url in ("/admin/moderation/webhookendpoint/", "/admin/moderation/webhookmessage/",
                "/admin/moderation/webhookdelivery/",
                # The admin escapes "_" in primary keys ("msg_22..." would read as '"').
                f"/admin/moderation/webhookmessage/{admin_quote(message.pk)}/change/"):
        page = operator.get(url)
        assert page.status_code == 200, url
        assert failed_once.secret not in page.content.decode()
    assert "503" in operator.get("/admin/moderation/webhookdelivery/").content.decode()
    assert message.pk in operator.get("/admin/moderation/webhookmessage/").content.decode()


def test_the_redeliver_action_sends_the_message_again(operator, failed_once, receiver):
    first = WebhookDelivery.objects.get()
    response = operator.post("/admin/moderation/webhookdelivery/", {
        "action": "redeliver", "_selected_action": [first.pk]}, follow=True)
    assert "Queued 1" in response.content.decode()
    again = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert again.manual and again.success
    assert [r.webhook_id for r in receiver.received] == [first.message_id] * 2


def test_re_enabling_an_endpoint_forgets_its_failures(operator, failed_once):
    webhooks.disable_endpoint(failed_once, "The endpoint answered 410 Gone.")
    operator.post("/admin/moderation/webhookendpoint/", {"action": "enable", "_selected_action": [failed_once.pk]})
    failed_once.refresh_from_db()
    assert failed_once.is_active and failed_once.failing_since is None and failed_once.disabled_reason == ""
