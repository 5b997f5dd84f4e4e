"""Partner webhooks: signed, retried, logged notifications (receivers of services.notify).

How a notification travels (docs/ARCHITECTURE.md "Partner webhooks"):
- An outbox: `record_in_transaction` receives `notify.submission_event_in_transaction`
  inside the transaction that completes, fails or decides the submission, and,
  when an active endpoint of the partner subscribes, renders the submission once,
  as the API shows it, into one WebhookEvent row there. The event commits with the
  change or not at all: no crash, and no broker outage, between the two can lose it.
  Partners with no endpoint cost the transaction one indexed query. On commit, one
  `drain_webhooks` task is enqueued; if the broker is down, the drain's minute
  schedule finds the event. The pipeline never waits for a partner's server.
- Event ids are derived from the event (`fan_out`, the task of earlier releases,
  records the same way), and the message id, the `webhook-id` header, from the
  event and the endpoint: nothing doubles when a task runs twice.
- `drain` does the rest, and at most one runs at a time (a cache lock), so the
  whole delivery lane is one worker however many events and endpoints there are:
  it creates each event's messages (one per subscribed endpoint) as it has room,
  sends up to CONCURRENCY requests at once from low-priority threads that only do
  HTTP, and records outcomes in batches from its own thread. A minute schedule
  runs it too. With settings.WEBHOOK_Q_CLUSTER the lane runs on a cluster of its
  own, so it takes no worker from submission processing at all.
- Every attempt is a WebhookDelivery. A failure is retried on RETRY_SCHEDULE
  (about three days, jittered, later if the endpoint sends `Retry-After`) by the
  drain: django-q2's redelivery is not a backoff. `410 Gone` disables the endpoint;
  so does failing for DISABLE_AFTER, and the operator is told.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import secrets as secrets_lib
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Iterable

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import F, Prefetch, Q
from django.dispatch import receiver
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task
from rest_framework.renderers import JSONRenderer
from standardwebhooks import Webhook

from moderation.api.serializers import submission_json
from moderation.hive.client import parse_retry_after
from moderation.models import (
    Actor,
    MessageStatus,
    Partner,
    Result,
    Submission,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
from moderation.models.webhook import WebhookEvent
from moderation.services import audit, notify, safe_http

logger = logging.getLogger("moderation.webhooks")

EVENTS = notify.EVENTS
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64
MAX_URL_LENGTH = 2048
DEFAULT_OVERLAP_HOURS = 24
MAX_OVERLAP_HOURS = 7 * 24

# HTTP. TIMEOUT_SECONDS bounds a whole attempt, from connecting to reading the
# excerpt, well inside the message's lease: an endpoint that dribbles its answer
# must not keep the message until another drain claims and sends it again.
CONNECT_TIMEOUT_SECONDS = 5.0
TIMEOUT_SECONDS = 15.0
EXCERPT_BYTES = 1000
USER_AGENT = "HivePortal-Webhooks/1.0"

# Delays after the 1st, 2nd, ... failed attempt: ten attempts over about three days.
RETRY_SCHEDULE = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=14), timedelta(hours=20), timedelta(hours=20),
)
JITTER = 0.2  # ±20 %, so an endpoint's backlog does not come back all at once
RETRY_AFTER_CAP_SECONDS = 24 * 3600.0
# An endpoint failing for this long (no success in between) is disabled.
DISABLE_AFTER = timedelta(days=3)

# Drain: requests in flight at once, and how long one drain task keeps going
# before handing over to a fresh one (well below django-q2's timeout).
CONCURRENCY = 32
CLAIM_BATCH = 16
RECORD_BATCH = 100
RECORD_SECONDS = 1.0
DRAIN_BUDGET_SECONDS = 50.0
# Sending threads run at this niceness (Linux: per thread) so that, on a busy
# machine, submission processing gets the CPU first and webhooks what is left.
SEND_NICENESS = 10
_LOCK_KEY = "webhooks:drain"


class InvalidEndpoint(ValueError):
    """A field of an endpoint is refused; `field` names it for the API's 400."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class EndpointDisabled(Exception):
    """Redelivery to an endpoint that is switched off: enable it first."""


