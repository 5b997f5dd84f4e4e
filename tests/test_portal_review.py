"""Review services: claims, leases, decisions, presence, queues, dashboard."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache, caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from moderation.models import AuditEvent, Decision, DecisionSource, Project, Status, Submission
from moderation.services import audit, notify, review
from moderation.services.review import StaleDecision


def make_user(username: str, *groups: str, superuser: bool = False):
    user = get_user_model().objects.create_user(username, password=username, is_superuser=superuser)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def project(make_project) -> Project:
    return make_project("portal", reject_reasons=["Nudity", "Violence"], review_sla_minutes=60,
                        thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9},
                                    "yes_violence": {"review": 0.5, "reject": 0.9}})


@pytest.fixture
def moderator(project):
    user = make_user("mo", "moderator")
    project.reviewers.add(user)
    return user


@pytest.fixture
def other_moderator(project):
    user = make_user("ann", "moderator")
    project.reviewers.add(user)
    return user


@pytest.fixture
def outsider(db):
    """A moderator who was not granted the project."""
    return make_user("out", "moderator")


@pytest.fixture
def lead(db):
    return make_user("lead", "lead")


@pytest.fixture
def make_item(project, partner):
    def make(minutes_ago: int = 0, *, target=None, **fields) -> Submission:
        values = dict(project=target or project, partner=partner, source="text_data", text_data="hello",
                      media_kind="text", status=Status.COMPLETED, decision=Decision.PENDING,
                      decision_source=DecisionSource.AUTO, scores={"general_nsfw": 0.6}, top_class="general_nsfw",
                      top_score=0.6)
        values.update(fields)
        item = Submission.objects.create(**values)
        if minutes_ago:
            when = timezone.now() - timedelta(minutes=minutes_ago)
            Submission.objects.filter(pk=item.pk).update(created_at=when)
            item.refresh_from_db()
        return item

    return make


@pytest.fixture
def notified():
    """The partner notifications sent (on commit) through the pipeline's hook."""
    seen: list[tuple[str, str]] = []

    def receiver(sender, submission_id, event, **kwargs):
        seen.append((str(submission_id), event))

    notify.submission_event.connect(receiver, dispatch_uid="test-portal-notified")
    yield seen
    notify.submission_event.disconnect(dispatch_uid="test-portal-notified")


# --- Claims ----------------------------------------------------------------------------


def test_claim_next_hands_the_oldest_pending_item_with_a_lease(make_item, moderator, settings):
    settings.REVIEW_LEASE_MINUTES = 7
    make_item(5)
    oldest = make_item(30)
    make_item(10, status=Status.PROCESSING, decision=None)  # not yet scored: not reviewable
    claimed = review.claim_next(moderator)
    assert claimed == oldest
    claimed.refresh_from_db()
    assert claimed.claimed_by == moderator
    remaining = claimed.claimed_until - timezone.now()
    assert timedelta(minutes=6) < remaining <= timedelta(minutes=7)
    assert AuditEvent.objects.filter(submission=oldest, action="review.claimed", user=moderator).exists()


def test_two_moderators_in_turn_get_different_items(make_item, moderator, other_moderator):
    first, second = make_item(20), make_item(10)
    assert review.claim_next(moderator) == first
    assert review.claim_next(other_moderator) == second
    assert review.claim_next(make_user("third", "lead")) is None


def test_a_moderator_who_asks_again_gets_the_item_they_already_hold(make_item, moderator):
    make_item(20)
    make_item(10)
    held = review.claim_next(moderator)
    assert review.claim_next(moderator) == held


