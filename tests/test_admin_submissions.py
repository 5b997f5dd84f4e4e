"""Operator admin for submissions: finding them, seeing what Hive sent, and
the one-click fixes (each one an audited service call)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import responses
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from moderation.admin import paginator
from moderation.models import AuditEvent, CallbackReceipt, Result, Status, Submission
from moderation.services import operations
from tests.conftest import FIXTURES

HIVE = "https://hive.test"
IMAGE_RESULT = (FIXTURES / "hive" / "image.json").read_text()
LIST = "/admin/moderation/submission/"
PNG = operations.TINY_PNG


@pytest.fixture
def project(make_project, partner):
    project = make_project("pics")
    partner.projects.add(project)
    return project


def make(project, partner, **fields) -> Submission:
    fields.setdefault("source", "url")
    fields.setdefault("url", "https://cdn.example.com/a.jpg")
    return Submission.objects.create(project=project, partner=partner, **fields)


def act(client, action: str, *submissions, follow=True):
    return client.post(LIST, {"action": action, "_selected_action": [str(s.pk) for s in submissions]},
                       follow=follow)


def reload(obj):
    return type(obj).objects.get(pk=obj.pk)


# --- Actions -------------------------------------------------------------------------------

def test_retry_failed_queues_failed_ones_again_and_dispatches_them(admin_client, admin_user, project, partner,
                                                                   settings, django_capture_on_commit_callbacks):
    settings.HIVE_API_URL = HIVE
    failed = make(project, partner, status=Status.FAILED, attempts=12, error="Hive kept failing")
    done = make(project, partner, status=Status.COMPLETED, decision="approved")
    with responses.RequestsMock() as hive, django_capture_on_commit_callbacks(execute=True):
        hive.add(responses.POST, f"{HIVE}/api/v2/task/sync", body=IMAGE_RESULT)
        response = act(admin_client, "retry_failed", failed, done)
    page = response.content.decode()
    assert "Queued again 1 submission" in page and "Left 1 submission alone" in page
    failed = reload(failed)
    assert failed.status == Status.COMPLETED and failed.attempts == 1 and not failed.error
    assert reload(done).status == Status.COMPLETED
    event = AuditEvent.objects.get(action="operator.retry")
    assert (event.actor, event.user, event.submission_id) == ("operator", admin_user, failed.pk)
    assert event.data["previous_status"] == "failed"


def test_redispatch_sends_a_submission_whose_callback_never_came_again(admin_client, project, partner,
                                                                       django_capture_on_commit_callbacks):
    waiting = make(project, partner, status=Status.AWAITING_CALLBACK, hive_task_id="lost-task",
                   dispatched_at=timezone.now() - timedelta(hours=2), callback_overdue_at=timezone.now())
    busy = make(project, partner, status=Status.PROCESSING, lease_until=timezone.now() + timedelta(minutes=5))
    with django_capture_on_commit_callbacks() as enqueued:
        act(admin_client, "redispatch", waiting, busy)
    assert len(enqueued) == 1
    waiting = reload(waiting)
    assert (waiting.status, waiting.hive_task_id, waiting.callback_overdue_at) == (Status.QUEUED, None, None)
    assert reload(busy).status == Status.PROCESSING  # a worker holds it: not touched
    assert AuditEvent.objects.filter(action="operator.redispatch").count() == 1


def test_a_processing_submission_whose_lease_ran_out_can_be_redispatched(project, partner):
    stuck = make(project, partner, status=Status.PROCESSING, lease_until=timezone.now() - timedelta(minutes=1))
    assert operations.redispatch([stuck.pk]).done == [str(stuck.pk)]
    assert reload(stuck).status == Status.QUEUED


def test_send_to_review_puts_a_decided_submission_back_in_the_review_queue(admin_client, project, partner):
    decided = make(project, partner, status=Status.COMPLETED, decision="approved", decision_source="auto",
                   decided_at=timezone.now())
    queued = make(project, partner)
    response = act(admin_client, "send_to_review", decided, queued)
    assert "Sent to review 1 submission" in response.content.decode()
    decided = reload(decided)
    assert (decided.decision, decided.decision_source, decided.decided_at) == ("pending", "operator", None)
    assert reload(queued).decision is None
    assert AuditEvent.objects.get(action="operator.sent_to_review").data["previous_decision"] == "approved"


def test_the_change_page_offers_the_fixes_that_apply_and_they_work(admin_client, project, partner):
    failed = make(project, partner, status=Status.FAILED)
    page = admin_client.get(f"{LIST}{failed.pk}/change/").content.decode()
    assert ">Retry</button>" in page and ">Send to review</button>" not in page
    response = admin_client.post(f"{LIST}{failed.pk}/operate/retry/", follow=True)
    assert "Queued again" in response.content.decode()
    assert reload(failed).status == Status.QUEUED
    assert admin_client.post(f"{LIST}{failed.pk}/operate/explode/").status_code == 404
    assert admin_client.get(f"{LIST}{failed.pk}/operate/retry/").status_code == 405


def test_a_staff_member_without_change_permission_cannot_run_fixes(client, project, partner):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_submission"))
    client.force_login(viewer)
    failed = make(project, partner, status=Status.FAILED)
    assert client.post(f"{LIST}{failed.pk}/operate/retry/").status_code == 403
    act(client, "retry_failed", failed)
    assert reload(failed).status == Status.FAILED
    assert not AuditEvent.objects.exists()


def test_export_csv_streams_the_selected_rows_and_defuses_formulas(admin_client, admin_user, project, partner):
    first = make(project, partner, external_id="=HYPERLINK(\"http://evil\")", status=Status.COMPLETED,
                 top_class="general_nsfw", top_score=0.25)
    second = make(project, partner, external_id="plain")
    response = act(admin_client, "export_csv", first, second, follow=False)
    assert response.streaming and response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["id", "project", "partner"]
    by_id = {row[0]: row for row in rows[1:]}
    assert set(by_id) == {str(first.pk), str(second.pk)}
    assert by_id[str(first.pk)][3] == "'=HYPERLINK(\"http://evil\")"
    assert by_id[str(first.pk)][1:3] == ["pics", "acme"] and by_id[str(first.pk)][11] == "0.25"
    event = AuditEvent.objects.get(action="operator.exported_submissions")
    assert event.user == admin_user and event.data["selection"] == "2 selected"


def test_export_says_who_decided_when_and_why_with_scores_to_four_places(admin_client, admin_user, project,
                                                                          partner):
    decided_at = timezone.now()
    rejected = make(project, partner, status=Status.COMPLETED, top_class="general_nsfw", top_score=0.123456789,
                    decision="rejected", decided_by=admin_user, decided_at=decided_at, decision_reason="Nudity")
    response = act(admin_client, "export_csv", rejected, follow=False)
    header, row = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    exported = dict(zip(header, row))
    assert exported["top_score"] == "0.1235"
    assert (exported["decided_by"], exported["decided_at"], exported["decision_reason"]) == (
        admin_user.username, decided_at.isoformat(), "Nudity")


def test_export_reads_in_batches_so_many_rows_never_sit_in_memory(project, partner, monkeypatch):
    monkeypatch.setattr(operations, "BATCH", 3)
    made = {str(make(project, partner).pk) for _ in range(8)}
    rows = operations.export_rows(Submission.objects.all())
    with CaptureQueriesContext(connection) as queries:
        exported = {row[0] for row in list(rows)[1:]}
    assert exported == made
    assert len([q for q in queries.captured_queries if "moderation_submission" in q["sql"]]) == 3


# --- Finding submissions --------------------------------------------------------------------

def test_the_list_filters_by_status_decision_project_kind_and_date(admin_client, make_project, project, partner):
    other = make_project("words", endpoint_type="text")
    failed = make(project, partner, status=Status.FAILED, media_kind="image")
    pending = make(other, partner, status=Status.COMPLETED, decision="pending", source="text_data", url="",
                   text_data="hi", media_kind="text")
    old = make(project, partner)
    Submission.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    def listed(query: str) -> set[str]:
        page = admin_client.get(f"{LIST}?{query}").content.decode()
        return {str(s.pk) for s in (failed, pending, old) if f'{s.pk}/change/' in page}

    assert listed("status__exact=failed") == {str(failed.pk)}
    assert listed("decision__exact=pending") == {str(pending.pk)}
    assert listed(f"project__id__exact={other.pk}") == {str(pending.pk)}
    assert listed("media_kind__exact=text") == {str(pending.pk)}
    since = (timezone.now() - timedelta(days=7)).isoformat()
    assert listed(urlencode({"created_at__gte": since})) == {str(failed.pk), str(pending.pk)}


def test_search_finds_a_submission_by_id_external_id_or_hive_task_id(admin_client, project, partner):
    target = make(project, partner, external_id="order-77", hive_task_id="task-abc")
    make(project, partner, external_id="order-78")
    for term in (str(target.pk), "order-77", "task-abc"):
        page = admin_client.get(LIST, {"q": term}).content.decode()
        assert f"{target.pk}/change/" in page
        assert "order-78" not in page


def test_the_list_never_counts_the_whole_table_and_costs_the_same_queries_at_any_size(admin_client, project,
                                                                                       partner):
    make(project, partner)
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(LIST).status_code == 200
    Submission.objects.bulk_create([Submission(project=project, partner=partner, source="url", url="https://x/y")
                                    for _ in range(120)])
    with CaptureQueriesContext(connection) as large:
        assert admin_client.get(LIST).status_code == 200
    assert len(small.captured_queries) == len(large.captured_queries)
    counts = [q["sql"] for q in large.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_past_the_counted_pages_the_list_says_there_are_more(admin_client, project, partner, monkeypatch):
    monkeypatch.setattr(paginator, "LOOKAHEAD_PAGES", 0)
    Submission.objects.bulk_create([Submission(project=project, partner=partner, source="url", url="https://x/y")
                                    for _ in range(60)])
    page = admin_client.get(LIST).content.decode()
    assert "50+ submissions" in page
    assert "Select all matching submissions" in page
    assert admin_client.get(LIST, {"p": 2}).status_code == 200


def many(project, partner, n: int) -> None:
    Submission.objects.bulk_create([Submission(project=project, partner=partner, source="url", url="https://x/y")
                                    for _ in range(n)])


@pytest.mark.parametrize("page", ["3", "0", "-1", str(10**20)])
def test_a_page_out_of_range_goes_back_to_the_first_as_django_does_however_big(admin_client, project, partner,
                                                                              page):
    many(project, partner, 60)
    response = admin_client.get(LIST, {"p": page})
    assert response.status_code == 302 and response["Location"] == f"{LIST}?e=1"
    assert "60 submissions" in admin_client.get(response["Location"]).content.decode()


def test_a_garbled_page_number_shows_the_first_page(admin_client, project, partner):
    many(project, partner, 60)
    response = admin_client.get(LIST, {"p": "abc"})
    assert response.status_code == 200 and "60 submissions" in response.content.decode()


def test_the_page_links_stop_at_max_rows_and_a_deeper_page_is_out_of_range(admin_client, project, partner,
                                                                            monkeypatch):
    monkeypatch.setattr(paginator, "MAX_ROWS", 100)
    many(project, partner, 160)
    assert "100+ submissions" in admin_client.get(LIST, {"p": 2}).content.decode()
    response = admin_client.get(LIST, {"p": 4})
    assert response.status_code == 302 and response["Location"] == f"{LIST}?e=1"


# --- What Hive sent, and the media ------------------------------------------------------------

def test_the_change_page_shows_hives_json_pretty_with_results_receipts_and_events(admin_client, project,
                                                                                  partner):
    submission = make(project, partner, status=Status.COMPLETED)
    Result.objects.create(submission=submission, source="callback", fingerprint="f1", raw=IMAGE_RESULT,
                          scores={"general_nsfw": 0.1}, top_class="general_nsfw", top_score=0.1)
    CallbackReceipt.objects.create(submission=submission, submission_ref=str(submission.pk), body=IMAGE_RESULT,
                                   authentic=True, outcome="processed", outcome_detail="new")
    AuditEvent.objects.create(submission=submission, project=project, actor="hive", action="result.received")
    page = admin_client.get(f"{LIST}{submission.pk}/change/").content.decode()
    first_key = next(iter(json.loads(IMAGE_RESULT)))
    assert f'{{\n  &quot;{first_key}&quot;:' in page  # indented, keys in Hive's order
    assert "Results (every one Hive sent" in page and "Callback receipts" in page
    assert "result.received" in page and "Processed" in page


def test_the_media_is_streamed_to_staff_and_shown_as_a_thumbnail(admin_client, client, project, partner):
    submission = make(project, partner, source="media", url="", media_kind="image", media_mime="image/png")
    submission.media.save("x.png", ContentFile(PNG))
    media_url = f"{LIST}{submission.pk}/media/"
    assert f'<img class="hp-thumb" src="{media_url}"' in admin_client.get(LIST).content.decode()
    response = admin_client.get(media_url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG
    assert "sandbox" in response["Content-Security-Policy"]
    assert client.get(media_url).status_code == 302  # not logged in: to the admin login
    User.objects.create_user("nobody", password="pw", is_staff=True)
    client.login(username="nobody", password="pw")
    assert client.get(media_url).status_code == 403  # staff, but may not view submissions


def test_media_the_browser_could_run_is_only_ever_downloaded(admin_client, project, partner):
    submission = make(project, partner, source="media", url="", media_kind="video", media_mime="text/html")
    submission.media.save("x.html", ContentFile(b"<script>alert(1)</script>"))
    response = admin_client.get(f"{LIST}{submission.pk}/media/")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment")


def test_submissions_without_a_picture_get_an_icon(admin_client, project, partner):
    make(project, partner, source="text_data", url="", text_data="hello", media_kind="text")
    page = admin_client.get(LIST).content.decode()
    assert 'class="hp-icon" title="text"' in page and '<img class="hp-thumb"' not in page