# --- Endpoints -----------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets_lib.token_bytes(SECRET_BYTES)).decode()


def clean_url(url: object) -> str:
    """The URL if the portal may post to it; InvalidEndpoint("url", ...) if not.

    Checked again as every delivery connects: an address can change later."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidEndpoint("url", "An http(s) URL is required.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidEndpoint("url", f"At most {MAX_URL_LENGTH} characters.")
    try:
        safe_http.check_url(url)
    except safe_http.UnsafeURL as exc:
        raise InvalidEndpoint("url", str(exc)) from None
    except requests.RequestException as exc:
        raise InvalidEndpoint("url", str(exc)) from None
    return url


def clean_events(events: object) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidEndpoint("events", f"A non-empty list of event names: {', '.join(EVENTS)}.")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidEndpoint("events", f"Unknown event {unknown[0]!r}; choose from {', '.join(EVENTS)}.")
    return [e for e in EVENTS if e in events]  # de-duplicated, in a stable order


def create_endpoint(partner: Partner, url: object, events: object, *, active: bool = True,
                    actor: str = Actor.PARTNER, user=None) -> WebhookEndpoint:
    """A new endpoint; its `secret` is for the caller to show once."""
    url, events = clean_url(url), clean_events(events)
    limit = settings.WEBHOOK_ENDPOINTS_PER_PARTNER
    with transaction.atomic():
        # The partner's row is the lock: two requests at once cannot both take the last place.
        Partner.objects.select_for_update().filter(pk=partner.pk).exists()
        if WebhookEndpoint.objects.filter(partner=partner).count() >= limit:
            raise InvalidEndpoint("url", f"You already have {limit} webhook endpoints, the most allowed: "
                                         f"delete one, or send more events to one endpoint.")
        endpoint = WebhookEndpoint.objects.create(
            partner=partner, url=url, events=events, secret=new_secret(), is_active=active
        )
    audit.record("webhook.endpoint_created", actor=actor, partner=partner, user=user,
                 endpoint=str(endpoint.pk), url=endpoint.url, events=endpoint.events, active=active)
    return endpoint


def update_endpoint(endpoint: WebhookEndpoint, *, url: object = None, events: object = None,
                    active: bool | None = None, actor: str = Actor.PARTNER, user=None) -> WebhookEndpoint:
    """Change what is given. Switching an endpoint back on forgets why it was off."""
    fields = []
    if url is not None:
        endpoint.url = clean_url(url)
        fields.append("url")
    if events is not None:
        endpoint.events = clean_events(events)
        fields.append("events")
    if active is not None and active != endpoint.is_active:
        endpoint.is_active = active
        endpoint.disabled_reason = "" if active else "Switched off by its owner."
        endpoint.failing_since = None
        fields += ["is_active", "disabled_reason", "failing_since"]
    if fields:
        endpoint.save(update_fields=fields)
        audit.record("webhook.endpoint_changed", actor=actor, partner=endpoint.partner, user=user,
                     endpoint=str(endpoint.pk), fields=fields)
    return endpoint


def delete_endpoint(endpoint: WebhookEndpoint, *, actor: str = Actor.PARTNER, user=None) -> None:
    audit.record("webhook.endpoint_deleted", actor=actor, partner=endpoint.partner, user=user,
                 endpoint=str(endpoint.pk), url=endpoint.url)
    endpoint.delete()


def rotate_secret(endpoint: WebhookEndpoint, overlap_hours: float = DEFAULT_OVERLAP_HOURS, *,
                  actor: str = Actor.PARTNER, user=None) -> str:
    """Install a new secret and return it (to show once). For `overlap_hours`
    messages carry signatures under both, so the partner can switch at leisure."""
    overlap = timedelta(hours=max(0.0, min(float(overlap_hours), MAX_OVERLAP_HOURS)))
    endpoint.previous_secret = endpoint.secret if overlap else ""
    endpoint.previous_secret_expires_at = timezone.now() + overlap if overlap else None
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    audit.record("webhook.secret_rotated", actor=actor, partner=endpoint.partner, user=user,
                 endpoint=str(endpoint.pk), overlap_hours=overlap.total_seconds() / 3600)
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> tuple[str, ...]:
    """The current secret, then the previous one while its overlap lasts."""
    now = now or timezone.now()
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires and expires > now:
        return endpoint.secret, endpoint.previous_secret
    return (endpoint.secret,)


def disable_endpoint(endpoint: WebhookEndpoint, reason: str) -> bool:
    """Switch an endpoint off, give up its pending messages and tell the operator."""
    moved = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_reason=reason[:300]
    )
    if not moved:
        return False
    WebhookMessage.objects.filter(endpoint_id=endpoint.pk, status=MessageStatus.PENDING).update(
        status=MessageStatus.FAILED, next_attempt_at=None
    )
    partner = Partner.objects.filter(pk=endpoint.partner_id).first()
    audit.record("webhook.endpoint_disabled", actor=Actor.SYSTEM, partner=partner,
                 endpoint=str(endpoint.pk), url=endpoint.url, reason=reason)
    logger.warning("webhook endpoint disabled", extra={"endpoint": str(endpoint.pk), "url": endpoint.url,
                                                       "partner": str(partner), "reason": reason})
    transaction.on_commit(lambda: mail_admins(
        f"Webhook endpoint of {partner} disabled", f"{endpoint.url} ({endpoint.pk}) was disabled: {reason}",
        fail_silently=True))
    return True


# --- Events → messages ------------------------------------------------------------

@receiver(notify.submission_event_in_transaction, dispatch_uid="moderation.services.webhooks")
def record_in_transaction(sender, submission_id, event: str, occurred_at: datetime, **kwargs) -> None:
    """The outbox write, in the sender's transaction; the drain is woken on commit.
    An error here fails the change, as a failed write of the change itself would:
    the task that made it runs again."""
    if record_event(submission_id, event, _iso(occurred_at)):
        transaction.on_commit(_wake_drain)


def _wake_drain() -> None:
    try:
        _enqueue("drain_webhooks")
    except Exception:  # noqa: BLE001 - the event is stored; a broken broker must not fail the pipeline
        logger.exception("could not enqueue the webhook drain; its minute schedule will send the event")


def fan_out(submission_id, event: str, occurred_at: str) -> int:
    """Record the event, then drain, which creates one message per endpoint.
    Returns how many endpoints subscribe. (The `fan_out_webhooks` task of earlier
    releases, for tasks still queued at an upgrade; events are recorded by
    `record_in_transaction` now.)"""
    subscribed = record_event(submission_id, event, occurred_at)
    if subscribed:
        drain()
    return subscribed


def record_event(submission_id, event: str, occurred_at: str) -> int:
    """Record the event once, rendered as the API shows the submission, if any
    active endpoint of the partner subscribes to it. Returns how many do."""
    if event not in EVENTS:
        return 0
    # One indexed query first, through the submission: most partners have no endpoint.
    endpoints = WebhookEndpoint.objects.filter(partner__submissions=submission_id, is_active=True,
                                               created_at__lte=timezone.now())
    subscribed = _taking(endpoints, event)
    if subscribed:
        submission = _for_api().get(pk=submission_id)
        key = f"{submission.pk}|{event}|{occurred_at}"  # the same for a redelivered task: nothing doubles
        WebhookEvent.objects.get_or_create(id=_token("evt_", key), defaults=dict(
            submission=submission, event_type=event, body=render_body(submission, event, occurred_at)))
    return len(subscribed)


def _subscribed(partner_id: int, event: str, since: datetime) -> list:
    """Active endpoints of the partner, registered by `since`, that take `event`."""
    return _taking(WebhookEndpoint.objects.filter(partner_id=partner_id, is_active=True, created_at__lte=since),
                   event)


def _taking(endpoints, event: str) -> list:
    # Filtered here: JSON "list contains" is not portable to SQLite, and a partner has few endpoints.
    return [pk for pk, events in endpoints.values_list("pk", "events") if event in events]


def _fan_out_next() -> bool:
    """Create the messages of the oldest event not fanned out yet (one per
    subscribed endpoint, due now). False when there is none."""
    now = timezone.now()
    with transaction.atomic():
        event = (WebhookEvent.objects.filter(fanned_out_at__isnull=True).order_by("created_at")
                 .only("id", "submission_id", "event_type", "created_at")
                 .select_for_update(skip_locked=True).first())
        if event is None:
            return False
        partner_id = Submission.objects.filter(pk=event.submission_id).values_list("partner_id", flat=True).first()
        endpoint_ids = _subscribed(partner_id, event.event_type, event.created_at) if partner_id else []
        WebhookMessage.objects.bulk_create(
            [WebhookMessage(id=_token("msg_", f"{pk}|{event.pk}"), endpoint_id=pk, event_id=event.pk,
                            submission_id=event.submission_id, event_type=event.event_type, next_attempt_at=now)
             for pk in endpoint_ids],
            batch_size=1000, ignore_conflicts=True,
        )
        WebhookEvent.objects.filter(pk=event.pk).update(fanned_out_at=now)
    return True


def render_body(submission: Submission, event: str, occurred_at: str) -> str:
    """`{type, timestamp, data}`, `data` exactly as GET /api/v1/submissions/<id>/ shows it."""
    payload = {"type": event, "timestamp": occurred_at, "data": submission_json(submission)}
    return JSONRenderer().render(payload).decode("utf-8")


def _token(prefix: str, key: str) -> str:
    """`prefix` + 26 base32 characters derived from `key`: stable, unguessable enough."""
    return prefix + base64.b32encode(hashlib.sha256(key.encode()).digest()).decode().lower()[:26]


def _for_api():
    results = Prefetch("results", queryset=Result.objects.order_by("received_at", "id"))
    return Submission.objects.select_related("project").prefetch_related(results)


def _iso(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")


# --- Sending (threads: HTTP only, no database) ----------------------------------------

@dataclass(frozen=True)
class Attempt:
    """Everything needed to send one message once."""

    message_id: str
    endpoint_id: uuid.UUID
    url: str
    body: str
    secrets: tuple[str, ...]
    lease: datetime  # the claim's `locked_until`: only its holder settles the message
    attempts: int  # scheduled attempts so far, this one included
    endpoint_failing: bool


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    latency_ms: int | None = None
    excerpt: str = ""
    error: str = ""
    retry_after: float | None = None

    @property
    def success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(message_id: str, body: str, secrets: Iterable[str], timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers; one `v1,` signature per secret, space-separated."""
    moment = datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(Webhook(s).sign(message_id, moment, body) for s in secrets),
    }


