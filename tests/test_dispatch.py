"""Dispatch to Hive: claims, retries with backoff, failures, the circuit, the sweep.

Hive is replaced at the HTTP level by `responses`; the database is real.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import responses
from django.db import connection, connections, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from moderation.models import AuditEvent, Project, Result, Status, Submission
from moderation.hive.normalise import normalise
from moderation.services import dispatch, intake, sweep
from moderation.services.results import Recorded, record_result
from tests.conftest import FIXTURES

HIVE = "https://hive.test"
SYNC = f"{HIVE}/api/v2/task/sync"
ASYNC = f"{HIVE}/api/v2/task/async"
IMAGE_RESULT = (FIXTURES / "hive" / "image.json").read_text()


@pytest.fixture(autouse=True)
def hive_url(settings, monkeypatch):
    settings.HIVE_API_URL = HIVE
    # Pumps end instead of sleeping through short backoffs: each test steps time itself.
    monkeypatch.setattr(dispatch, "PUMP_MAX_WAIT_SECONDS", 0)
    monkeypatch.setattr(dispatch, "PROBE_MAX_WAIT_SECONDS", 0)


@pytest.fixture
def hive():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def project(make_project, partner):
    project = make_project("pics", thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    partner.projects.add(project)
    return project


def submit(project, partner, **fields) -> Submission:
    fields.setdefault("url", "https://cdn.example.com/a.jpg")
    return Submission.objects.create(project=project, partner=partner, source="url", **fields)


def body_bytes(request) -> bytes:
    body = request.body
    if hasattr(body, "read"):
        return body.read()
    return body.encode() if isinstance(body, str) else bytes(body or b"")


def reload(obj):
    return type(obj).objects.get(pk=obj.pk)


def test_a_sync_result_completes_and_routes_the_submission(hive, project, partner):
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.COMPLETED
    assert submission.scores and submission.top_class
    assert submission.decision in {"approved", "pending", "rejected"}
    result = Result.objects.get(submission=submission)
    assert result.raw == IMAGE_RESULT  # verbatim
    assert AuditEvent.objects.filter(submission=submission, action="decision.routed").exists()


def test_a_redelivered_task_is_a_no_op(hive, project, partner):
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    dispatch.dispatch_submission(submission.pk)
    assert len(hive.calls) == 1
    assert Result.objects.count() == 1


def test_a_503_is_retried_later_and_completes_after(hive, project, partner):
    hive.add(responses.POST, SYNC, json={"message": "upstream busy"}, status=503)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.QUEUED
    assert submission.attempts == 1
    assert submission.next_attempt_at > timezone.now()
    assert "upstream busy" in submission.error
    assert reload(project).hive_paused_until is not None  # the circuit opened

    # Time passes: the backoff and the project's pause are over.
    Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
    Project.objects.filter(pk=project.pk).update(hive_paused_until=timezone.now())
    hive.replace(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    dispatch.pump(project.pk)
    submission = reload(submission)
    assert submission.status == Status.COMPLETED
    assert submission.error == ""
    assert reload(project).hive_consecutive_failures == 0


def test_a_403_fails_once_without_retrying(hive, project, partner):
    hive.add(responses.POST, SYNC, json={"return_code": 403, "message": "Forbidden: bad token"}, status=403)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.FAILED
    assert "API key" in submission.error and "bad token" in submission.error
    dispatch.pump(project.pk)
    sweep.sweep()
    assert len(hive.calls) == 1


def test_a_refusal_tells_the_partner_what_hive_said_once(hive, project, partner):
    hive.add(responses.POST, SYNC, json={"return_code": 400, "message": "url must be an http(s) URL "}, status=400)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    assert reload(submission).error == "Hive sync call: HTTP 400: url must be an http(s) URL"


def test_a_429_pauses_the_project_for_its_retry_after(hive, project, partner):
    hive.add(responses.POST, SYNC, json={"return_code": 429, "message": "Project has been rate limited"},
             status=429, headers={"Retry-After": "30"})
    first, second = submit(project, partner), submit(project, partner)
    dispatch.dispatch_submission(first.pk)
    paused = reload(project).hive_paused_until
    assert paused - timezone.now() > timedelta(seconds=25)
    # While paused, nobody calls Hive for this project.
    dispatch.dispatch_submission(second.pk)
    dispatch.pump(project.pk)
    assert len(hive.calls) == 1
    assert reload(first).next_attempt_at >= paused - timedelta(seconds=1)


def test_the_pump_that_opened_the_circuit_probes_after_the_pause_and_refills_the_slots(
        hive, project, partner, monkeypatch):
    monkeypatch.setattr(dispatch, "PROBE_MAX_WAIT_SECONDS", 5)
    monkeypatch.setattr(dispatch, "PUMP_MAX_WAIT_SECONDS", 5)
    monkeypatch.setattr(dispatch, "PROJECT_BACKOFF_BASE", 0.2)
    monkeypatch.setattr(dispatch, "PROBE_ROTATION_SECONDS", 0.2)
    refilled = []
    monkeypatch.setattr(dispatch, "enqueue_pump", refilled.append)
    hive.add(responses.POST, SYNC, json={"message": "busy"}, status=503)
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    first, second, third = (submit(project, partner) for _ in range(3))
    dispatch.dispatch_submission(first.pk)
    assert [reload(s).status for s in (first, second, third)] == [Status.COMPLETED] * 3
    # One 503; then the probe, another item (the failed one is due just after the pause); the rest.
    assert len(hive.calls) == 4
    assert AuditEvent.objects.filter(action="hive.resumed").count() == 1
    assert refilled == [project.pk, project.pk]  # the other slots are brought back


def test_a_call_that_started_before_a_pause_does_not_end_it(hive, project, partner):
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    in_flight = dispatch.claim(project.pk, submit(project, partner).pk).submission
    # Meanwhile another slot's call is answered 429 with a Retry-After: the circuit opens.
    assert dispatch._project_failed(reload(project), retry_after=30) is dispatch.Circuit.OPENED

    assert dispatch.call_hive(in_flight) is dispatch.Circuit.UNCHANGED  # Hive answers the earlier call
    assert reload(in_flight).status == Status.COMPLETED
    paused = reload(project)
    assert paused.hive_paused_until - timezone.now() > timedelta(seconds=25)  # Hive's 30 s still hold
    assert paused.hive_consecutive_failures == 1
    assert not AuditEvent.objects.filter(action="hive.resumed").exists()


@pytest.mark.parametrize("retry_after", ["inf", "1e308", "nan", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_an_absurd_retry_after_from_hive_still_schedules_a_retry_within_a_day(hive, project, partner, retry_after):
    hive.add(responses.POST, SYNC, json={"message": "slow down"}, status=429, headers={"Retry-After": retry_after})
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.QUEUED
    assert submission.next_attempt_at <= timezone.now() + timedelta(days=1, seconds=5)
    assert reload(project).hive_paused_until <= timezone.now() + timedelta(days=1, seconds=5)


def test_after_failures_only_one_probe_call_is_made(hive, project, partner):
    Project.objects.filter(pk=project.pk).update(hive_consecutive_failures=3)
    items = [submit(project, partner) for _ in range(3)]
    claimed = dispatch.claim(project.pk)
    assert claimed.submission is not None
    assert dispatch.claim(project.pk).submission is None  # half-open: one in flight at most
    assert len(items) == 3


def test_the_in_flight_limit_holds(project, partner):
    Project.objects.filter(pk=project.pk).update(inflight_limit=2)
    for _ in range(4):
        submit(project, partner)
    assert dispatch.claim(project.pk).submission is not None
    assert dispatch.claim(project.pk).submission is not None
    assert dispatch.claim(project.pk).submission is None
    assert Submission.objects.filter(status=Status.PROCESSING).count() == 2


def test_a_task_arriving_while_every_slot_is_busy_leaves_its_item_to_the_slot_pumps(hive, project, partner):
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    Project.objects.filter(pk=project.pk).update(inflight_limit=1)
    busy = dispatch.claim(project.pk, submit(project, partner).pk).submission
    waiting = submit(project, partner)
    dispatch.dispatch_submission(waiting.pk)
    assert reload(waiting).status == Status.QUEUED and len(hive.calls) == 0
    dispatch.pump(project.pk, busy)  # the slot's pump goes on to the waiting item
    assert reload(waiting).status == Status.COMPLETED and len(hive.calls) == 2


def test_items_are_claimed_oldest_first(project, partner):
    old = submit(project, partner)
    submit(project, partner)
    Submission.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert dispatch.claim(project.pk).submission.pk == old.pk


def test_it_gives_up_after_max_attempts(hive, project, partner, settings):
    settings.HIVE_MAX_ATTEMPTS = 2
    hive.add(responses.POST, SYNC, json={"message": "down"}, status=502)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
    Project.objects.filter(pk=project.pk).update(hive_paused_until=None, hive_consecutive_failures=0)
    dispatch.pump(project.pk)
    submission = reload(submission)
    assert submission.status == Status.FAILED
    assert "2 attempts" in submission.error


def test_a_corrupt_file_reported_by_hive_fails_permanently(hive, project, partner):
    hive.add(responses.POST, SYNC, body=(FIXTURES / "hive" / "task_error_corrupt.json").read_text(), status=200)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.FAILED
    assert submission.error_code == "hive_3300"
    assert reload(project).hive_paused_until is None  # the content's fault, not Hive's


def test_download_errors_are_retried_then_mirrored_when_the_project_allows(hive, project, partner, media_samples):
    Project.objects.filter(pk=project.pk).update(url_mirror="fallback")
    download_error = (FIXTURES / "hive" / "task_error_download.json").read_text()
    sent = []

    def answer(request):
        sent.append(b'name="media"' in body_bytes(request))
        return 200, {}, IMAGE_RESULT if sent[-1] else download_error

    hive.add_callback(responses.POST, SYNC, callback=answer)
    hive.add(responses.GET, "https://cdn.example.com/a.jpg", body=(media_samples / "sample.jpg").read_bytes(),
             content_type="image/jpeg")
    submission = submit(project, partner)
    for _ in range(dispatch.DOWNLOAD_RETRIES_BEFORE_MIRROR):
        Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
        dispatch.pump(project.pk)
    submission = reload(submission)
    assert sent == [False, False, True]  # two tries with the URL, then the bytes
    assert submission.status == Status.COMPLETED
    assert submission.media and submission.media_kind == "image"
    assert AuditEvent.objects.filter(submission=submission, action="media.mirrored").exists()


def test_a_project_that_never_mirrors_keeps_retrying_the_url(hive, project, partner):
    Project.objects.filter(pk=project.pk).update(url_mirror="never")
    hive.add(responses.POST, SYNC, body=(FIXTURES / "hive" / "task_error_download.json").read_text())
    submission = submit(project, partner, attempts=5)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.QUEUED and not submission.media
    assert submission.error_code == "hive_2101"


def test_a_project_that_always_mirrors_sends_bytes_first(hive, project, partner, media_samples):
    Project.objects.filter(pk=project.pk).update(url_mirror="always")
    hive.add(responses.GET, "https://cdn.example.com/a.jpg", body=(media_samples / "sample.jpg").read_bytes())
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    assert reload(submission).status == Status.COMPLETED
    assert b'name="media"' in body_bytes(hive.calls[-1].request)


def test_a_mirrored_url_that_is_not_media_fails_with_a_clear_error(hive, project, partner):
    Project.objects.filter(pk=project.pk).update(url_mirror="always")
    hive.add(responses.GET, "https://cdn.example.com/a.jpg", body=b"<html>login</html>", content_type="text/html")
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.FAILED
    assert "text/html" in submission.error
    assert not any(call.request.url == SYNC for call in hive.calls)


def test_an_async_call_waits_for_the_callback(hive, make_project, partner):
    project = make_project("later", delivery="async")
    hive.add(responses.POST, ASYNC, json={"task_id": "task-123"}, status=200)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.AWAITING_CALLBACK
    assert submission.hive_task_id == "task-123"
    assert b"callback_url" in body_bytes(hive.calls[0].request)


def test_the_sweep_takes_back_what_a_dead_worker_left(project, partner):
    submission = submit(project, partner)
    assert dispatch.claim(project.pk).submission.pk == submission.pk
    Submission.objects.filter(pk=submission.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    report = sweep.sweep()
    assert report.requeued == [str(submission.pk)]
    assert reload(submission).status == Status.QUEUED
    assert AuditEvent.objects.filter(submission=submission, action="dispatch.lease_expired").exists()


def test_a_dead_workers_slot_is_free_again_once_its_short_lease_runs_out(project, partner, settings, monkeypatch):
    # Nothing renews the lease of a worker killed mid-call: after HIVE_LEASE_SECONDS
    # (not django-q2's task timeout, minutes) the project may send its next item.
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    Project.objects.filter(pk=project.pk).update(inflight_limit=1)
    stranded, waiting = submit(project, partner), submit(project, partner)
    assert dispatch.claim(project.pk).submission.pk == stranded.pk
    start = timezone.now()
    assert dispatch.claim(project.pk).submission is None  # the slot is taken

    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=settings.HIVE_LEASE_SECONDS + 1))
    assert settings.HIVE_LEASE_SECONDS + 1 < settings.Q_CLUSTER["timeout"]
    assert dispatch.claim(project.pk).submission.pk == waiting.pk
    assert sweep.sweep().requeued == [str(stranded.pk)]
    assert reload(stranded).status == Status.QUEUED


@pytest.mark.django_db(transaction=True)  # the renewing thread has its own connection
def test_a_call_longer_than_its_lease_keeps_its_row_while_it_runs(hive, project, partner, settings, monkeypatch):
    # A live call is never handed to a second worker, however long it takes (an
    # upload of a long video): its lease is renewed while it runs.
    settings.HIVE_LEASE_SECONDS = 4  # renewed every second
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    Project.objects.filter(pk=project.pk).update(inflight_limit=1)
    submission, other = submit(project, partner), submit(project, partner)
    seen = {}

    def slow_hive(request):
        claimed_until = reload(submission).lease_until
        threading.Event().wait(settings.HIVE_LEASE_SECONDS * 1.5)
        seen["lease"] = (claimed_until, reload(submission).lease_until, timezone.now())
        seen["requeued"] = sweep.sweep().requeued
        seen["second claim"] = dispatch.claim(project.pk).submission
        return 200, {}, IMAGE_RESULT

    hive.add_callback(responses.POST, SYNC, callback=slow_hive)
    dispatch.call_hive(dispatch.claim(project.pk, submission.pk).submission)

    first_lease, lease_late_in_the_call, now = seen["lease"]
    assert first_lease < now < lease_late_in_the_call  # the first one ran out; it was renewed
    assert seen["requeued"] == [] and seen["second claim"] is None
    assert reload(submission).status == Status.COMPLETED and reload(submission).lease_until is None
    assert Result.objects.filter(submission=submission).count() == 1
    assert reload(other).status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_still_renewed_after_the_database_drops_the_renewing_connection(hive, project, partner,
                                                                                      settings):
    # A PostgreSQL restart during a long upload: the renewing thread connects afresh
    # instead of retrying on its dead connection until the lease runs out.
    if connection.vendor != "postgresql":
        pytest.skip("ends another session's connection with pg_terminate_backend, PostgreSQL's")
    settings.HIVE_LEASE_SECONDS = 4  # renewed every second
    submission = submit(project, partner)
    seen = {}

    def slow_hive(request):
        threading.Event().wait(1.5)  # renewed once: the thread has its connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            seen["terminated"] = cursor.fetchone()[0]
        cut_at = timezone.now()
        threading.Event().wait(settings.HIVE_LEASE_SECONDS * 1.25)
        seen["lease"] = (cut_at, reload(submission).lease_until)
        return 200, {}, IMAGE_RESULT

    hive.add_callback(responses.POST, SYNC, callback=slow_hive)
    dispatch.call_hive(dispatch.claim(project.pk, submission.pk).submission)

    cut_at, lease_later = seen["lease"]
    assert seen["terminated"] >= 1
    assert lease_later > cut_at + timedelta(seconds=settings.HIVE_LEASE_SECONDS)  # renewed after the cut
    assert reload(submission).status == Status.COMPLETED


def test_a_late_answer_does_not_undo_a_second_claim_of_the_same_row(hive, project, partner, monkeypatch):
    # The first call outlived its lease (its worker froze): the sweep took the row
    # back and another worker claimed it. When the first call's error comes in, it
    # must not send the second claim's row back to the queue.
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    submission = submit(project, partner)

    def meanwhile(request):
        Submission.objects.filter(pk=submission.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert sweep.sweep().requeued == [str(submission.pk)]
        assert dispatch.claim(project.pk).submission.pk == submission.pk  # the second claim
        return 503, {}, "busy"

    hive.add_callback(responses.POST, SYNC, callback=meanwhile)
    first = dispatch.claim(project.pk, submission.pk).submission
    dispatch.call_hive(first)

    row = reload(submission)
    assert (row.status, row.attempts) == (Status.PROCESSING, 2)  # still the second claim's
    assert row.lease_until is not None and row.next_attempt_at is None


def test_an_item_whose_worker_dies_every_time_is_failed_after_max_attempts(project, partner, settings,
                                                                           monkeypatch):
    settings.HIVE_MAX_ATTEMPTS = 3
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)  # this test plays the worker
    submission = submit(project, partner)
    for attempt in range(1, 4):
        assert dispatch.claim(project.pk).submission.pk == submission.pk
        Submission.objects.filter(pk=submission.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        report = sweep.sweep()
        if attempt < 3:
            assert report.requeued == [str(submission.pk)]
    assert report.failed == [str(submission.pk)] and report.requeued == []
    submission = reload(submission)
    assert submission.status == Status.FAILED and submission.attempts == 3
    assert submission.error_code == "worker_died" and "3 attempts" in submission.error
    assert dispatch.claim(project.pk).submission is None


def test_a_row_left_processing_without_a_lease_is_taken_back(project, partner, monkeypatch):
    monkeypatch.setattr(sweep, "enqueue_pump", lambda project_id: None)
    submission = submit(project, partner, status=Status.PROCESSING, lease_until=None)
    assert sweep.sweep().requeued == [str(submission.pk)]
    assert reload(submission).status == Status.QUEUED


def test_a_crash_in_the_portal_is_not_blamed_on_hive_and_ends_after_max_attempts(hive, project, partner, settings,
                                                                                  monkeypatch):
    settings.HIVE_MAX_ATTEMPTS = 2
    monkeypatch.setattr(dispatch, "HiveClient", lambda **kw: (_ for _ in ()).throw(UnicodeEncodeError(
        "utf-8", "\ud800", 0, 1, "surrogates not allowed")))
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    submission = reload(submission)
    assert submission.status == Status.QUEUED and submission.error_code == "internal_error"
    assert "internal error" in submission.error and "Hive said" not in submission.error
    assert "surrogates" not in submission.error  # the exception is for the log, not the partner
    Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
    dispatch.pump(project.pk)
    submission = reload(submission)
    assert submission.status == Status.FAILED and "gave up after 2 attempts" in submission.error
    assert reload(project).hive_paused_until is None  # our bug, not Hive's: the project is not paused


def test_the_sweep_flags_overdue_callbacks(make_project, partner):
    project = make_project("later", delivery="async", callback_deadline_minutes=10)
    submission = submit(project, partner, status=Status.AWAITING_CALLBACK, hive_task_id="t-1",
                        dispatched_at=timezone.now() - timedelta(minutes=11))
    on_time = submit(project, partner, status=Status.AWAITING_CALLBACK, hive_task_id="t-2",
                     dispatched_at=timezone.now() - timedelta(minutes=2))
    report = sweep.sweep()
    assert report.overdue == [str(submission.pk)]
    submission = reload(submission)
    assert submission.status == Status.AWAITING_CALLBACK
    assert "10 minutes" in submission.error and submission.callback_overdue_at
    assert reload(on_time).error == ""


def test_the_sweep_wakes_projects_with_due_work(project, partner, django_capture_on_commit_callbacks, monkeypatch):
    woken = []
    monkeypatch.setattr(sweep, "enqueue_pump", woken.append)
    submit(project, partner)
    submit(project, partner, next_attempt_at=timezone.now() + timedelta(hours=1))
    report = sweep.sweep()
    assert woken == [project.pk]
    assert report.pumps == {"pics": 1}


@pytest.fixture
def orm_broker(settings, monkeypatch):
    """The embedded deployment's queue: django-q2's ORM broker in our database, tasks not run inline."""
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "default", "sync": False}


def queued_tasks() -> list[tuple[str, tuple]]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.all()]
    return [(task["func"], task["args"]) for task in tasks]


def test_on_the_orm_broker_a_submission_and_its_task_commit_together(orm_broker, project, partner):
    content = intake.SubmissionInput(url="https://cdn.example.com/a.jpg")
    with pytest.raises(RuntimeError), transaction.atomic():  # the request fails after the insert
        intake.create_submission(partner, project, content)
        raise RuntimeError
    assert not Submission.objects.exists() and queued_tasks() == []

    submission = intake.create_submission(partner, project, intake.SubmissionInput(url="https://cdn.example.com/a.jpg"))
    assert queued_tasks() == [("moderation.tasks.dispatch_submission", (str(submission.pk),))]


@pytest.mark.django_db(transaction=True)
def test_results_and_new_submissions_do_not_wait_for_a_claim_holding_the_project(project, partner, monkeypatch):
    """Claims lock the project row; recording a result and accepting a submission must
    not wait for that lock, or every completion and upload of a busy project queues
    behind its claims."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    submission = submit(project, partner, status=Status.PROCESSING)
    locked, release = threading.Event(), threading.Event()

    def hold_the_project_lock():
        with transaction.atomic():
            dispatch.locked_project(project.pk)  # as a claim holds it
            locked.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold_the_project_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # waiting for the lock would fail the call
        result = json.loads(IMAGE_RESULT)
        outcome = record_result(submission.pk, raw=IMAGE_RESULT, result=result, normalised=normalise(result),
                                source="sync")
        queued = []
        monkeypatch.setattr(dispatch, "enqueue", queued.append)  # Q_SYNC would claim, and rightly wait
        accepted = intake.create_submission(partner, project, intake.SubmissionInput(text_data="hello"))
    finally:
        release.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert outcome is Recorded.NEW
    assert reload(submission).status == Status.COMPLETED
    assert reload(accepted).status == Status.QUEUED and queued == [accepted.pk]


