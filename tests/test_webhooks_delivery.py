"""Partner webhooks end to end: events become signed messages, delivered to a
real HTTP receiver on loopback that checks them with the `standardwebhooks`
verifier, retried on a schedule, logged, and stopped when the partner says so.

The database and the HTTP are real; only time is stepped by hand (a message is
made due by moving its `next_attempt_at`), and for the private-address tests the
one DNS resolver in safe_http is patched.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from moderation.hive.normalise import normalise
from moderation.models import (
    AuditEvent,
    MessageStatus,
    ResultSource,
    Status,
    Submission,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
from moderation.models.webhook import WebhookEvent
from moderation.services import dispatch, notify, safe_http, webhooks
from moderation.services.results import record_result
from tests.conftest import FIXTURES, broker_down
from tests.hostile_net import PUBLIC_ADDRESS, drip_server, rebinding_dns, refuse_beyond_loopback  # noqa: F401
from tests.webhook_receiver import Receiver, Reply

# --- Setup -------------------------------------------------------------------------------


@pytest.fixture
def project(make_project, partner):
    project = make_project("pics", thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    partner.projects.add(project)
    return project


@pytest.fixture
def submission(project, partner) -> Submission:
    return Submission.objects.create(project=project, partner=partner, source="url", external_id="ext-1",
                                     url="https://cdn.example.com/a.jpg", status=Status.PROCESSING)


def endpoint_for(receiver: Receiver, partner, events=tuple(notify.EVENTS), path: str = "") -> WebhookEndpoint:
    endpoint = webhooks.create_endpoint(partner, receiver.url + path, list(events))
    receiver.secrets.append(endpoint.secret)
    return endpoint


def complete(submission: Submission, capture) -> None:
    """Hive's result arrives: the real pipeline function, its on-commit signal run."""
    raw = (FIXTURES / "hive" / "image.json").read_text()
    result = json.loads(raw)
    with capture(execute=True):
        record_result(submission.pk, raw=raw, result=result, normalised=normalise(result),
                      source=ResultSource.SYNC)


def message_at(endpoint, **fields) -> WebhookMessage:
    """A pending message for `endpoint`, due now unless told otherwise."""
    n = WebhookMessage.objects.count()
    event = WebhookEvent.objects.create(id=f"evt_test{n}", event_type=notify.COMPLETED, body=json.dumps(
        {"type": notify.COMPLETED, "timestamp": "2026-01-01T00:00:00Z", "data": {"n": n}}))
    defaults = dict(id=f"msg_test{n}", event=event, event_type=notify.COMPLETED, next_attempt_at=timezone.now())
    defaults.update(fields)
    return WebhookMessage.objects.create(endpoint=endpoint, **defaults)


def make_due(message: WebhookMessage) -> None:
    WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())


def reload(obj):
    return type(obj).objects.get(pk=obj.pk)


# --- Events become messages ---------------------------------------------------------------


def test_a_completed_submission_is_sent_to_each_subscribed_endpoint_as_the_api_shows_it(
        receiver, partner, submission, api, django_capture_on_commit_callbacks):
    first = endpoint_for(receiver, partner, [notify.COMPLETED], "/a")
    second = endpoint_for(receiver, partner, [notify.COMPLETED, notify.DECIDED], "/b")
    endpoint_for(receiver, partner, [notify.FAILED], "/c")
    switched_off = endpoint_for(receiver, partner, [notify.COMPLETED], "/d")
    WebhookEndpoint.objects.filter(pk=switched_off.pk).update(is_active=False)

    complete(submission, django_capture_on_commit_callbacks)

    assert sorted(r.path for r in receiver.received) == ["/hooks/a", "/hooks/b"]
    as_api = api.get(f"/api/v1/submissions/{submission.pk}/").json()
    for request, endpoint in zip(sorted(receiver.received, key=lambda r: r.path), (first, second)):
        payload = Webhook(endpoint.secret).verify(request.body, request.headers)
        assert payload["type"] == "submission.completed"
        assert payload["timestamp"].endswith("Z")
        assert payload["data"] == as_api
        assert payload["data"]["status"] == "completed"
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {MessageStatus.DELIVERED}
    assert WebhookDelivery.objects.filter(success=True, status_code=200).count() == 2