def send(attempt: Attempt) -> Outcome:
    """POST once, within TIMEOUT_SECONDS; never raises. Redirects are not
    followed: a 3xx is a failure."""
    headers = sign(attempt.message_id, attempt.body, attempt.secrets, int(time.time()))
    headers.update({"content-type": "application/json", "user-agent": USER_AGENT})
    started = time.monotonic()
    deadline = safe_http.Deadline(TIMEOUT_SECONDS)
    try:
        with deadline, safe_http.safe_request(
                "POST", attempt.url, data=attempt.body.encode("utf-8"), headers=headers,
                timeout=(CONNECT_TIMEOUT_SECONDS, TIMEOUT_SECONDS), allow_redirects=False, deadline=deadline,
                stream=True) as response:
            if deadline.expired:  # the headers were cut off, which can look like their end
                return _timed_out(started)
            latency = _ms_since(started)
            excerpt = _excerpt(response)  # cut short at the deadline: the status is what counts
    except safe_http.UnsafeURL as exc:
        return Outcome(error=f"Refused: {exc}"[:500])
    except requests.RequestException as exc:
        if deadline.expired or isinstance(exc, requests.Timeout):
            return _timed_out(started)
        return Outcome(latency_ms=_ms_since(started), error=f"Network error: {_reason(exc)}"[:500])
    except Exception as exc:  # noqa: BLE001 - a bug must not lose the attempt's record
        logger.exception("webhook send crashed", extra={"message_id": attempt.message_id})
        return Outcome(error=f"Internal error: {exc}"[:500])
    return Outcome(status_code=response.status_code, latency_ms=latency, excerpt=excerpt,
                   error=_status_error(response), retry_after=parse_retry_after(response.headers.get("Retry-After")))