# --- A long outage ------------------------------------------------------------------------


def step_past_the_pause(project) -> None:
    """Time moves on: the pause is over and every waiting item is due."""
    Project.objects.filter(pk=project.pk).update(hive_paused_until=timezone.now() - timedelta(seconds=1))
    Submission.objects.filter(status=Status.QUEUED).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_an_outage_longer_than_the_attempts_fails_nothing(hive, project, partner, settings):
    settings.HIVE_MAX_ATTEMPTS = 3
    hive.add(responses.POST, SYNC, json={"message": "down"}, status=503)
    item = submit(project, partner)
    dispatch.dispatch_submission(item.pk)  # the call that finds Hive down: counted
    for _ in range(10):  # ten probes while Hive stays down: not this item's fault
        step_past_the_pause(project)
        dispatch.pump(project.pk)
    assert len(hive.calls) == 11
    item = reload(item)
    assert (item.status, item.attempts) == (Status.QUEUED, 1)
    assert reload(project).hive_consecutive_failures == 11

    hive.replace(responses.POST, SYNC, body=IMAGE_RESULT, status=200)  # Hive is back
    step_past_the_pause(project)
    dispatch.pump(project.pk)
    assert reload(item).status == Status.COMPLETED


def test_one_item_hive_always_fails_on_does_not_hold_the_others_back(hive, project, partner, settings):
    settings.HIVE_MAX_ATTEMPTS = 3
    poison = submit(project, partner, url="https://cdn.example.com/poison.jpg")
    fine = submit(project, partner, url="https://cdn.example.com/fine.jpg")

    def answer(request):
        if b"poison" in body_bytes(request):
            return 500, {}, json.dumps({"message": "internal error"})
        return 200, {}, IMAGE_RESULT

    hive.add_callback(responses.POST, SYNC, callback=answer)
    dispatch.dispatch_submission(poison.pk)  # opens the circuit
    step_past_the_pause(project)
    Submission.objects.filter(pk=poison.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=1))
    dispatch.pump(project.pk)  # the probe is the other item: Hive answers, the circuit closes
    assert reload(fine).status == Status.COMPLETED
    assert reload(project).hive_consecutive_failures == 0
    for _ in range(5):  # the poison item alone, each time with the circuit closed: counted
        step_past_the_pause(project)
        Project.objects.filter(pk=project.pk).update(hive_consecutive_failures=0)
        dispatch.pump(project.pk)
    poison = reload(poison)
    assert poison.status == Status.FAILED and poison.attempts == 3
    assert "Hive kept failing after 3 attempts" in poison.error