def test_a_broker_outage_at_the_event_records_it_and_the_scheduled_drain_sends_it(
        receiver, partner, submission, api, django_capture_on_commit_callbacks, monkeypatch):
    endpoint = endpoint_for(receiver, partner, [notify.COMPLETED])

    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "async_task", broker_down)
        complete(submission, django_capture_on_commit_callbacks)  # the pipeline is unharmed

    assert reload(submission).status == Status.COMPLETED and receiver.received == []
    event = WebhookEvent.objects.get()
    assert event.fanned_out_at is None and json.loads(event.body)["data"]["status"] == "completed"

    webhooks.scheduled_drain()  # the minute's schedule, once the broker is back

    [request] = receiver.received
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["data"] == api.get(f"/api/v1/submissions/{submission.pk}/").json()


def test_the_event_is_stored_with_the_completion_so_a_crash_before_the_commit_hooks_loses_nothing(
        receiver, partner, submission, api, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(receiver, partner, [notify.COMPLETED])
    raw = (FIXTURES / "hive" / "image.json").read_text()

    with django_capture_on_commit_callbacks(execute=False) as hooks:  # the worker dies at the commit
        record_result(submission.pk, raw=raw, result=json.loads(raw), normalised=normalise(json.loads(raw)),
                      source=ResultSource.SYNC)
    assert hooks, "the drain is woken on commit"

    assert reload(submission).status == Status.COMPLETED and receiver.received == []
    webhooks.scheduled_drain()  # the minute's schedule
    [request] = receiver.received
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == notify.COMPLETED
    assert payload["data"] == api.get(f"/api/v1/submissions/{submission.pk}/").json()


def test_a_change_rolled_back_leaves_no_event_to_send(receiver, partner, submission):
    from django.db import transaction

    endpoint_for(receiver, partner, [notify.FAILED])
    with pytest.raises(RuntimeError), transaction.atomic():
        dispatch.fail(submission, "Hive said: unsupported media", code="hive_3100")
        assert WebhookEvent.objects.count() == 1  # written in the failing transaction...
        raise RuntimeError("the transaction around the failure rolls back")

    assert reload(submission).status == Status.PROCESSING
    assert WebhookEvent.objects.count() == 0  # ...and gone with it
    webhooks.scheduled_drain()
    assert receiver.received == []


def test_a_partner_without_endpoints_costs_the_pipeline_no_event_and_no_task(
        partner, submission, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(webhooks, "async_task", lambda *args, **kwargs: queued.append(args))
    complete(submission, django_capture_on_commit_callbacks)
    assert reload(submission).status == Status.COMPLETED
    assert WebhookEvent.objects.count() == 0 and queued == []


def test_a_failure_and_a_decision_reach_the_endpoints_that_subscribe_to_them(
        receiver, partner, submission, django_capture_on_commit_callbacks):
    endpoint_for(receiver, partner, [notify.FAILED], "/failed")
    endpoint_for(receiver, partner, [notify.DECIDED], "/decided")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.fail(submission, "Hive said: unsupported media", code="hive_3100")
    with django_capture_on_commit_callbacks(execute=True):
        notify.submission_changed(submission.pk, notify.DECIDED)

    by_path = {r.path: r.payload() for r in receiver.received}
    assert set(by_path) == {"/hooks/failed", "/hooks/decided"}
    assert by_path["/hooks/failed"]["type"] == "submission.failed"
    assert by_path["/hooks/failed"]["data"]["error"] == "Hive said: unsupported media"
    assert by_path["/hooks/decided"]["type"] == "submission.decided"


def test_another_partners_endpoints_hear_nothing(receiver, partner, submission, django_capture_on_commit_callbacks):
    from moderation.models import Partner

    endpoint_for(receiver, Partner.objects.create(name="someone-else"))
    complete(submission, django_capture_on_commit_callbacks)
    assert receiver.received == []
    assert not WebhookMessage.objects.exists()


def test_a_fan_out_task_run_twice_creates_each_message_once(receiver, partner, submission):
    endpoint_for(receiver, partner, path="/a")
    endpoint_for(receiver, partner, path="/b")
    occurred = "2026-11-29T10:00:00Z"
    assert webhooks.fan_out(submission.pk, notify.DECIDED, occurred) == 2
    webhooks.fan_out(submission.pk, notify.DECIDED, occurred)
    assert WebhookMessage.objects.count() == 2
    assert WebhookEvent.objects.count() == 1  # the body is stored once for both endpoints
    assert len(receiver.received) == 2


# --- Signatures --------------------------------------------------------------------------------


def test_the_headers_follow_the_standard_webhooks_spec(receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    (request,) = receiver.received
    message = WebhookMessage.objects.get()
    assert request.webhook_id == message.id and message.id.startswith("msg_")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    assert request.body.decode() == message.body  # the stored body, byte for byte
    Webhook(endpoint.secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(request.body, request.headers)


def test_during_a_rotation_messages_carry_signatures_under_both_secrets(receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    old = endpoint.secret
    new = webhooks.rotate_secret(endpoint, overlap_hours=24)
    assert new != old and new.startswith("whsec_")

    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)


def test_after_the_overlap_only_the_new_secret_signs(receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    old = endpoint.secret
    new = webhooks.rotate_secret(endpoint, overlap_hours=24)
    receiver.secrets = [new]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now())

    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    (request,) = receiver.received
    assert " " not in request.headers["webhook-signature"]
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)


# --- Retries ------------------------------------------------------------------------------------


def test_a_503_then_a_200_makes_two_attempts_with_one_webhook_id(receiver, partner, submission):
    endpoint_for(receiver, partner)
    receiver.script = [Reply(503, body=b"busy")]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    message = WebhookMessage.objects.get()
    assert message.status == MessageStatus.PENDING
    assert 3 <= (message.next_attempt_at - timezone.now()).total_seconds() <= 7  # 5 s ± 20 %
    failed = WebhookDelivery.objects.get()
    assert (failed.status_code, failed.success, failed.response_excerpt) == (503, False, "busy")
    assert reload(message.endpoint).failing_since is not None

    assert webhooks.drain() == 0  # not due yet
    make_due(message)
    assert webhooks.drain() == 1

    assert [r.webhook_id for r in receiver.received] == [message.id, message.id]
    assert receiver.received[0].body == receiver.received[1].body
    message = reload(message)
    assert (message.status, message.attempts) == (MessageStatus.DELIVERED, 2)
    assert reload(message.endpoint).failing_since is None


def test_the_retry_schedule_grows_over_about_three_days_with_jitter():
    total = sum(step.total_seconds() for step in webhooks.RETRY_SCHEDULE)
    assert timedelta(days=2.5).total_seconds() < total < timedelta(days=3.5).total_seconds()
    delays = [webhooks.retry_delay(n) for n in range(1, len(webhooks.RETRY_SCHEDULE) + 1)]
    assert delays[0] < delays[2] < delays[4] < delays[-1]
    assert {round(webhooks.retry_delay(2), 3) for _ in range(20)} != {300.0}  # jittered
    assert all(240 <= webhooks.retry_delay(2) <= 360 for _ in range(50))
    assert webhooks.retry_delay(len(webhooks.RETRY_SCHEDULE) + 1) is None


def test_retry_after_from_the_endpoint_is_honoured(receiver, partner, submission):
    endpoint_for(receiver, partner)
    receiver.script = [Reply(429, headers={"Retry-After": "3600"})]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    wait = (WebhookMessage.objects.get().next_attempt_at - timezone.now()).total_seconds()
    assert 3500 < wait <= 3600


def test_a_slow_receiver_times_out_and_is_retried(receiver, partner, submission, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 1.0)
    endpoint_for(receiver, partner)
    receiver.script = [Reply(200, delay=3.0)]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    timed_out = WebhookDelivery.objects.get()
    assert not timed_out.success and timed_out.status_code is None
    assert "timed out" in timed_out.error
    message = WebhookMessage.objects.get()
    assert message.status == MessageStatus.PENDING and message.next_attempt_at > timezone.now()

    make_due(message)
    webhooks.drain()
    assert reload(message).status == MessageStatus.DELIVERED
    assert {r.webhook_id for r in receiver.received} == {message.id}


def test_an_endpoint_that_dribbles_its_headers_is_cut_off_at_the_deadline(partner, drip_server, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.5)
    message = message_at(webhooks.create_endpoint(partner, f"{drip_server}/headers", [notify.COMPLETED]))

    started = time.monotonic()
    webhooks.deliver(message.pk)
    assert time.monotonic() - started < 3  # the headers alone take 6 s

    attempt = WebhookDelivery.objects.get()
    assert (attempt.success, attempt.status_code) == (False, None)
    assert attempt.error == "No complete answer within 0.5 s (timed out)."
    message = reload(message)
    assert message.status == MessageStatus.PENDING and message.next_attempt_at > timezone.now()
    assert message.locked_until is None  # settled long before its lease ran out


def test_an_endpoint_that_answers_200_and_dribbles_its_body_is_delivered_at_the_deadline(
        partner, drip_server, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.5)
    message = message_at(webhooks.create_endpoint(partner, f"{drip_server}/body", [notify.COMPLETED]))

    started = time.monotonic()
    webhooks.deliver(message.pk)
    assert time.monotonic() - started < 3  # the body alone takes 6 s

    attempt = WebhookDelivery.objects.get()
    assert (attempt.success, attempt.status_code) == (True, 200)
    assert reload(message).status == MessageStatus.DELIVERED


def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver, partner, submission):
    endpoint_for(receiver, partner)
    receiver.script = [Reply(302, headers={"Location": receiver.url + "/elsewhere"})]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    assert [r.path for r in receiver.received] == ["/hooks"]
    attempt = WebhookDelivery.objects.get()
    assert (attempt.status_code, attempt.success) == (302, False)
    assert "redirects are not followed" in attempt.error
    assert WebhookMessage.objects.get().status == MessageStatus.PENDING


def test_410_gone_disables_the_endpoint_and_stops_every_attempt(receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    waiting = message_at(endpoint, next_attempt_at=timezone.now() + timedelta(hours=1))
    receiver.script = [Reply(410)]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    endpoint = reload(endpoint)
    assert not endpoint.is_active and "410" in endpoint.disabled_reason
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {MessageStatus.FAILED}
    assert AuditEvent.objects.filter(action="webhook.endpoint_disabled", partner=partner).exists()

    WebhookMessage.objects.update(next_attempt_at=timezone.now() - timedelta(days=1))
    webhooks.drain()
    webhooks.fan_out(submission.pk, notify.COMPLETED, "2026-11-29T11:00:00Z")
    assert len(receiver.received) == 1
    assert reload(waiting).status == MessageStatus.FAILED


def test_an_endpoint_failing_for_days_is_disabled_and_the_operator_told(
        receiver, partner, submission, settings, django_capture_on_commit_callbacks):
    settings.ADMINS = [("Ops", "ops@example.com")]
    endpoint = endpoint_for(receiver, partner)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=4))
    receiver.script = [Reply(500)]
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    endpoint = reload(endpoint)
    assert not endpoint.is_active
    assert "failed since" in endpoint.disabled_reason
    assert WebhookMessage.objects.get().status == MessageStatus.FAILED
    event = AuditEvent.objects.get(action="webhook.endpoint_disabled")
    assert event.data["url"] == endpoint.url
    assert mail.outbox and endpoint.url in mail.outbox[0].body


def test_an_endpoint_that_fails_now_and_then_stays_on(receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    receiver.script = [Reply(500)]
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    assert reload(endpoint).is_active and reload(endpoint).failing_since is not None


def test_the_last_scheduled_attempt_gives_up_and_disables_an_endpoint_that_never_answered(
        receiver, partner, submission):
    endpoint = endpoint_for(receiver, partner)
    message = message_at(endpoint, attempts=len(webhooks.RETRY_SCHEDULE))  # nine failures behind it
    receiver.script = [Reply(503)]
    webhooks.drain()
    message = reload(message)
    assert (message.status, message.attempts) == (MessageStatus.FAILED, len(webhooks.RETRY_SCHEDULE) + 1)
    assert not reload(endpoint).is_active


# --- Private addresses --------------------------------------------------------------------------


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(receiver, partner, submission, settings,
                                                                         monkeypatch):
    port = receiver.server.server_port
    endpoint = webhooks.create_endpoint(partner, f"http://hooks.partner.example:{port}/hooks", [notify.DECIDED])
    settings.ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["127.0.0.1"])  # DNS now points inside

    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    assert receiver.received == []
    attempt = WebhookDelivery.objects.get()
    assert not attempt.success and attempt.status_code is None
    assert attempt.error == "Refused: The URL's host resolves to a private or reserved address."
    assert reload(endpoint).failing_since is not None


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_posted_to(receiver, partner, submission, settings,
                                                                          monkeypatch):
    """DNS answers a public address, then 127.0.0.1: the POST may only go to the
    address that was checked, so the internal service never sees it (and the
    partner never sees its answer in the delivery log)."""
    port = receiver.server.server_port
    endpoint = webhooks.create_endpoint(partner, f"http://hooks.partner.example:{port}/hooks", [notify.DECIDED])
    receiver.secrets.append(endpoint.secret)
    settings.ALLOW_PRIVATE_URLS = False
    rebinding_dns(monkeypatch, "hooks.partner.example")
    dialled = refuse_beyond_loopback(monkeypatch)

    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")

    assert receiver.received == []
    assert [address for address in dialled if address[1] == port] == [(PUBLIC_ADDRESS, port)]
    attempt = WebhookDelivery.objects.get()
    assert not attempt.success and attempt.status_code is None and attempt.response_excerpt == ""
    assert attempt.error.startswith("Network error:")


def test_registration_refuses_a_name_resolving_to_a_private_address(partner, settings, monkeypatch):
    settings.ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(safe_http, "_resolve", lambda host, port: ["10.1.2.3"])
    with pytest.raises(webhooks.InvalidEndpoint) as refused:
        webhooks.create_endpoint(partner, "https://hooks.partner.example/in", [notify.COMPLETED])
    assert refused.value.field == "url"
    assert refused.value.message == "The URL's host resolves to a private or reserved address."
    assert not WebhookEndpoint.objects.exists()


# --- The drain and redelivery ------------------------------------------------------------------


def test_the_drain_sends_due_messages_only(receiver, partner):
    endpoint = endpoint_for(receiver, partner)
    due = message_at(endpoint)
    later = message_at(endpoint, next_attempt_at=timezone.now() + timedelta(minutes=5))
    delivered = message_at(endpoint, status=MessageStatus.DELIVERED)

    assert webhooks.drain() == 1
    assert [r.webhook_id for r in receiver.received] == [due.id]
    assert reload(later).status == MessageStatus.PENDING and reload(later).attempts == 0
    assert reload(delivered).attempts == 0


def test_the_drain_takes_over_a_message_whose_worker_died(receiver, partner):
    endpoint = endpoint_for(receiver, partner)
    held = message_at(endpoint, locked_until=timezone.now() + timedelta(seconds=30))
    assert webhooks.drain() == 0  # another worker is sending it
    WebhookMessage.objects.filter(pk=held.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert webhooks.drain() == 1
    assert reload(held).status == MessageStatus.DELIVERED


def test_a_message_being_sent_is_not_sent_again_at_the_same_time(receiver, partner):
    endpoint = endpoint_for(receiver, partner)
    message = message_at(endpoint, locked_until=timezone.now() + timedelta(seconds=30))
    assert webhooks.deliver(message.pk) is None
    assert receiver.received == []


def test_redelivery_is_a_new_manual_attempt_with_the_same_webhook_id(receiver, partner, submission):
    endpoint_for(receiver, partner)
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    first = WebhookDelivery.objects.get()

    webhooks.redeliver(first)

    assert len(receiver.received) == 2
    assert receiver.received[0].webhook_id == receiver.received[1].webhook_id == first.message_id
    again = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert again.manual and again.success
    assert reload(first.message).attempts == 1  # the schedule is untouched


def test_many_endpoints_are_served_concurrently(receiver, partner, submission, monkeypatch):
    monkeypatch.setattr(webhooks, "CONCURRENCY", 8)
    # Senders at nice 10 on a loaded CI machine would measure the machine, not the concurrency.
    monkeypatch.setattr(webhooks, "SEND_NICENESS", 0)
    for n in range(16):
        endpoint_for(receiver, partner, path=f"/{n}")
    receiver.script = [Reply(200, delay=0.25) for _ in range(16)]
    started = time.monotonic()
    assert webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z") == 16
    assert time.monotonic() - started < 3.0  # one at a time would take 4 s; eight at a time, 0.5 s
    assert WebhookMessage.objects.filter(status=MessageStatus.DELIVERED).count() == 16


def test_only_one_drain_runs_at_a_time_and_the_running_one_takes_new_work(receiver, partner, submission):
    from django.core.cache import cache

    first = endpoint_for(receiver, partner, path="/first")
    cache.add(webhooks._LOCK_KEY, "another worker", 60)  # a drain is running elsewhere
    try:
        assert webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z") == 1
        assert receiver.received == []  # left to the running drain
        endpoint_for(receiver, partner, path="/later")  # registered after the event
    finally:
        cache.delete(webhooks._LOCK_KEY)
    assert webhooks.drain() == 1
    assert [r.path for r in receiver.received] == ["/hooks/first"]
    assert WebhookMessage.objects.get().endpoint == first


def test_webhook_tasks_go_to_their_own_cluster_when_one_is_configured(partner, submission, settings, monkeypatch,
                                                                      receiver, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(webhooks, "async_task", lambda func, *args, **options: queued.append((func, options)))
    endpoint_for(receiver, partner)
    settings.WEBHOOK_Q_CLUSTER = "webhooks"
    with django_capture_on_commit_callbacks(execute=True):
        notify.submission_changed(submission.pk, notify.DECIDED)
    webhooks.scheduled_drain()  # the minute schedule, on the default cluster, hands over
    assert queued == [("moderation.tasks.drain_webhooks", {"cluster": "webhooks"})] * 2