def _timed_out(started: float) -> Outcome:
    return Outcome(latency_ms=_ms_since(started), error=f"No complete answer within {TIMEOUT_SECONDS:g} s (timed out).")


def _status_error(response: requests.Response) -> str:
    if 200 <= response.status_code < 300:
        return ""
    if response.is_redirect:
        location = response.headers["Location"]
        return f"HTTP {response.status_code}: redirects are not followed (Location: {location})"[:500]
    return f"HTTP {response.status_code}"


def _reason(exc: requests.RequestException) -> str:
    """urllib3's innermost reason, without the connection's repr in front."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return str(reason or exc).rsplit("): ", 1)[-1]


def _excerpt(response: requests.Response) -> str:
    data = b""
    try:
        for chunk in response.iter_content(256):
            data += chunk
            if len(data) >= EXCERPT_BYTES:
                break
    except requests.RequestException:
        pass  # the status is what counts; keep what arrived
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def retry_delay(attempts: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait after `attempts` failed attempts, or None: give up."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[attempts - 1].total_seconds() * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay


# --- Claiming and recording (the caller's thread, in batches) ------------------------------

def lease_duration() -> timedelta:
    return timedelta(seconds=CONNECT_TIMEOUT_SECONDS + TIMEOUT_SECONDS + 30)


def _due(now: datetime):
    return WebhookMessage.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now),
        status=MessageStatus.PENDING, endpoint__is_active=True, next_attempt_at__lte=now,
    )


def _pending_work() -> bool:
    return (_due(timezone.now()).exists()
            or WebhookEvent.objects.filter(fanned_out_at__isnull=True).exists())


def _claim_due(limit: int) -> list[Attempt]:
    """Lease up to `limit` due messages, oldest due first. Other drains skip
    the locked rows on PostgreSQL; SQLite's IMMEDIATE transaction serialises."""
    now = timezone.now()
    lease = now + lease_duration()
    with transaction.atomic():
        due = (_due(now).order_by("next_attempt_at").select_related("endpoint", "event")
               .select_for_update(skip_locked=True, of=("self",)))
        messages = list(due[:limit])
        if messages:
            WebhookMessage.objects.filter(pk__in=[m.pk for m in messages]).update(
                locked_until=lease, attempts=F("attempts") + 1)
    return [_attempt(m, lease, now, m.attempts + 1) for m in messages]