def test_an_item_waiting_through_a_day_long_outage_is_failed_saying_so(hive, project, partner, settings):
    hive.add(responses.POST, SYNC, json={"message": "down"}, status=503)
    item = submit(project, partner)
    Submission.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(hours=25))
    Project.objects.filter(pk=project.pk).update(hive_consecutive_failures=50)  # down for a long time
    dispatch.dispatch_submission(item.pk)
    item = reload(item)
    assert item.status == Status.FAILED
    assert item.error.startswith("Hive could not take it for 24 hours: ")


@pytest.mark.django_db(transaction=True)  # record_result's block is the outermost, as in a worker
def test_a_result_the_unique_constraint_refuses_is_a_duplicate_and_leaves_the_row_as_it_was(
        hive, project, partner, monkeypatch):
    """The lock and the fingerprint check normally catch a copy first; this one
    slips past them (as a concurrent writer could), and the database refuses it."""
    hive.add(responses.POST, SYNC, body=IMAGE_RESULT, status=200)
    submission = submit(project, partner)
    dispatch.dispatch_submission(submission.pk)
    before = reload(submission)

    class Blind:
        """The results manager as a racing writer would see it: empty."""

        def __get__(self, instance, owner):
            return Result.objects.none()

    monkeypatch.setattr(Submission, "results", Blind())
    result = json.loads(IMAGE_RESULT)
    outcome = record_result(submission.pk, raw=IMAGE_RESULT, result=result, normalised=normalise(result),
                            source="sync")
    # Called inside a caller's transaction, it leaves that transaction usable.
    with transaction.atomic():
        nested = record_result(submission.pk, raw=IMAGE_RESULT, result=result, normalised=normalise(result),
                               source="sync")
        still_there = Submission.objects.filter(pk=submission.pk).exists()
    monkeypatch.undo()

    assert outcome is nested is Recorded.DUPLICATE and still_there
    assert Result.objects.filter(submission=submission).count() == 1
    after = reload(submission)
    assert (after.status, after.decision, after.completed_at) == (before.status, before.decision, before.completed_at)
