"""Hive's callbacks: authenticated by URL token, stored first, processed once."""

from __future__ import annotations

import json

import pytest

from moderation.models import AuditEvent, CallbackReceipt, Decision, Result, Status, Submission
from moderation.services.callbacks import REFUSED_BODY_KEPT, callback_url, token_for
from tests.conftest import FIXTURES, broker_down


def hive_result(name: str, **overrides) -> dict:
    body = json.loads((FIXTURES / "hive" / name).read_text())
    body.update(overrides)
    return body


@pytest.fixture
def awaiting(make_project, partner):
    project = make_project("later", delivery="async", thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    partner.projects.add(project)
    return Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/x.jpg",
                                     status=Status.AWAITING_CALLBACK, hive_task_id="task-1")


@pytest.fixture
def post_callback(client, django_capture_on_commit_callbacks):
    def post(submission, body, token=None):
        token = token or token_for(submission.pk)
        payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(f"/hive/callback/{submission.pk}/{token}/", payload, content_type="application/json")

    return post


def test_the_callback_url_carries_the_submission_and_its_token(awaiting, settings):
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    assert callback_url(awaiting.pk) == f"https://portal.example.com/hive/callback/{awaiting.pk}/{token_for(awaiting.pk)}/"


def test_an_authentic_callback_completes_the_submission(awaiting, post_callback):
    response = post_callback(awaiting, hive_result("image.json", id="task-1", metadata=str(awaiting.pk)))
    assert response.status_code == 200
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED
    assert awaiting.decision in {Decision.APPROVED, Decision.PENDING, Decision.REJECTED}
    receipt = CallbackReceipt.objects.get()
    assert receipt.authentic and not receipt.duplicate
    assert receipt.outcome == "processed"
    assert receipt.submission == awaiting


def test_a_forged_token_is_403_and_changes_nothing(awaiting, post_callback):
    response = post_callback(awaiting, hive_result("image.json", id="task-1"), token="0" * 64)
    assert response.status_code == 403
    awaiting.refresh_from_db()
    assert awaiting.status == Status.AWAITING_CALLBACK
    assert not Result.objects.exists()
    receipt = CallbackReceipt.objects.get()
    assert not receipt.authentic and receipt.outcome == "rejected"
    assert receipt.submission is None  # an unauthenticated body is never linked to a submission


def test_a_forged_callback_keeps_only_an_excerpt_of_a_big_body(awaiting, post_callback):
    body = json.dumps({"id": "task-1", "padding": "x" * 5_000_000})
    response = post_callback(awaiting, body, token="0" * 64)
    assert response.status_code == 403
    receipt = CallbackReceipt.objects.get()
    assert receipt.body == body[:REFUSED_BODY_KEPT]


def test_an_authentic_url_with_a_refused_body_keeps_only_an_excerpt(awaiting, post_callback):
    body = json.dumps({"metadata": "someone else", "padding": "x" * 100_000})
    assert post_callback(awaiting, body).status_code == 403
    assert CallbackReceipt.objects.get().body == body[:REFUSED_BODY_KEPT]


def test_an_authentic_callback_keeps_its_whole_body(awaiting, post_callback):
    body = json.dumps(hive_result("image.json", id="task-1", metadata=str(awaiting.pk), padding="x" * 100_000))
    assert post_callback(awaiting, body).status_code == 200
    assert CallbackReceipt.objects.get().body == body


def test_another_submissions_token_is_refused(awaiting, make_project, partner, post_callback):
    other = Submission.objects.create(project=awaiting.project, partner=partner, source="text_data",
                                      text_data="x", status=Status.AWAITING_CALLBACK)
    response = post_callback(awaiting, hive_result("image.json"), token=token_for(other.pk))
    assert response.status_code == 403
    assert not Result.objects.exists()


def test_a_callback_for_a_submission_deleted_meanwhile_is_logged_and_changes_nothing(awaiting, post_callback):
    body = hive_result("image.json", id="task-1", metadata=str(awaiting.pk))
    Submission.objects.filter(pk=awaiting.pk).delete()
    response = post_callback(awaiting, body)
    assert response.status_code == 200  # authentic (our token): Hive need not send it again
    receipt = CallbackReceipt.objects.get()
    assert receipt.outcome == "rejected" and receipt.outcome_detail == "no such submission"
    assert not receipt.authentic and receipt.submission_id is None
    assert not Result.objects.exists()