def test_an_expired_lease_lets_another_moderator_take_the_item(make_item, moderator, other_moderator):
    item = make_item(20)
    review.claim_next(moderator)
    Submission.objects.filter(pk=item.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert review.claim_next(other_moderator) == item
    item.refresh_from_db()
    assert item.claimed_by == other_moderator


def test_claim_next_only_offers_projects_granted_to_the_moderator(make_item, make_project, moderator, outsider,
                                                                  lead):
    elsewhere = make_project("elsewhere")
    theirs = make_item(20, target=elsewhere)
    mine = make_item(5)
    assert review.claim_next(moderator) == mine
    assert review.claim_next(outsider) is None
    assert review.claim_next(lead) == theirs  # leads review every project


def test_skip_releases_the_item_and_does_not_hand_it_straight_back(make_item, moderator, other_moderator):
    first, second = make_item(20), make_item(10)
    review.claim_next(moderator)
    review.skip(moderator, first)
    first.refresh_from_db()
    assert first.claimed_by is None
    assert review.claim_next(moderator) == second
    assert review.claim_next(other_moderator) == first
    assert AuditEvent.objects.filter(submission=first, action="review.skipped").exists()


def test_release_puts_the_item_back_for_anyone(make_item, moderator, other_moderator):
    item = make_item(20)
    review.claim_next(moderator)
    assert not review.release(other_moderator, item)  # not theirs to release
    assert review.release(moderator, item)
    assert review.claim_next(other_moderator) == item


def test_a_claim_taken_between_choosing_and_claiming_is_not_overwritten(make_item, moderator, other_moderator):
    """The conditional UPDATE alone (SQLite's path) refuses the second taker."""
    item = make_item(20)
    now = timezone.now()
    assert review._take(item.pk, moderator, Decision.PENDING, now)
    assert not review._take(item.pk, other_moderator, Decision.PENDING, now)
    item.refresh_from_db()
    assert item.claimed_by == moderator


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_hand_out_the_same_item(project, partner):
    """Eight moderators press "Start reviewing" at the same moment, twice each:
    every claim is a different item (SKIP LOCKED on PostgreSQL, the
    conditional UPDATE everywhere)."""
    users = []
    for n in range(8):
        user = make_user(f"m{n}", "moderator")
        project.reviewers.add(user)
        users.append(user)
    for n in range(20):
        Submission.objects.create(project=project, partner=partner, source="text_data", text_data=str(n),
                                  status=Status.COMPLETED, decision=Decision.PENDING)
    barrier = threading.Barrier(len(users))
    claimed: list = []
    errors: list = []
    lock = threading.Lock()

    def work(user):
        try:
            barrier.wait()
            for _ in range(2):
                item = review.claim_next(user)
                with lock:
                    claimed.append(item.pk if item else None)
                if item:
                    # Hand the next claim a fresh item: decide this one.
                    review.decide(user, item, "approve", seen=review.seen_token(item))
        except Exception as error:  # surfaced below with the thread's story
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(claimed) == 16 and None not in claimed
    assert len(set(claimed)) == 16, "an item was handed to two moderators"
    assert Submission.objects.filter(decision=Decision.APPROVED).count() == 16
    assert AuditEvent.objects.filter(action="decision.moderator").count() == 16


# --- Decisions --------------------------------------------------------------------------


def test_approving_records_the_decision_the_audit_event_and_tells_the_partner(
        make_item, moderator, notified, django_capture_on_commit_callbacks):
    item = make_item(10)
    review.claim_next(moderator)
    item.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        decided = review.decide(moderator, item, "approve", seen=review.seen_token(item), note="fine")
    assert decided.decision == Decision.APPROVED
    assert decided.decision_source == DecisionSource.MODERATOR
    assert decided.decided_by == moderator and decided.decided_at is not None
    assert decided.claimed_by is None
    event = AuditEvent.objects.get(submission=item, action="decision.moderator")
    assert event.user == moderator and event.actor == "moderator"
    assert event.data["decision"] == "approved" and event.data["previous"] == "pending"
    assert event.data["triggered"] == ["general_nsfw"]
    assert notified == [(str(item.pk), notify.DECIDED)]


def test_rejecting_needs_a_reason_from_the_projects_list(make_item, moderator):
    item = make_item(10)
    seen = review.seen_token(item)
    with pytest.raises(review.InvalidDecision, match="reason"):
        review.decide(moderator, item, "reject", seen=seen)
    with pytest.raises(review.InvalidDecision, match="not one of"):
        review.decide(moderator, item, "reject", seen=seen, reason="Because")
    item.refresh_from_db()
    assert item.decision == Decision.PENDING
    decided = review.decide(moderator, item, "reject", seen=seen, reason="Violence", note="a knife")
    assert (decided.decision, decided.decision_reason, decided.decision_note) == ("rejected", "Violence", "a knife")


def test_escalating_needs_a_note_and_only_a_lead_decides_an_escalation(make_item, moderator, lead):
    item = make_item(10)
    with pytest.raises(review.InvalidDecision, match="note"):
        review.decide(moderator, item, "escalate", seen=review.seen_token(item))
    escalated = review.decide(moderator, item, "escalate", seen=review.seen_token(item), note="not sure")
    assert escalated.decision == Decision.ESCALATED
    with pytest.raises(review.NotAllowed):
        review.decide(moderator, escalated, "approve", seen=review.seen_token(escalated))
    final = review.decide(lead, escalated, "reject", seen=review.seen_token(escalated), reason="Nudity")
    assert final.decision == Decision.REJECTED and final.decided_by == lead
    previous = [e.data["previous"] for e in AuditEvent.objects.filter(action="decision.moderator")]
    assert previous == ["pending", "escalated"]


def test_a_decision_made_on_a_stale_view_is_refused_and_not_applied_twice(
        make_item, moderator, other_moderator, notified, django_capture_on_commit_callbacks):
    item = make_item(10)
    seen_by_both = review.seen_token(item)
    with django_capture_on_commit_callbacks(execute=True):
        review.decide(moderator, item, "approve", seen=seen_by_both)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(StaleDecision, match="mo already decided"):
            review.decide(other_moderator, item, "reject", seen=seen_by_both, reason="Nudity")
    item.refresh_from_db()
    assert item.decision == Decision.APPROVED and item.decided_by == moderator
    assert AuditEvent.objects.filter(action="decision.moderator").count() == 1
    assert notified == [(str(item.pk), notify.DECIDED)]


def test_a_decision_on_an_item_another_moderator_holds_is_refused_but_a_lead_may(
        make_item, moderator, other_moderator, lead):
    item = make_item(10)
    review.claim_next(moderator)
    with pytest.raises(StaleDecision, match="mo is reviewing"):
        review.decide(other_moderator, item, "approve", seen=review.seen_token(item))
    decided = review.decide(lead, item, "approve", seen=review.seen_token(item))
    assert decided.decided_by == lead


def test_a_forged_or_garbled_seen_token_is_refused(make_item, moderator):
    item = make_item(10)
    with pytest.raises(StaleDecision):
        review.decide(moderator, item, "approve", seen="nonsense")
    with pytest.raises(StaleDecision):
        review.decide(moderator, item, "approve", seen="approved@")


def test_bulk_decisions_apply_each_item_once_and_report_the_stale_ones(make_item, moderator, other_moderator,
                                                                       notified,
                                                                       django_capture_on_commit_callbacks):
    items = [make_item(30 - n) for n in range(4)]
    batch = review.claim_batch(moderator, kinds=("text",))
    assert batch == items
    tokens = [(i, review.seen_token(i)) for i in items]
    review.release(moderator, items[3])
    review.decide(other_moderator, items[3], "approve", seen=tokens[3][1])  # decided meanwhile
    with django_capture_on_commit_callbacks(execute=True):
        outcome = review.bulk_decide(moderator, tokens, "reject", reason="Nudity")
    assert [s.pk for s in outcome.decided] == [i.pk for i in items[:3]]
    assert [pk for pk, _ in outcome.refused] == [str(items[3].pk)]
    assert Submission.objects.filter(decision=Decision.REJECTED).count() == 3
    assert all(e.data["bulk"] for e in AuditEvent.objects.filter(action="decision.moderator", user=moderator))
    assert len(notified) == 3


def test_a_lead_can_assign_an_item_to_a_moderator_of_its_project(make_item, moderator, outsider, lead):
    item = make_item(10)
    with pytest.raises(review.NotAllowed):
        review.assign(moderator, item, moderator)
    with pytest.raises(review.InvalidDecision, match="may not review"):
        review.assign(lead, item, outsider)
    review.assign(lead, item, moderator)
    assert review.claim_next(moderator) == item
    assert AuditEvent.objects.get(action="review.assigned").data["to"] == "mo"


# --- Presence ---------------------------------------------------------------------------


def test_presence_shows_who_else_has_the_item_open(make_item, moderator, other_moderator):
    item = make_item(10)
    assert review.heartbeat(moderator, item.pk) == []
    assert review.heartbeat(other_moderator, item.pk) == ["mo"]
    assert review.heartbeat(moderator, item.pk) == ["ann"]
    review.leave(other_moderator, item.pk)
    assert review.heartbeat(moderator, item.pk) == []


def test_a_viewer_who_left_is_not_brought_back_by_another_viewers_heartbeat(make_item, moderator, other_moderator,
                                                                             monkeypatch):
    item = make_item(10)
    review.heartbeat(moderator, item.pk)
    review.heartbeat(other_moderator, item.pk)
    backend = caches["default"]  # the object behind the `cache` proxy
    real_get = backend.get
    raced = []

    def get_then_ann_leaves(key, *args, **kwargs):
        value = real_get(key, *args, **kwargs)
        if key == f"portal:viewing:{item.pk}" and not raced:  # mo's beat has read the item's viewers ...
            raced.append(True)
            review.leave(other_moderator, item.pk)  # ... when ann's page closes
        return value

    with monkeypatch.context() as patch:
        patch.setattr(backend, "get", get_then_ann_leaves)
        review.heartbeat(moderator, item.pk)
    assert raced
    assert review.heartbeat(moderator, item.pk) == []  # ann is gone, not shown for another 45 s


# --- Queues ------------------------------------------------------------------------------


def test_queue_pages_know_there_is_more_without_counting(make_item, moderator):
    items = [make_item(50 - n) for n in range(5)]
    with CaptureQueriesContext(connection) as queries:
        first = review.queue_page(moderator, "review", page=1, per_page=2)
    assert [i.pk for i in first.items] == [i.pk for i in items[:2]] and first.has_more
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    last = review.queue_page(moderator, "review", page=3, per_page=2)
    assert [i.pk for i in last.items] == [items[4].pk] and not last.has_more


def test_queue_pages_stop_at_the_queue_depth_without_reading_past_it(make_item, moderator, monkeypatch):
    monkeypatch.setattr(review, "QUEUE_DEPTH", 4)
    items = [make_item(50 - n) for n in range(5)]
    last = review.queue_page(moderator, "review", page=2, per_page=2)
    assert [i.pk for i in last.items] == [i.pk for i in items[2:4]]
    assert not last.has_more and last.capped
    for page in (3, 10**20):
        with CaptureQueriesContext(connection) as queries:
            beyond = review.queue_page(moderator, "review", page=page, per_page=2)
        assert (beyond.items, beyond.has_more, queries.captured_queries) == ([], False, [])


def test_queues_hold_what_their_names_say(make_item, moderator, lead):
    pending = make_item(40)
    escalated = make_item(30, decision=Decision.ESCALATED)
    failed = make_item(20, status=Status.FAILED, decision=None)
    waiting = make_item(15, status=Status.AWAITING_CALLBACK, decision=None)
    decided = make_item(10, decision=Decision.REJECTED, decided_at=timezone.now())
    review.claim_next(moderator)

    def names(user, queue, **filters):
        return [i.pk for i in review.queue_page(user, queue, review.QueueFilters(**filters)).items]

    assert names(moderator, "review") == [pending.pk]
    assert names(moderator, "mine") == [pending.pk]
    assert names(moderator, "escalated") == []  # leads only
    assert names(lead, "escalated") == [escalated.pk]
    assert names(moderator, "failed") == [failed.pk]
    assert names(moderator, "hive") == [waiting.pk]
    assert names(moderator, "decided") == [decided.pk]
    assert names(moderator, "search", q=str(failed.pk)) == [failed.pk]


def test_queue_filters_narrow_by_project_class_score_date_and_external_id(make_item, make_project, lead):
    other = make_project("other")
    low = make_item(40, top_class="yes_violence", top_score=0.55, external_id="ext-low")
    high = make_item(30, top_score=0.85)
    elsewhere = make_item(20, target=other)
    today = timezone.now()

    def names(**filters):
        return [i.pk for i in review.queue_page(lead, "review", review.QueueFilters(**filters)).items]

    assert names(project="other") == [elsewhere.pk]
    assert names(cls="yes_violence") == [low.pk]
    assert names(min_score=0.8) == [high.pk]
    assert names(max_score=0.56) == [low.pk]
    assert names(date_from=today + timedelta(days=1)) == []
    assert names(q="ext-low") == [low.pk]


def test_sla_state_colours_the_wait_against_the_projects_sla(make_item):
    assert review.sla_state(make_item(10)) == "ok"
    assert review.sla_state(make_item(35)) == "warn"
    assert review.sla_state(make_item(61)) == "late"


def test_neighbours_follow_the_queue_order(make_item, moderator):
    a, b, c = make_item(30), make_item(20), make_item(10)
    assert review.neighbours(moderator, "review", b) == (a, c)
    assert review.neighbours(moderator, "review", a) == (None, b)


# --- Dashboard ------------------------------------------------------------------------------


def test_the_dashboard_counts_decisions_automation_and_agreement_per_class(make_item, moderator, other_moderator,
                                                                           project):
    for decision in ("approved", "approved", "rejected"):
        audit.record("decision.routed", submission=make_item(5, decision=decision), decision=decision)
    audit.record("decision.routed", submission=make_item(5), decision="pending")  # not a decision
    one, two = make_item(40), make_item(30, scores={"yes_violence": 0.7})
    review.decide(moderator, one, "reject", seen=review.seen_token(one), reason="Nudity")
    review.decide(other_moderator, two, "approve", seen=review.seen_token(two))
    data = review.dashboard(hours=24)
    assert (data.automatic, data.human) == (3, 2)
    assert data.automatic_share == pytest.approx(0.6)
    assert dict(data.per_moderator) == {"mo": {"approved": 0, "rejected": 1, "escalated": 0},
                                        "ann": {"approved": 1, "rejected": 0, "escalated": 0}}
    assert dict(data.agreement) == {"general_nsfw": {"approved": 0, "rejected": 1, "escalated": 0},
                                    "yes_violence": {"approved": 1, "rejected": 0, "escalated": 0}}
    assert sum(human + auto for _, human, auto in data.per_hour) == 5
    backlog = {row.project.slug: row for row in data.backlog}
    assert backlog["portal"].pending == 1  # the pending one routed above
    assert backlog["portal"].oldest is not None
