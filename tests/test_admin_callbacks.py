"""The callback log: receipts as received, a replay that never records a
second result, and the submissions whose callback never came."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from moderation.models import AuditEvent, CallbackReceipt, Result, Status, Submission
from moderation.services import operations
from tests.conftest import FIXTURES

LOG = "/admin/moderation/callbackreceipt/"


@pytest.fixture
def project(make_project, partner):
    project = make_project("later", delivery="async", callback_deadline_minutes=30)
    partner.projects.add(project)
    return project


@pytest.fixture
def awaiting(project, partner):
    return Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/x.jpg",
                                     status=Status.AWAITING_CALLBACK, hive_task_id="task-1",
                                     dispatched_at=timezone.now() - timedelta(minutes=5))


def result_body(submission, **overrides) -> str:
    body = json.loads((FIXTURES / "hive" / "image.json").read_text())
    body.update(id="task-1", metadata=str(submission.pk), **overrides)
    return json.dumps(body)


def receipt(submission, outcome="error", authentic=True, **fields) -> CallbackReceipt:
    fields.setdefault("body", result_body(submission))
    return CallbackReceipt.objects.create(submission=submission, submission_ref=str(submission.pk),
                                          authentic=authentic, outcome=outcome, hive_task_id="task-1", **fields)


def test_the_log_never_reads_the_bodies_it_does_not_show(admin_client, awaiting):
    big = receipt(awaiting, outcome="processed", body=result_body(awaiting, padding="x" * 1_000_000))
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(LOG).status_code == 200
    receipt_selects = [q["sql"] for q in queries.captured_queries if 'FROM "moderation_callbackreceipt"' in q["sql"]]
    assert receipt_selects and not any('"moderation_callbackreceipt"."body"' in sql for sql in receipt_selects)
    page = admin_client.get(f"{LOG}{big.pk}/change/").content.decode()
    assert "x" * 1000 in page  # the receipt's own page still shows its body


def test_the_log_shows_each_receipt_with_what_became_of_it(admin_client, awaiting):
    receipt(awaiting, outcome="processed", outcome_detail="new")
    receipt(awaiting, outcome="duplicate", duplicate=True, outcome_detail="already recorded")
    CallbackReceipt.objects.create(submission_ref="not-a-submission", authentic=False, outcome="rejected",
                                   outcome_detail="bad token", body="{}")
    page = admin_client.get(LOG).content.decode()
    assert "Callback log" in page
    assert page.count(f"/admin/moderation/submission/{awaiting.pk}/change/") == 2  # matched
    assert "not-a-submi" in page and "bad token" in page and "already recorded" in page
    rejected = admin_client.get(LOG, {"outcome__exact": "rejected"}).content.decode()
    assert "bad token" in rejected and "already recorded" not in rejected
    mine = admin_client.get(LOG, {"project": awaiting.project_id}).content.decode()
    assert "bad token" not in mine and "already recorded" in mine
    duplicates = admin_client.get(LOG, {"duplicate__exact": "1"}).content.decode()
    assert "already recorded" in duplicates and ">new<" not in duplicates


def test_a_receipt_page_shows_the_raw_body_pretty_printed(admin_client, awaiting):
    stored = receipt(awaiting, outcome="processed")
    page = admin_client.get(f"{LOG}{stored.pk}/change/").content.decode()
    assert '<pre class="hp-json">{\n  &quot;' in page
    assert ">Replay</button>" not in page  # processed: nothing to replay


def test_replaying_a_receipt_whose_processing_failed_records_its_result_once(admin_client, admin_user, awaiting):
    stored = receipt(awaiting, outcome_detail="crashed: bug 123")
    page = admin_client.get(f"{LOG}{stored.pk}/change/").content.decode()
    assert ">Replay</button>" in page
    response = admin_client.post(f"{LOG}{stored.pk}/replay/", follow=True)
    assert "replayed: processed" in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.status == Status.COMPLETED and Result.objects.count() == 1
    event = AuditEvent.objects.get(action="operator.callback_replayed")
    assert (event.user, event.submission_id, event.data["outcome"]) == (admin_user, awaiting.pk, "processed")
    again = admin_client.post(f"{LOG}{stored.pk}/replay/", follow=True)
    assert "not replayed: already processed" in again.content.decode()
    assert Result.objects.count() == 1


def test_a_replay_that_fails_again_is_reported_as_an_error(admin_client, awaiting):
    body = json.loads((FIXTURES / "hive" / "task_error_corrupt.json").read_text())
    body.update(id="task-1", metadata=str(awaiting.pk))
    stored = receipt(awaiting, body=json.dumps(body))
    page = admin_client.post(f"{LOG}{stored.pk}/replay/", follow=True).content.decode()
    assert f'<li class="error">Receipt #{stored.pk} replayed: error (' in page
    assert 'class="success"' not in page


def test_a_replay_never_creates_a_second_result(awaiting):
    receipt(awaiting, outcome="pending")
    operations.replay_receipt(CallbackReceipt.objects.get().pk)
    assert Result.objects.count() == 1
    failed_copy = receipt(awaiting, outcome="error")
    replay = operations.replay_receipt(failed_copy.pk)
    assert replay.replayed and replay.outcome == "duplicate"
    assert Result.objects.count() == 1
    assert AuditEvent.objects.filter(action="decision.routed").count() == 1


def test_an_unauthentic_receipt_is_never_replayed(admin_client, awaiting):
    forged = receipt(awaiting, outcome="rejected", authentic=False)
    response = admin_client.post(LOG, {"action": "replay", "_selected_action": [forged.pk]}, follow=True)
    assert "not replayed: not authentic" in response.content.decode()
    forged.refresh_from_db()
    assert forged.outcome == "rejected" and not Result.objects.exists()
    assert AuditEvent.objects.get(action="operator.callback_replay_refused").data["receipt_id"] == forged.pk


def test_the_replay_action_handles_a_selection(admin_client, awaiting):
    first = receipt(awaiting, outcome="error")
    second = receipt(awaiting, outcome="error")
    admin_client.post(LOG, {"action": "replay", "_selected_action": [first.pk, second.pk]})
    outcomes = sorted(CallbackReceipt.objects.values_list("outcome", flat=True))
    assert outcomes == ["duplicate", "processed"] and Result.objects.count() == 1


def test_the_log_lists_the_submissions_whose_callback_never_came(admin_client, project, partner, awaiting):
    late = Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/y",
                                     status=Status.AWAITING_CALLBACK, hive_task_id="task-late",
                                     dispatched_at=timezone.now() - timedelta(minutes=31))
    flagged = Submission.objects.create(project=project, partner=partner, source="url", url="https://a.example/z",
                                        status=Status.AWAITING_CALLBACK, hive_task_id="task-flagged",
                                        dispatched_at=timezone.now(), callback_overdue_at=timezone.now())
    page = admin_client.get(LOG).content.decode()
    assert "task-late" in page and "task-flagged" in page and "task-1" not in page.split("Callback log")[1]
    listed = admin_client.get("/admin/moderation/submission/", {"callback": "overdue"}).content.decode()
    assert f"{late.pk}/change/" in listed and f"{flagged.pk}/change/" in listed
    assert f"{awaiting.pk}/change/" not in listed
    assert set(operations.overdue_callbacks()) == {late, flagged}


def test_a_staff_member_without_change_permission_cannot_replay(client, awaiting):
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_callbackreceipt"))
    client.force_login(viewer)
    stored = receipt(awaiting)
    assert client.post(f"{LOG}{stored.pk}/replay/").status_code == 403
    assert ">Replay</button>" not in client.get(f"{LOG}{stored.pk}/change/").content.decode()
    assert not Result.objects.exists()
