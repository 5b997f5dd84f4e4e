"""Fault test (`make faults`, issue 8): eight moderators claiming 1,000 items
on PostgreSQL, and no item claimed twice.

Each moderator is a thread with its own logged-in test client (so its own
database connection) doing what a person does in the portal: "Start
reviewing" (claim-next), open the item, approve or reject it, again, until
the queue says it is empty. SQLite serialises writers, so the race this
guards (SKIP LOCKED + the conditional UPDATE) only exists on PostgreSQL: on
any other database the test is skipped, and says how to run it.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections import Counter

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.urls import reverse

from moderation.models import (
    AuditEvent,
    Decision,
    DecisionSource,
    Delivery,
    Partner,
    Project,
    ReviewMode,
    Status,
    Submission,
)

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
NEEDS_POSTGRES = "needs PostgreSQL: run `make faults`, which runs it with DATABASE_URL set"

pytestmark = [pytest.mark.faults, pytest.mark.skipif(not ON_POSTGRES, reason=NEEDS_POSTGRES)]

ITEMS = 1000
MODERATORS = 8
TIME_LIMIT = 300  # seconds for the whole queue; it takes 30-40 s (a correctness test, not a benchmark)
ITEM_PATH = re.compile(r"^/portal/item/([0-9a-f-]{36})/")
SEEN = re.compile(r'name="seen" value="([^"]+)"')
REASONS = ["Nudity", "Violence"]


@pytest.fixture
def backlog(transactional_db):
    """1,000 items a Model + Manual Review project sent to humans, and eight
    moderators granted that project."""
    cache.clear()
    project = Project.objects.create(
        slug="faults-review", name="Faults review", endpoint_type="text", delivery=Delivery.ASYNC,
        review_mode=ReviewMode.MODEL_MANUAL_REVIEW, hive_api_key="sim-text-review-faults",
        thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}}, reject_reasons=REASONS)
    partner = Partner.objects.create(name="faults-review")
    Submission.objects.bulk_create(
        Submission(project=project, partner=partner, source="text_data", text_data=f"message {n}",
                   media_kind="text", status=Status.COMPLETED, decision=Decision.PENDING,
                   decision_source=DecisionSource.AUTO, scores={"general_nsfw": 0.6},
                   top_class="general_nsfw", top_score=0.6)
        for n in range(ITEMS))
    group, _ = Group.objects.get_or_create(name="moderator")
    users = []
    for n in range(MODERATORS):
        user = get_user_model().objects.create_user(f"moderator{n}", password=f"moderator{n}")
        user.groups.add(group)
        project.reviewers.add(user)
        users.append(user)
    yield project, users
    cache.clear()


class Moderator(threading.Thread):
    """One person at the portal: start reviewing, decide, repeat until empty."""

    def __init__(self, user, start_together: threading.Barrier, deadline: float):
        super().__init__(name=user.username, daemon=True)
        self.user, self.barrier, self.deadline = user, start_together, deadline
        self.claimed: list[str] = []  # every item the portal handed this moderator, in order
        self.refused: list[str] = []  # decisions the portal did not apply
        self.error = ""

    def run(self) -> None:
        try:
            client = Client()
            client.force_login(self.user)
            self.barrier.wait(timeout=30)
            while time.monotonic() < self.deadline:
                pk = self._start(client)
                if pk is None:
                    return  # "Nothing left to review here."
                self.claimed.append(pk)
                self._decide(client, pk, len(self.claimed))
            self.error = "gave up at the deadline with the queue not empty"
        except Exception:  # noqa: BLE001 - reported by the test with the thread's name
            self.error = traceback.format_exc()
        finally:
            connection.close()  # this thread's own connection

    def _start(self, client: Client) -> str | None:
        response = client.post(reverse("portal:start"))
        assert response.status_code == 302, (response.status_code, response.content[:500])
        location = response["Location"]
        if location == reverse("portal:queue", args=["review"]):
            return None
        match = ITEM_PATH.match(location)
        assert match, location
        return match.group(1)

    def _decide(self, client: Client, pk: str, n: int) -> None:
        page = client.get(reverse("portal:item", args=[pk]), {"queue": "review"})
        assert page.status_code == 200, (page.status_code, pk)
        seen = SEEN.search(page.content.decode()).group(1)
        form = {"seen": seen, "queue": "review", "action": "approve"}
        if n % 3 == 0:
            form.update(action="reject", reason=REASONS[n % 2])
        response = client.post(reverse("portal:decide", args=[pk]), form)
        assert response.status_code == 302, (response.status_code, pk, response.content[:500])
        # Applied or refused (stale), the view goes back to the item: ask the row which.
        if not Submission.objects.filter(pk=pk, decided_by=self.user).exists():
            self.refused.append(f"{pk}: {response['Location']}")


def test_eight_moderators_claiming_a_thousand_items_never_get_the_same_item(backlog):
    project, users = backlog
    # One request from this thread first: each test client loads the middleware
    # on its first request, and django-prometheus creates its metrics singleton
    # there without a lock; eight first requests at once can register the same
    # metric twice ("Duplicated timeseries"). A server loads it once, up front.
    assert Client().get(reverse("portal:login")).status_code == 200
    started = time.monotonic()
    barrier = threading.Barrier(len(users))
    moderators = [Moderator(user, barrier, started + TIME_LIMIT) for user in users]
    for moderator in moderators:
        moderator.start()
    for moderator in moderators:
        moderator.join(timeout=TIME_LIMIT + 30)
    elapsed = time.monotonic() - started
    assert not any(m.is_alive() for m in moderators), "a moderator thread is stuck"
    errors = {m.name: m.error for m in moderators if m.error}
    assert not errors, errors

    # Who got what: no item handed out twice, to two people or to the same one.
    owner_of: dict[str, list[str]] = {}
    for moderator in moderators:
        for pk in moderator.claimed:
            owner_of.setdefault(pk, []).append(moderator.name)
    twice = {pk: names for pk, names in owner_of.items() if len(names) > 1}
    assert not twice, f"{len(twice)} items handed out more than once: {dict(list(twice.items())[:5])}"
    all_ids = {str(pk) for pk in Submission.objects.filter(project=project).values_list("pk", flat=True)}
    assert set(owner_of) == all_ids, f"{len(all_ids - set(owner_of))} items never handed out"
    refused = {m.name: m.refused for m in moderators if m.refused}
    assert not refused, f"decisions not applied: {sum(map(len, refused.values()))}, first: {refused}"[:2000]
    per_moderator = {m.name: len(m.claimed) for m in moderators}
    assert all(per_moderator.values()), f"a moderator got no work: {per_moderator}"

    # Every item decided exactly once, by the moderator it was handed to.
    items = Submission.objects.filter(project=project)
    assert items.filter(decision__in=[Decision.APPROVED, Decision.REJECTED],
                        decision_source=DecisionSource.MODERATOR, claimed_by__isnull=True).count() == ITEMS
    decided_by = dict(items.values_list("pk", "decided_by__username"))
    wrong = {pk: (names, decided_by[pk]) for pk, names in
             ((pk, owner_of[str(pk)]) for pk in decided_by) if decided_by[pk] != names[0]}
    assert not wrong, f"decided by someone other than the holder: {dict(list(wrong.items())[:5])}"

    # The audit trail: exactly one claim and one decision per item, by its holder.
    for action in ("review.claimed", "decision.moderator"):
        events = AuditEvent.objects.filter(action=action, submission__project=project)
        per_item = Counter(dict(events.values("submission_id").annotate(n=Count("id"))
                                .values_list("submission_id", "n")))
        assert len(per_item) == ITEMS and set(per_item.values()) == {1}, (action, per_item.most_common(3))
        by_user = Counter(events.values_list("user__username", flat=True))
        assert by_user == Counter(per_moderator), (action, by_user, per_moderator)
    decisions = Counter(items.values_list("decision", flat=True))

    print(f"\n{MODERATORS} moderators decided {ITEMS} items in {elapsed:.1f} s "
          f"({ITEMS / elapsed:.0f}/s), none twice; per moderator: "
          f"{', '.join(f'{name} {n}' for name, n in sorted(per_moderator.items()))}; "
          f"{decisions[Decision.APPROVED]} approved, {decisions[Decision.REJECTED]} rejected")
