"""The queues page: per-project numbers against known data, each linking to
the list it counts, and the django-q2 cluster's health."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Failure, Success
from django_q.signing import SignedPackage
from django_q.status import Stat, Status as ClusterStatus

from moderation.admin import queues
from moderation.models import AuditEvent, Status, Submission

PAGE = "/admin/queues/"


@pytest.fixture
def known(make_project, partner):
    """Two projects with a known number of submissions in every state."""
    now = timezone.now()
    pics = make_project("pics")
    later = make_project("later", delivery="async", callback_deadline_minutes=30)

    def add(project, count, *, age_minutes=1, **fields):
        made = []
        for _ in range(count):
            s = Submission.objects.create(project=project, partner=partner, source="url", url="https://x/y", **fields)
            Submission.objects.filter(pk=s.pk).update(created_at=now - timedelta(minutes=age_minutes))
            made.append(s)
        return made

    oldest_queued = add(pics, 1, age_minutes=120, status=Status.QUEUED)[0]
    add(pics, 2, status=Status.QUEUED)
    add(pics, 1, status=Status.PROCESSING, lease_until=now + timedelta(minutes=1))
    add(pics, 2, status=Status.FAILED)
    add(pics, 2, status=Status.COMPLETED, decision="approved")
    add(pics, 1, status=Status.COMPLETED, decision="rejected")
    oldest_pending = add(pics, 1, age_minutes=90, status=Status.COMPLETED, decision="pending")[0]
    add(pics, 1, status=Status.COMPLETED, decision="escalated")
    add(later, 1, status=Status.AWAITING_CALLBACK, dispatched_at=now - timedelta(minutes=45))
    add(later, 1, status=Status.AWAITING_CALLBACK, dispatched_at=now - timedelta(minutes=5))
    for submission in Submission.objects.filter(project=pics, decision__in=["approved", "rejected"]):
        AuditEvent.objects.create(submission=submission, project=pics, actor="hive", action="result.received")
    stale = AuditEvent.objects.create(submission=oldest_pending, project=pics, actor="hive", action="result.received")
    with connection.cursor() as cursor:  # events are append-only: age this one behind the model's back
        cursor.execute("UPDATE moderation_auditevent SET created_at = %s WHERE id = %s",
                       [now - timedelta(hours=2), stale.pk])
    return {"pics": pics, "later": later, "oldest_queued": oldest_queued, "oldest_pending": oldest_pending}


def numbers(row) -> dict:
    return {**{label: cell.count for label, cell in row.queues.items()},
            **{f"last hour {label}": cell.count for label, cell in row.last_hour.items()}}


def test_the_numbers_match_the_data(admin_client, known):
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    rows = {row.project.slug: row for row in response.context["rows"]}
    assert numbers(rows["pics"]) == {
        "Queued": 3, "Processing": 1, "Awaiting callback": 0, "Overdue callback": 0, "Failed": 2,
        "Pending review": 1, "Escalated": 1,
        "last hour Completed": 3, "last hour Approved": 2, "last hour Rejected": 1, "last hour Held for review": 0,
    }
    assert numbers(rows["later"]) == {
        "Queued": 0, "Processing": 0, "Awaiting callback": 2, "Overdue callback": 1, "Failed": 0,
        "Pending review": 0, "Escalated": 0,
        "last hour Completed": 0, "last hour Approved": 0, "last hour Rejected": 0, "last hour Held for review": 0,
    }


def test_each_queue_shows_its_oldest_item(admin_client, known):
    response = admin_client.get(PAGE)
    pics = next(row for row in response.context["rows"] if row.project.slug == "pics")
    queued = pics.queues["Queued"]
    assert queued.oldest_url.endswith(f"/{known['oldest_queued'].pk}/change/")
    assert timezone.now() - queued.oldest_at >= timedelta(minutes=119)
    assert pics.queues["Pending review"].oldest_url.endswith(f"/{known['oldest_pending'].pk}/change/")
    page = response.content.decode()
    assert "2\xa0hours" in page and "1\xa0hour, 30\xa0minutes" in page


def test_every_number_links_to_a_list_of_exactly_what_it_counts(admin_client, known):
    rows = admin_client.get(PAGE).context["rows"]
    for row in rows:
        for cell in [*row.queues.values(), *row.last_hour.values()]:
            listed = admin_client.get(cell.url).content.decode()
            shown = len(set(re.findall(r"/admin/moderation/submission/([0-9a-f-]{36})/change/", listed)))
            assert shown == cell.count, cell.url


def test_counts_stop_at_the_cap(admin_client, known, monkeypatch):
    monkeypatch.setattr(queues, "CAP", 2)
    response = admin_client.get(PAGE)
    pics = next(row for row in response.context["rows"] if row.project.slug == "pics")
    queued = pics.queues["Queued"]
    assert queued.capped and queued.shown == "2+"
    assert ">2+</a>" in response.content.decode()


def test_the_page_costs_the_same_queries_with_more_submissions(admin_client, known, partner):
    with CaptureQueriesContext(connection) as before:
        admin_client.get(PAGE)
    Submission.objects.bulk_create([Submission(project=known["pics"], partner=partner, source="url",
                                               url="https://x/y", status=Status.COMPLETED, decision="approved")
                                    for _ in range(50)])
    with CaptureQueriesContext(connection) as after:
        admin_client.get(PAGE)
    assert len(before.captured_queries) == len(after.captured_queries)


def test_work_done_is_shown_from_our_own_data_not_from_stored_successes(admin_client, known):
    page = admin_client.get(PAGE).content.decode()
    # Three submissions completed in the last hour (the fixture's), though no task success is stored.
    assert re.search(r'Submissions completed, last hour</th><td><a href="/admin/moderation/submission/'
                     r'\?completed=1h">3</a>', page)
    assert "Succeeded" not in page and "task history on the left" not in page
    # django-q2's list of successful tasks would always be empty: it is not offered.
    assert "Successful tasks" not in admin_client.get("/admin/").content.decode()
    assert admin_client.get("/admin/django_q/success/").status_code == 404


def test_the_admin_index_links_to_the_queues_page(admin_client):
    assert 'href="/admin/queues/"' in admin_client.get("/admin/").content.decode()


def test_the_page_is_for_staff_who_may_view_submissions(client, db):
    from django.contrib.auth.models import User

    assert client.get(PAGE).status_code == 302
    client.force_login(User.objects.create_user("staff", is_staff=True))
    assert client.get(PAGE).status_code == 403


# --- django-q2 -----------------------------------------------------------------------------

@pytest.fixture
def broker():
    broker = get_broker()
    yield broker
    if broker.info().startswith("ORM"):  # queued rows roll back with the test; stats live in the cache
        broker.cache.delete(Stat.get_key("test-cluster"))
    else:
        broker.connection.delete(broker.list_key, Stat.get_key("test-cluster"))


def test_the_cluster_health_shows_queued_tasks_failures_and_live_clusters(admin_client, broker):
    before = broker.queue_size()
    broker.enqueue("task one")
    broker.enqueue("task two")
    now = timezone.now()
    Failure.objects.create(id=uuid.uuid4().hex, name="boom-task", func="moderation.tasks.sweep", started=now,
                           stopped=now, success=False, result="ValueError: boom")
    Success.objects.create(id=uuid.uuid4().hex, name="fine-task", func="moderation.tasks.sweep", started=now,
                           stopped=now, success=True)
    Failure.objects.create(id=uuid.uuid4().hex, name="old-failure", func="x", started=now - timedelta(hours=3),
                           stopped=now - timedelta(hours=3), success=False)
    stat = ClusterStatus(pid=1, cluster_id="test-cluster")
    stat.workers, stat.status, stat.tob = [11, 12, 13], "Idle", now - timedelta(minutes=5)
    broker.set_stat(Stat.get_key("test-cluster"), SignedPackage.dumps(stat, True), 30)

    response = admin_client.get(PAGE)
    health = response.context["health"]
    assert health.queued == before + 2
    assert health.failures_last_hour == 1
    assert [f.name for f in health.recent_failures][:2] == ["boom-task", "old-failure"]
    assert [(c["id"], c["workers"], c["status"]) for c in health.clusters] == [("test-cluster", 3, "Idle")]
    page = response.content.decode()
    assert "boom-task" in page and "ValueError: boom" in page and "test-cluster" in page


def test_no_running_cluster_is_said_plainly(admin_client, db):
    page = admin_client.get(PAGE).content.decode()
    assert "No cluster has reported" in page


def test_a_broken_broker_is_shown_not_crashed_on(admin_client, monkeypatch, db):
    class Down:
        def info(self):
            raise ConnectionError("connection refused")

    monkeypatch.setattr("django_q.brokers.get_broker", lambda: Down())
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    assert "connection refused" in response.content.decode()