def test_the_worker_links_the_receipt_to_its_submission(awaiting, post_callback):
    post_callback(awaiting, hive_result("image.json", id="task-1", metadata=str(awaiting.pk)))
    assert CallbackReceipt.objects.get().submission_id == awaiting.pk


def test_a_body_naming_another_submission_is_refused(awaiting, post_callback):
    response = post_callback(awaiting, hive_result("image.json", metadata="11111111-2222-3333-4444-555555555555"))
    assert response.status_code == 403
    assert not Result.objects.exists()
    assert CallbackReceipt.objects.get().outcome_detail.startswith("metadata")


def test_a_body_that_is_not_json_is_refused(awaiting, post_callback):
    assert post_callback(awaiting, "not json").status_code == 403
    assert not Result.objects.exists()


def test_a_resent_callback_never_makes_a_second_result_or_decision(awaiting, post_callback):
    body = hive_result("image.json", id="task-1", metadata=str(awaiting.pk))
    post_callback(awaiting, body)
    post_callback(awaiting, {**body, "resent_on": "2025-11-21T10:00:00Z", "resent_by": "manual"})
    assert Result.objects.count() == 1
    assert AuditEvent.objects.filter(action="decision.routed").count() == 1
    receipts = list(CallbackReceipt.objects.order_by("received_at"))
    assert [r.duplicate for r in receipts] == [False, True]
    assert receipts[1].outcome == "duplicate"


def test_a_result_from_a_duplicate_hive_task_does_not_win(awaiting, post_callback):
    post_callback(awaiting, hive_result("image.json", id="task-1", metadata=str(awaiting.pk)))
    post_callback(awaiting, hive_result("video.json", id="task-2", metadata=str(awaiting.pk)))
    assert Result.objects.count() == 1
    assert CallbackReceipt.objects.filter(duplicate=True).count() == 1


def test_a_late_callback_after_the_submission_was_retried_still_completes_it(awaiting, post_callback):
    Submission.objects.filter(pk=awaiting.pk).update(status=Status.QUEUED, hive_task_id=None)
    post_callback(awaiting, hive_result("image.json", id="task-1", metadata=str(awaiting.pk)))
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED
    assert awaiting.hive_task_id == "task-1"


def test_hives_manual_review_is_kept_as_another_result(make_project, partner, post_callback):
    project = make_project("reviewed", delivery="async", review_mode="model_manual_review")
    submission = Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/x",
                                           status=Status.AWAITING_CALLBACK, hive_task_id="task-9")
    model = hive_result("image.json", id="task-9", metadata=str(submission.pk))
    post_callback(submission, model)
    post_callback(submission, {**model, "review": {"decision": "reject", "reviewer": "hive-mod-3"}})
    results = list(Result.objects.filter(submission=submission).order_by("received_at"))
    assert len(results) == 2
    assert results[1].review == {"decision": "reject", "reviewer": "hive-mod-3"}
    assert AuditEvent.objects.filter(action="decision.routed").count() == 1


def test_a_callback_reporting_a_failed_download_is_retried(awaiting, post_callback):
    post_callback(awaiting, hive_result("task_error_download.json", id="task-1", metadata=str(awaiting.pk)))
    awaiting.refresh_from_db()
    assert awaiting.status == Status.QUEUED
    assert awaiting.error_code == "hive_2101"
    assert CallbackReceipt.objects.get().outcome == "error"


def test_a_callback_reporting_a_corrupt_file_fails_the_submission(awaiting, post_callback):
    post_callback(awaiting, hive_result("task_error_corrupt.json", id="task-1", metadata=str(awaiting.pk)))
    awaiting.refresh_from_db()
    assert awaiting.status == Status.FAILED
    assert "3300" in awaiting.error_code


