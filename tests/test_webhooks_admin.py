"""Operators manage webhook endpoints and read the delivery log in the admin."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.auth.models import Permission, User
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest
from django.test import Client

from moderation.models import AuditEvent, Status, Submission, WebhookDelivery, WebhookEndpoint, WebhookMessage
from moderation.services import notify, webhooks
from tests.test_admin_partners import hidden_fields
from tests.webhook_receiver import Reply

ADD = "/admin/moderation/webhookendpoint/add/"
LIST = "/admin/moderation/webhookendpoint/"


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


def messages_cookie(client) -> str:
    """The messages cookie's text: signed, not encrypted, so anyone holding it can read it."""
    cookie = client.cookies.get("messages")
    stored = CookieStorage(HttpRequest())._decode(cookie.value) if cookie is not None and cookie.value else None
    return " ".join(message.message for message in stored or [])


def test_adding_an_endpoint_shows_its_secret_once_on_a_page_not_in_a_cookie(operator, partner, receiver):
    form = {**hidden_fields(operator.get(ADD).content.decode()), "partner": partner.pk, "url": receiver.url,
            "events": ["submission.completed"], "is_active": "on", "disabled_reason": ""}
    response = operator.post(ADD, form)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_")
    assert response.status_code == 200 and endpoint.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert endpoint.secret not in messages_cookie(operator)

    page = operator.get(f"{LIST}{endpoint.pk}/change/").content.decode()
    assert endpoint.secret not in page
    assert "Hidden" in page


def test_reloading_the_new_endpoint_page_adds_no_second_endpoint_and_says_why(operator, partner, receiver):
    form = {**hidden_fields(operator.get(ADD).content.decode()), "partner": partner.pk, "url": receiver.url,
            "events": ["submission.completed"], "is_active": "on", "disabled_reason": ""}
    secret = WebhookEndpoint.objects.get(pk=operator.post(ADD, form).context["object"].pk).secret
    reloaded = operator.post(ADD, form, follow=True)  # the browser re-posts the same form
    page = reloaded.content.decode()
    assert WebhookEndpoint.objects.count() == 1 and WebhookEndpoint.objects.get().secret == secret
    assert "This form was already used" in page and "Rotate its secret" in page
    assert "whsec_" not in page


def test_the_admin_refuses_a_private_url_when_not_allowed(operator, partner, settings):
    settings.ALLOW_PRIVATE_URLS = False
    response = operator.post("/admin/moderation/webhookendpoint/add/", {
        "partner": partner.pk, "url": "http://10.0.0.1/hook", "events": ["submission.completed"],
    })
    assert response.status_code == 200
    assert "private" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_rotating_a_secret_shows_the_new_one_once_and_a_reload_rotates_nothing(operator, failed_once):
    old = failed_once.secret
    to_form = operator.post(LIST, {"action": "rotate_secrets", "_selected_action": [failed_once.pk]})
    assert to_form.status_code == 302
    url = to_form["Location"]
    form = hidden_fields(operator.get(url).content.decode())
    failed_once.refresh_from_db()
    assert failed_once.secret == old  # drawing the form changes nothing
    shown = operator.post(url, form)
    failed_once.refresh_from_db()
    new = failed_once.secret
    assert new != old and new in shown.content.decode()
    assert new not in messages_cookie(operator)

    reloaded = operator.post(url, form, follow=True)  # the browser re-posts the same form
    page = reloaded.content.decode()
    assert "This form was already used" in page and "whsec_" not in page
    failed_once.refresh_from_db()
    assert webhooks.signing_secrets(failed_once) == (new, old)  # rotated once: the old secret still signs
    assert AuditEvent.objects.filter(action="webhook.secret_rotated").count() == 1


def test_rotating_needs_one_endpoint_and_change_permission(operator, failed_once):
    other = WebhookEndpoint.objects.create(partner=failed_once.partner, url=failed_once.url, events=["x"],
                                           secret=webhooks.new_secret())
    response = operator.post(LIST, {"action": "rotate_secrets", "_selected_action": [failed_once.pk, other.pk]},
                             follow=True)
    assert "Select exactly one endpoint" in response.content.decode()
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_webhookendpoint"))
    client = Client()
    client.force_login(viewer)
    url = f"{LIST}{failed_once.pk}/rotate-secret/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"current": "x"}).status_code == 403
    assert not AuditEvent.objects.filter(action="webhook.secret_rotated").exists()


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