def _claim_one(message_pk: str, manual: bool) -> Attempt | None:
    """Lease one message; None if another worker holds it (or, unless manual,
    it is no longer pending on an active endpoint)."""
    now = timezone.now()
    lease = now + lease_duration()
    rows = WebhookMessage.objects.filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now), pk=message_pk)
    if manual:
        claimed = rows.update(locked_until=lease)
    else:
        claimed = rows.filter(status=MessageStatus.PENDING, endpoint__is_active=True).update(
            locked_until=lease, attempts=F("attempts") + 1)
    message = (WebhookMessage.objects.select_related("endpoint", "event").filter(pk=message_pk).first()
               if claimed else None)
    return _attempt(message, lease, now, message.attempts) if message else None


def _attempt(message: WebhookMessage, lease: datetime, now: datetime, attempts: int) -> Attempt:
    endpoint = message.endpoint
    return Attempt(message_id=message.pk, endpoint_id=endpoint.pk, url=endpoint.url, body=message.event.body,
                   secrets=signing_secrets(endpoint, now), lease=lease, attempts=attempts,
                   endpoint_failing=endpoint.failing_since is not None)


def record(results: list[tuple[Attempt, Outcome]], *, manual: bool = False) -> list[WebhookDelivery]:
    """Log a batch of attempts and settle their messages, in one transaction
    (a commit per attempt would cost more than the HTTP). A message is settled
    only while the attempt still holds its lease."""
    now = timezone.now()
    with transaction.atomic():
        alive = set(WebhookMessage.objects.filter(pk__in=[a.message_id for a, _ in results])
                    .values_list("pk", flat=True))
        results = [(a, o) for a, o in results if a.message_id in alive]  # else deleted with its endpoint
        deliveries = WebhookDelivery.objects.bulk_create([
            WebhookDelivery(message_id=a.message_id, status_code=o.status_code, latency_ms=o.latency_ms,
                            response_excerpt=o.excerpt, error=o.error, success=o.success, manual=manual)
            for a, o in results
        ])
        _settle_delivered([a for a, o in results if o.success], now)
        for attempt, outcome in results:
            if not outcome.success:
                _settle_failed(attempt, outcome, now, manual)
    return deliveries


