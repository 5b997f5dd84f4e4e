"""`seed_demo` leaves a living portal: something in every queue, once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from moderation.models import Result, Submission
from moderation.services import review
from moderation.services.demo import SAMPLE_PREFIX, SAMPLES

pytestmark = pytest.mark.django_db


def seed() -> list[str]:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue().strip().splitlines()


def test_seed_demo_leaves_something_in_every_queue():
    seed()
    User = get_user_model()
    admin, moderator = User.objects.get(username="admin"), User.objects.get(username="moderator")
    for name in ("review", "escalated", "mine", "hive", "failed", "decided"):
        user = admin if name == "escalated" else moderator
        assert review.queue_page(user, name).items, f"the {name} queue is empty after seed_demo"


def test_seed_demo_adds_its_samples_once_and_keeps_its_last_line():
    first = seed()
    rows = sorted(Submission.objects.values_list("external_id", "status", "decision"))
    results = Result.objects.count()
    second = seed()
    assert sorted(Submission.objects.values_list("external_id", "status", "decision")) == rows
    assert Result.objects.count() == results
    assert len(rows) == len(SAMPLES) and all(ext.startswith(SAMPLE_PREFIX) for ext, *_ in rows)
    assert first[-1] == second[-1] and first[-1].startswith("API key: ")


def test_every_demo_sample_opens_on_the_review_screen_with_its_media():
    seed()
    client = Client()
    client.force_login(get_user_model().objects.get(username="moderator"))
    for item in Submission.objects.all():
        page = client.get(f"/portal/item/{item.pk}/")
        assert page.status_code == 200, item.external_id
        if item.media:
            media = client.get(f"/portal/item/{item.pk}/media/")
            assert media.status_code == 200 and media["Content-Type"] == item.media_mime
            body = b"".join(media.streaming_content)
            assert len(body) == item.size_bytes, item.external_id


def test_a_demo_samples_results_carry_its_own_time_and_source():
    from moderation.models import Delivery

    seed()
    for item in Submission.objects.filter(completed_at__isnull=False).select_related("project"):
        expected = "sync" if item.project.delivery == Delivery.SYNC else "callback"
        for result in item.results.all():
            assert (result.source, result.received_at) == (expected, item.completed_at), item.external_id


def test_a_demo_samples_history_happened_when_the_sample_says():
    """An item's History and the dashboard's "last hour" read the audit trail:
    it must tell the same story as the sample's ages, not the seeding time."""
    seed()
    for item in Submission.objects.all():
        when = {e.action: e.created_at for e in item.events.all()}
        assert when["submission.received"] == item.created_at, item.external_id
        if item.completed_at:
            assert when["result.received"] == item.completed_at, item.external_id
        if "decision.moderator" in when:
            assert when["decision.moderator"] == item.decided_at, item.external_id