def test_a_deeply_nested_body_is_refused_not_a_500(awaiting, post_callback):
    response = post_callback(awaiting, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 403
    assert not Result.objects.exists()


def test_get_is_not_allowed(awaiting, client):
    assert client.get(f"/hive/callback/{awaiting.pk}/{token_for(awaiting.pk)}/").status_code == 405


def test_the_sweep_processes_a_callback_whose_task_died_with_its_worker(awaiting, client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import sweep

    # Stored and acknowledged, but the processing task was lost (no on_commit run here).
    response = client.post(f"/hive/callback/{awaiting.pk}/{token_for(awaiting.pk)}/",
                           json.dumps(hive_result("image.json", id="task-1", metadata=str(awaiting.pk))),
                           content_type="application/json")
    assert response.status_code == 200
    receipt = CallbackReceipt.objects.get()
    assert receipt.outcome == "pending"
    assert sweep.sweep().callbacks_requeued == 0  # not stalled yet
    CallbackReceipt.objects.filter(pk=receipt.pk).update(
        received_at=timezone.now() - timedelta(seconds=settings.CALLBACK_STALL_SECONDS + 1))
    assert sweep.sweep().callbacks_requeued == 1  # the task runs inline in the suite
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED
    assert CallbackReceipt.objects.get().outcome == "processed"
    assert sweep.sweep().callbacks_requeued == 0


def test_under_a_backlog_the_sweep_queues_a_waiting_callback_again_once_per_stall_period(
        awaiting, client, settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import sweep

    response = client.post(f"/hive/callback/{awaiting.pk}/{token_for(awaiting.pk)}/",
                           json.dumps(hive_result("image.json", id="task-1", metadata=str(awaiting.pk))),
                           content_type="application/json")
    assert response.status_code == 200
    receipt = CallbackReceipt.objects.get()
    settings.CALLBACK_STALL_SECONDS = 300
    queued: list[int] = []  # a long queue: the tasks wait, none runs
    monkeypatch.setattr(sweep, "async_task", lambda name, pk: queued.append(pk))
    start = timezone.now()
    stall = timedelta(seconds=settings.CALLBACK_STALL_SECONDS + 1)
    for minute in range(12):  # the sweep runs every minute
        monkeypatch.setattr(timezone, "now", lambda m=minute: start + stall + timedelta(minutes=m))
        sweep.sweep()
    # Once when it stalled (minute 0), once more a stall period (5 min) later: not twelve times.
    assert queued == [receipt.pk, receipt.pk]


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_still_acknowledges_a_stored_callback_and_the_sweep_processes_it(
        awaiting, client, settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import callbacks, sweep

    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "async_task", broker_down)
        response = client.post(f"/hive/callback/{awaiting.pk}/{token_for(awaiting.pk)}/",
                               json.dumps(hive_result("image.json", id="task-1", metadata=str(awaiting.pk))),
                               content_type="application/json")
    assert response.status_code == 200  # stored: Hive need not send it again
    assert CallbackReceipt.objects.get().outcome == "pending"
    CallbackReceipt.objects.update(received_at=timezone.now() - timedelta(seconds=settings.CALLBACK_STALL_SECONDS + 1))
    assert sweep.sweep().callbacks_requeued == 1  # the broker is back; the task runs inline in the suite
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED and CallbackReceipt.objects.get().outcome == "processed"


def test_a_second_delivery_of_a_receipt_being_processed_is_a_no_op(awaiting, monkeypatch):
    from moderation.services import callbacks

    receipt = CallbackReceipt.objects.create(
        submission_ref=str(awaiting.pk), authentic=True, hive_task_id="task-1",
        body=json.dumps(hive_result("image.json", id="task-1", metadata=str(awaiting.pk))))
    recorded = []
    record = callbacks.record_result

    def record_while_redelivered(*args, **kwargs):
        if not recorded:
            callbacks.process(receipt.pk)  # the redelivered task runs while the first is recording
        recorded.append(args)
        return record(*args, **kwargs)

    monkeypatch.setattr(callbacks, "record_result", record_while_redelivered)
    callbacks.process(receipt.pk)
    assert len(recorded) == 1
    receipt.refresh_from_db()
    assert receipt.outcome == "processed" and not receipt.duplicate  # it made the result
    assert Result.objects.count() == 1


def test_a_failed_task_whose_handling_dies_is_left_to_the_sweep(make_project, partner, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import callbacks, dispatch, sweep

    project = make_project("mirrors", delivery="async", url_mirror="fallback")
    submission = Submission.objects.create(project=project, partner=partner, source="url",
                                           url="https://a.example/x.jpg", status=Status.AWAITING_CALLBACK,
                                           hive_task_id="task-7", attempts=2)
    receipt = CallbackReceipt.objects.create(
        submission_ref=str(submission.pk), authentic=True, hive_task_id="task-7",
        body=json.dumps(hive_result("task_error_download.json", id="task-7", metadata=str(submission.pk))))

    def storage_down(submission):
        raise OSError("storage unavailable")

    monkeypatch.setattr(dispatch, "mirror_url", storage_down)  # the worker dies mid-way, in effect
    with pytest.raises(OSError):
        callbacks.process(receipt.pk)
    submission.refresh_from_db()
    assert submission.status == Status.PROCESSING and submission.lease_until is not None
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    later = submission.lease_until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert sweep.sweep().requeued == [str(submission.pk)]
    assert Submission.objects.get(pk=submission.pk).status == Status.QUEUED


def test_hives_review_of_the_winning_task_is_kept_when_a_retry_made_a_second_task(make_project, partner,
                                                                                   post_callback):
    project = make_project("reviewed", delivery="async", review_mode="model_manual_review")
    # The first async call's ack was lost; the retry's task (task-2) is the one on record.
    submission = Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/x",
                                           status=Status.AWAITING_CALLBACK, hive_task_id="task-2")
    first = hive_result("image.json", id="task-1", metadata=str(submission.pk))
    post_callback(submission, first)
    post_callback(submission, hive_result("image.json", id="task-2", metadata=str(submission.pk),
                                          resent_by="second task"))
    post_callback(submission, {**first, "review": {"decision": "reject", "reviewer": "hive-mod-3"}})
    results = list(Result.objects.filter(submission=submission).order_by("received_at", "id"))
    assert [r.hive_task_id for r in results] == ["task-1", "task-1"]
    assert results[1].review == {"decision": "reject", "reviewer": "hive-mod-3"}
    submission.refresh_from_db()
    assert submission.hive_task_id == "task-1"


def test_a_failure_from_an_earlier_task_leaves_the_current_one_waiting(awaiting, post_callback):
    # Waiting on task-1; a retry's predecessor, task-0, reports its failure late.
    post_callback(awaiting, hive_result("task_error_download.json", id="task-0", metadata=str(awaiting.pk)))
    awaiting.refresh_from_db()
    assert awaiting.status == Status.AWAITING_CALLBACK and awaiting.hive_task_id == "task-1"
    receipt = CallbackReceipt.objects.get()
    assert receipt.outcome == "error" and "earlier" in receipt.outcome_detail


def test_a_failure_that_overtakes_our_ack_is_handled_once_the_ack_is_stored(awaiting, post_callback, settings,
                                                                           monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from moderation.services import sweep

    Submission.objects.filter(pk=awaiting.pk).update(status=Status.PROCESSING, hive_task_id="")  # ack not stored
    post_callback(awaiting, hive_result("task_error_download.json", id="task-1", metadata=str(awaiting.pk)))
    receipt = CallbackReceipt.objects.get()
    assert receipt.outcome == "pending"
    Submission.objects.filter(pk=awaiting.pk).update(status=Status.AWAITING_CALLBACK, hive_task_id="task-1")
    later = timezone.now() + timedelta(seconds=settings.CALLBACK_STALL_SECONDS + 1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    assert sweep.sweep().callbacks_requeued == 1  # the task runs inline in the suite
    awaiting.refresh_from_db()
    assert awaiting.status == Status.QUEUED and awaiting.error_code == "hive_2101"
    assert CallbackReceipt.objects.get().outcome == "error"


def test_a_callback_url_issued_before_a_secret_key_rotation_still_works(awaiting, post_callback, settings):
    issued = token_for(awaiting.pk)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert token_for(awaiting.pk) != issued
    response = post_callback(awaiting, hive_result("image.json", id="task-1", metadata=str(awaiting.pk)), token=issued)
    assert response.status_code == 200
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED
    settings.SECRET_KEY_FALLBACKS = []
    assert post_callback(awaiting, hive_result("image.json", id="task-1"), token=issued).status_code == 403