def _settle_delivered(attempts: list[Attempt], now: datetime) -> None:
    by_lease: dict[datetime, list[str]] = {}
    for attempt in attempts:
        by_lease.setdefault(attempt.lease, []).append(attempt.message_id)
    for lease, ids in by_lease.items():
        WebhookMessage.objects.filter(pk__in=ids, locked_until=lease).update(
            status=MessageStatus.DELIVERED, delivered_at=now, next_attempt_at=None, locked_until=None)
    recovered = {a.endpoint_id for a in attempts if a.endpoint_failing}
    if recovered:
        WebhookEndpoint.objects.filter(pk__in=recovered).update(failing_since=None)


def _settle_failed(attempt: Attempt, outcome: Outcome, now: datetime, manual: bool) -> None:
    """Schedule the next try (a redelivery leaves the schedule as it was), or give up."""
    mine = WebhookMessage.objects.filter(pk=attempt.message_id, locked_until=attempt.lease)
    delay = None if manual else retry_delay(attempt.attempts, outcome.retry_after)
    if delay is not None:
        mine.filter(status=MessageStatus.PENDING).update(next_attempt_at=now + timedelta(seconds=delay))
    elif not manual:
        mine.update(status=MessageStatus.FAILED, next_attempt_at=None)
    mine.update(locked_until=None)
    _endpoint_failed(attempt, outcome, now, gave_up=delay is None and not manual)


