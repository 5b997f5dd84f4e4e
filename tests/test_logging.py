"""Logs as an operator reads them: JSON lines from the configured handler, the
submission's ids on every line about it (even from code that does not know
the submission), and no secret on any line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import requests
from django.conf import settings as django_settings

from hiveportal.logging import ContextFilter, JsonFormatter, TextFormatter, log_context
from moderation.models import Delivery, Status, Submission
from moderation.services import callbacks, dispatch
from tests.conftest import FIXTURES


@pytest.fixture
def log_output():
    """What the configured console handler (settings.LOGGING) writes."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture
def text_project(make_project, partner, settings, simulator):
    settings.HIVE_API_URL = simulator
    project = make_project("words", endpoint_type="text", hive_api_key="sim-text-0123456789-secret")
    partner.projects.add(project)
    return project


def test_every_line_is_a_json_object_with_level_logger_and_message(log_output):
    logging.getLogger("moderation.pipeline").warning("sweep took back %d submissions", 3)
    [line] = lines(log_output)
    assert line["level"] == "WARNING"
    assert line["logger"] == "moderation.pipeline"
    assert line["message"] == "sweep took back 3 submissions"
    assert "time" in line and "process" in line


def test_a_hive_error_logged_by_the_client_names_the_submission_and_project(log_output, text_project, partner,
                                                                           simulator):
    requests.post(f"{simulator}/control", json={"reset": True, "fail_next": 1, "error_status": 503}, timeout=5)
    submission = Submission.objects.create(project=text_project, partner=partner, source="text_data",
                                           text_data="hello there", media_kind="text")

    dispatch.dispatch_submission(submission.pk)

    by_message = {line["message"]: line for line in lines(log_output)}
    client_line = next(line for message, line in by_message.items() if "HTTP 503" in message)
    assert client_line["logger"] == "moderation.hive"  # the client knows nothing of submissions
    assert client_line["submission_id"] == str(submission.pk)
    assert client_line["project"] == "words"
    assert "hive_task_id" in client_line
    retry_line = by_message["hive call failed, retrying"]
    assert retry_line["submission_id"] == str(submission.pk) and retry_line["project"] == "words"


def test_a_completed_submission_logs_its_hive_task_id(log_output, text_project, partner, simulator):
    requests.post(f"{simulator}/control", json={"reset": True}, timeout=5)
    submission = Submission.objects.create(project=text_project, partner=partner, source="text_data",
                                           text_data="have a nice day", media_kind="text")

    dispatch.dispatch_submission(submission.pk)

    submission.refresh_from_db()
    done = next(line for line in lines(log_output) if line["message"] == "submission completed")
    assert (done["submission_id"], done["project"], done["hive_task_id"]) == (
        str(submission.pk), "words", submission.hive_task_id)
    assert submission.hive_task_id


def test_lines_written_while_processing_a_callback_carry_the_hive_task_id(log_output, make_project, partner):
    project = make_project("async-pics", delivery=Delivery.ASYNC)
    body = json.loads((FIXTURES / "hive" / "image.json").read_text())
    submission = Submission.objects.create(project=project, partner=partner, source="url",
                                           url="https://cdn.example.com/a.jpg", status=Status.AWAITING_CALLBACK,
                                           hive_task_id=body["id"])
    body["metadata"] = str(submission.pk)
    body["status"][0]["response"]["output"].append("not an object")  # the normaliser warns about it
    receipt = callbacks.receive(str(submission.pk), callbacks.token_for(submission.pk), json.dumps(body).encode(),
                                {"REMOTE_ADDR": "127.0.0.1"})

    callbacks.process(receipt.pk)

    warning = next(line for line in lines(log_output) if line["message"].startswith("Hive output element"))
    assert warning["logger"].startswith("moderation.hive")  # the normaliser knows nothing of submissions
    assert (warning["submission_id"], warning["project"], warning["hive_task_id"]) == (
        str(submission.pk), "async-pics", body["id"])


def test_secrets_never_reach_the_logs(log_output, client, api_key, text_project, partner, settings, monkeypatch):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    hive_key = text_project.hive_api_key
    webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    submission = Submission.objects.create(project=text_project, partner=partner, source="text_data",
                                           text_data="hello", media_kind="text")
    good_token = callbacks.token_for(submission.pk)

    # Django logs the path of a refused callback: the URL's token with it.
    client.post(f"/hive/callback/{submission.pk}/{good_token}/", data=b'{"metadata": "someone else"}',
                content_type="application/json")
    client.post(f"/hive/callback/{submission.pk}/{'ab' * 32}/", data=b"{}", content_type="application/json")
    # A careless debug line in the Hive client, during a real call.
    session = dispatch._session()
    real_post = session.post

    def chatty_post(url, **kwargs):
        logging.getLogger("moderation.hive").warning("POST %s headers=%r key=%s", url, kwargs["headers"], hive_key)
        return real_post(url, **kwargs)

    monkeypatch.setattr(session, "post", chatty_post)
    dispatch.dispatch_submission(submission.pk)
    # Whatever else a developer might log.
    log = logging.getLogger("moderation.pipeline")
    log.info("partner request with Authorization: Token %s", api_key)
    log.info("webhook endpoint created", extra={"secret": webhook_secret})
    log.warning("settings: %s %s", django_settings.SECRET_KEY, settings.METRICS_TOKEN)
    try:
        raise RuntimeError(f"upstream said: bad key {api_key}")
    except RuntimeError:
        log.exception("crashed")

    output = log_output.getvalue()
    assert "[redacted]" in output and output.count("\n") >= 7
    public_prefix = "_".join(api_key.split("_")[:2])  # hp_<12 hex>
    secret_part_of_api_key = api_key.removeprefix(public_prefix + "_")
    for secret in (secret_part_of_api_key, hive_key, good_token, webhook_secret.removeprefix("whsec_"),
                   django_settings.SECRET_KEY, settings.METRICS_TOKEN):
        assert secret not in output, f"{secret[:8]}... leaked"
    assert public_prefix in output  # the key's public prefix still says which key it was


def test_the_text_format_is_redacted_too():
    formatter = TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "Authorization: Bearer abcdef0123456789xyz", (), None)
    record.submission_id = "s-1"
    assert formatter.format(record) == "INFO Authorization: [redacted] [submission_id=s-1]"


def test_a_secret_bound_to_the_context_is_scrubbed_only_inside_it():
    formatter = JsonFormatter()
    handler_filter = ContextFilter()

    def emit(message: str) -> dict:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, message, (), None)
        handler_filter.filter(record)
        return json.loads(formatter.format(record))

    with log_context(submission_id="s-2", project="p", secrets=["plain-hive-key"]):
        inside = emit("using plain-hive-key")
    outside = emit("plain-hive-key is just text here")
    assert inside["message"] == "using [redacted]" and inside["submission_id"] == "s-2"
    assert outside["message"] == "plain-hive-key is just text here" and "submission_id" not in outside
