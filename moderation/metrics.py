"""Our Prometheus metrics, defined in one place (prometheus_client).

Events are counted where they happen, by decorators the pipeline wears:
`@hive_call` on `dispatch.call_hive`, `@callback_received` on
`callbacks.receive` (and `@callback_processing` on `callbacks.process`, for
the log context). Submission totals come from the model's post_save and the
pipeline's notification signal. States rather than events (queue depth per
project, the broker's backlog) are read from the database and the broker when
/metrics is scraped (`PipelineCollector`), so every web process reports the
same truth.

Across processes: with PROMETHEUS_MULTIPROC_DIR set (README "Production";
gunicorn.conf.py makes a private one otherwise), prometheus_client writes each
process's counters to that directory and /metrics sums them, so the web and
worker processes of one host are reported together. Request rates and
latencies come from django-prometheus's middleware.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable

from django.db.models import Count
from django.db.models.signals import post_save
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from hiveportal.logging import log_context
from moderation.services import notify

logger = logging.getLogger("moderation.metrics")

# Sync video can take minutes at Hive.
HIVE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HIVE_CALL_SECONDS = Histogram(
    "hiveportal_hive_call_seconds",
    "One dispatch attempt: the call to Hive and storing what it answered, by outcome "
    "(ok: result stored or task accepted; retry: transient error, queued again; failed: given up).",
    ["project", "outcome"],
    buckets=HIVE_BUCKETS,
)
CALLBACKS = Counter(
    "hiveportal_hive_callbacks",
    "POSTs to the Hive callback URL, by outcome (accepted: stored and queued; refused: 403).",
    ["outcome"],
)
SUBMISSIONS = Counter(
    "hiveportal_submissions",
    "Submissions reaching a status: received (accepted by the API), completed, failed.",
    ["status"],
)

# Statuses still in the pipeline: few rows, so counting them per scrape is cheap.
LIVE_STATUSES = ("queued", "processing", "awaiting_callback")


# --- Events ----------------------------------------------------------------------


def hive_call(func: Callable) -> Callable:
    """Wraps `call_hive(submission)`: times the attempt, labels it by the
    row's status afterwards, and binds the submission's ids (and the Hive key,
    to be scrubbed) to every log line written meanwhile."""

    @functools.wraps(func)
    def wrapper(submission, *args, **kwargs):
        project = submission.project
        started = time.monotonic()
        with log_context(submission_id=submission.pk, project=project.slug,
                         hive_task_id=submission.hive_task_id, secrets=[project.hive_api_key]):
            result = func(submission, *args, **kwargs)
        HIVE_CALL_SECONDS.labels(project.slug, _outcome(submission)).observe(time.monotonic() - started)
        return result

    return wrapper


def _outcome(submission) -> str:
    status = type(submission).objects.filter(pk=submission.pk).values_list("status", flat=True).first()
    return {"completed": "ok", "awaiting_callback": "ok", "queued": "retry", "failed": "failed"}.get(
        status or "", "other")


def callback_received(func: Callable) -> Callable:
    """Wraps `callbacks.receive`: counts accepted and refused callbacks."""

    @functools.wraps(func)
    def wrapper(submission_ref, *args, **kwargs):
        with log_context(submission_id=submission_ref):
            try:
                receipt = func(submission_ref, *args, **kwargs)
            except Exception:
                CALLBACKS.labels("refused").inc()
                raise
        CALLBACKS.labels("accepted").inc()
        return receipt

    return wrapper


def callback_processing(func: Callable) -> Callable:
    """Wraps `callbacks.process(receipt_id)`: a log context of its own, so the
    ids the processing binds once it has read the receipt (submission,
    project, Hive task) end with it and never reach the worker's next task."""

    @functools.wraps(func)
    def wrapper(receipt_id, *args, **kwargs):
        with log_context(callback_receipt_id=receipt_id):
            return func(receipt_id, *args, **kwargs)

    return wrapper


def _submission_saved(sender, instance, created: bool, **kwargs) -> None:
    if created:
        SUBMISSIONS.labels("received").inc()


def _submission_event(sender, submission_id, event: str, **kwargs) -> None:
    if event == notify.COMPLETED:
        SUBMISSIONS.labels("completed").inc()
    elif event == notify.FAILED:
        SUBMISSIONS.labels("failed").inc()


# Connected on import: the pipeline modules (dispatch, callbacks) import us.
post_save.connect(_submission_saved, sender="moderation.Submission", dispatch_uid="metrics-submission-received")
notify.submission_event.connect(_submission_event, dispatch_uid="metrics-submission-event")


# --- States, read at scrape time ----------------------------------------------------


class PipelineCollector:
    """Queue depth per project and status, and the task broker's backlog."""

    def collect(self):
        from moderation.models import Submission

        depth = GaugeMetricFamily("hiveportal_queue_depth",
                                  "Submissions still in the pipeline, by project and status.",
                                  labels=["project", "status"])
        try:
            rows = list(Submission.objects.filter(status__in=LIVE_STATUSES)
                        .values_list("project__slug", "status").annotate(n=Count("pk")).order_by())
        except Exception as error:  # noqa: BLE001 - /readyz reports the database; metrics still answer
            logger.warning("queue depth unavailable: %s", error.__class__.__name__)
            rows = None
        if rows is not None:
            for slug, status, count in rows:
                depth.add_metric([slug, status], count)
            yield depth
        backlog = _broker_backlog()
        if backlog is not None:
            yield GaugeMetricFamily("hiveportal_task_queue_length",
                                    "Tasks waiting in the django-q2 broker.", value=backlog)


def _broker_backlog() -> int | None:
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size()
    except Exception as error:  # noqa: BLE001 - /readyz reports the broker; metrics still answer
        logger.warning("broker backlog unavailable: %s", error.__class__.__name__)
        return None