def _endpoint_failed(attempt: Attempt, outcome: Outcome, now: datetime, gave_up: bool) -> None:
    """Disable on 410 Gone, when nothing has succeeded for DISABLE_AFTER, or when
    a message was given up with no success since its first attempt."""
    WebhookEndpoint.objects.filter(pk=attempt.endpoint_id, failing_since__isnull=True).update(failing_since=now)
    endpoint = WebhookEndpoint.objects.filter(pk=attempt.endpoint_id, is_active=True).first()
    if endpoint is None or endpoint.failing_since is None:
        return
    since = endpoint.failing_since
    if outcome.status_code == 410:
        disable_endpoint(endpoint, f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC.")
    elif now - since >= DISABLE_AFTER:
        disable_endpoint(endpoint, f"Every delivery has failed since {since:%Y-%m-%d %H:%M} UTC.")
    elif gave_up:
        first = (WebhookDelivery.objects.filter(message_id=attempt.message_id).order_by("attempted_at")
                 .values_list("attempted_at", flat=True).first())
        if first is not None and since <= first:
            disable_endpoint(endpoint, f"Gave up on {attempt.message_id} after {attempt.attempts} attempts, "
                                       f"with no success since {since:%Y-%m-%d %H:%M} UTC.")


# --- Entry points for tasks, views and the admin -----------------------------------------

def deliver(message_pk: str, *, manual: bool = False) -> WebhookDelivery | None:
    """One attempt at one message, now. Manual attempts (redeliveries) do not
    count towards the schedule and may resend a delivered or failed message."""
    attempt = _claim_one(message_pk, manual)
    if attempt is None:
        return None
    deliveries = record([(attempt, send(attempt))], manual=manual)
    return deliveries[0] if deliveries else None


def redeliver(target: WebhookDelivery | WebhookMessage) -> str:
    """Queue one more attempt of the message, same `webhook-id`. Returns that id."""
    message = target.message if isinstance(target, WebhookDelivery) else target
    if not message.endpoint.is_active:
        raise EndpointDisabled("The endpoint is disabled; enable it before redelivering.")
    _enqueue("deliver_webhook", message.pk, True)
    return message.pk


def webhook_cluster() -> str | None:
    """The django-q2 cluster webhook tasks go to: settings.WEBHOOK_Q_CLUSTER, or
    None for the default one. A cluster of their own (an ALT_CLUSTERS entry run as
    `Q_CLUSTER_NAME=webhooks nice python manage.py qcluster`) means webhooks never
    take a worker, or CPU, from submission processing."""
    return getattr(settings, "WEBHOOK_Q_CLUSTER", "") or None


def _enqueue(task: str, *args) -> None:
    cluster = webhook_cluster()
    async_task(f"moderation.tasks.{task}", *args, **({"cluster": cluster} if cluster else {}))


def scheduled_drain() -> int:
    """The minute schedule's entry point: schedules run on the default cluster,
    so hand the drain over to the webhook cluster when there is one."""
    cluster = webhook_cluster()
    if cluster and Conf.CLUSTER_NAME != cluster:
        _enqueue("drain_webhooks")
        return 0
    return drain()


def drain(budget_seconds: float | None = None) -> int:
    """Send every due message, CONCURRENCY at a time, unless another drain is
    running. Returns how many attempts it made."""
    budget = DRAIN_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    token = uuid.uuid4().hex
    lock_seconds = int(budget + CONNECT_TIMEOUT_SECONDS + TIMEOUT_SECONDS + 30)
    sent = 0
    while cache.add(_LOCK_KEY, token, lock_seconds):
        try:
            count, finished = _pump(time.monotonic() + budget)
        finally:
            if cache.get(_LOCK_KEY) == token:
                cache.delete(_LOCK_KEY)
        sent += count
        if not finished:
            _enqueue("drain_webhooks")  # a fresh task carries on
            break
        if not _pending_work():
            break  # else: work arrived while we let go, and its drain found us busy
    return sent


def _pump(deadline: float) -> tuple[int, bool]:
    """(attempts made, whether it ran out of work before the deadline).

    Keeps up to CONCURRENCY requests in flight; claims when CLAIM_BATCH slots
    are free and records finished attempts RECORD_BATCH at a time (or after
    RECORD_SECONDS), so the database sees a few statements per batch."""
    sent = 0
    inflight: dict[Future, Attempt] = {}
    finished: list[tuple[Attempt, Outcome]] = []
    last_record = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="webhook", initializer=_lower_priority) as pool:
        while True:
            in_time = time.monotonic() < deadline
            room = CONCURRENCY - len(inflight)
            if in_time and (room >= CLAIM_BATCH or not inflight):
                claimed = _claim_due(room)
                while len(claimed) < room and _fan_out_next():  # ran short: the next event's messages
                    claimed += _claim_due(room - len(claimed))
                for attempt in claimed:
                    inflight[pool.submit(send, attempt)] = attempt
            if inflight:
                done, _ = wait(inflight, timeout=RECORD_SECONDS, return_when=FIRST_COMPLETED)
                finished += [(inflight.pop(future), future.result()) for future in done]
            if finished and (not inflight or len(finished) >= RECORD_BATCH
                             or time.monotonic() - last_record >= RECORD_SECONDS):
                record(finished)
                sent += len(finished)
                finished, last_record = [], time.monotonic()
            if not inflight:
                return sent, in_time or not _pending_work()


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SEND_NICENESS)
    except (AttributeError, OSError):
        pass  # not Linux, or not permitted: same priority as everything else
