"""Human review: who may see what, claiming work, decisions, presence.

Two moderators must never step on each other, so every change of a
submission's review state is a conditional UPDATE that names the state the
caller saw; zero rows updated means somebody else got there first. On
PostgreSQL the claim query also uses `SELECT ... FOR UPDATE SKIP LOCKED`, so
concurrent "Start reviewing" clicks walk past each other's rows instead of
queueing on the same one. The views stay thin: everything here is plain
functions on ids and users, callable from tests, commands and tasks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from moderation.models import (
    Actor,
    Decision,
    DecisionSource,
    ModeratorPreference,
    Project,
    Status,
    Submission,
)
from moderation.services import audit, notify
from moderation.services.counting import CappedCount

LEAD_GROUP = "lead"
MODERATOR_GROUP = "moderator"

# Seconds a viewer counts as "also viewing" after their last heartbeat.
PRESENCE_SECONDS = 45
# How long a skipped item stays out of the skipper's claim-next.
SKIP_MEMORY_SECONDS = 60 * 60
# Claim-next attempts before giving up under heavy contention (SQLite path).
CLAIM_ATTEMPTS = 20
GRID_BATCH = 24

APPROVE, REJECT, ESCALATE = "approve", "reject", "escalate"
ACTIONS = {APPROVE: Decision.APPROVED, REJECT: Decision.REJECTED, ESCALATE: Decision.ESCALATED}
VISUAL_KINDS = ("image", "gif")


class ReviewError(Exception):
    """A refusal the moderator should read; `message` says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StaleDecision(ReviewError):
    """Somebody else changed the item after this moderator's view was drawn."""


class NotAllowed(ReviewError):
    pass


class InvalidDecision(ReviewError):
    pass


def lease_minutes() -> int:
    return int(getattr(settings, "REVIEW_LEASE_MINUTES", 10))


def lease_until(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(minutes=lease_minutes())


# --- Roles and visibility ---------------------------------------------------------


def role(user) -> str | None:
    """"lead", "moderator" or None. Superusers are leads: they run the place.

    Remembered on the user object, which lives for one request: a page asks
    several times and should query the groups once."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return LEAD_GROUP
    if not hasattr(user, "_portal_role"):
        names = set(user.groups.values_list("name", flat=True))
        user._portal_role = LEAD_GROUP if LEAD_GROUP in names else (
            MODERATOR_GROUP if MODERATOR_GROUP in names else None)
    return user._portal_role


def is_lead(user) -> bool:
    return role(user) == LEAD_GROUP


def reviewable_projects(user) -> QuerySet[Project]:
    """Leads see every project; a moderator the projects granted to them."""
    who = role(user)
    if who == LEAD_GROUP:
        return Project.objects.all()
    if who == MODERATOR_GROUP:
        return Project.objects.filter(reviewers=user)
    return Project.objects.none()


def visible_submissions(user) -> QuerySet[Submission]:
    who = role(user)
    if who == LEAD_GROUP:
        return Submission.objects.all()
    if who == MODERATOR_GROUP:
        return Submission.objects.filter(project_id__in=Project.objects.filter(reviewers=user).values("pk"))
    return Submission.objects.none()


def get_visible(user, submission_id) -> Submission | None:
    """The submission if this user may review its project, else None (a 404:
    a moderator learns nothing about projects not granted to them)."""
    try:
        pk = uuid.UUID(str(submission_id))
    except ValueError:
        return None
    return (visible_submissions(user).select_related("project", "decided_by", "claimed_by")
            .filter(pk=pk).first())


def preferences(user) -> ModeratorPreference:
    prefs, _ = ModeratorPreference.objects.get_or_create(user=user)
    return prefs


# --- Claims -------------------------------------------------------------------------


def _free_for(user, now: datetime) -> Q:
    return Q(claimed_by__isnull=True) | Q(claimed_until__lt=now) | Q(claimed_by=user)


def _claimable(user, decision: str, project_id=None, kinds: Sequence[str] | None = None) -> QuerySet[Submission]:
    qs = visible_submissions(user).filter(decision=decision)
    if decision == Decision.PENDING:
        qs = qs.filter(status=Status.COMPLETED)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if kinds:
        qs = qs.filter(media_kind__in=kinds)
    return qs


def _take(pk, user, decision: str, now: datetime) -> bool:
    """The conditional UPDATE that makes a claim: holds on every database."""
    return bool(
        Submission.objects.filter(_free_for(user, now), pk=pk, decision=decision)
        .update(claimed_by=user, claimed_until=lease_until(now))
    )


def _oldest_free_pk(candidates: QuerySet[Submission], user, now: datetime, exclude: Iterable):
    qs = candidates.filter(Q(claimed_by__isnull=True) | Q(claimed_until__lt=now)).exclude(pk__in=list(exclude))
    qs = qs.order_by("created_at", "id")
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True)
    return qs.values_list("pk", flat=True).first()


def claim_next(user, *, filters: QueueFilters | None = None, kinds: Sequence[str] | None = None,
               escalated: bool = False) -> Submission | None:
    """Hand this user the oldest item nobody holds, under a lease.

    An item the user already holds comes first (a reload or a second tab
    resumes the same work). Items the user skipped within the last hour are
    passed over. Escalations are claimed the same way, by leads only.
    `filters` are the queue list's, so the item claimed is the first one that
    list shows.
    """
    decision = Decision.ESCALATED if escalated else Decision.PENDING
    if escalated and not is_lead(user):
        return None
    now = timezone.now()
    candidates = _apply_filters(_claimable(user, decision, kinds=kinds), filters or QueueFilters(),
                                search_only=False)
    held = (candidates.filter(claimed_by=user, claimed_until__gte=now).order_by("created_at", "id")
            .values_list("pk", flat=True).first())
    if held is not None:
        return Submission.objects.select_related("project").get(pk=held)
    skipped = skipped_ids(user)
    for _ in range(CLAIM_ATTEMPTS):
        with transaction.atomic():
            pk = _oldest_free_pk(candidates, user, now, skipped)
            if pk is None:
                return None
            if _take(pk, user, decision, now):
                break
        now = timezone.now()
    else:
        return None
    audit.record("review.claimed", actor=Actor.MODERATOR, submission_id=pk, user=user,
                 project_id=Submission.objects.filter(pk=pk).values_list("project_id", flat=True).first(),
                 until=lease_until(now).isoformat())
    return Submission.objects.select_related("project").get(pk=pk)


def claim_batch(user, *, limit: int = GRID_BATCH, project_id=None,
                kinds: Sequence[str] = VISUAL_KINDS) -> list[Submission]:
    """Up to `limit` pending items for the grid, each claimed like claim_next."""
    now = timezone.now()
    candidates = _claimable(user, Decision.PENDING, project_id, kinds)
    held = list(candidates.filter(claimed_by=user, claimed_until__gte=now).order_by("created_at", "id")
                .values_list("pk", flat=True)[:limit])
    skipped = skipped_ids(user)
    attempts = 0
    while len(held) < limit and attempts < limit + CLAIM_ATTEMPTS:
        attempts += 1
        with transaction.atomic():
            pk = _oldest_free_pk(candidates, user, now, [*skipped, *held])
            if pk is None:
                break
            if _take(pk, user, Decision.PENDING, now):
                held.append(pk)
    items = Submission.objects.select_related("project").in_bulk(held)
    return [items[pk] for pk in held if pk in items]


def claim(user, submission: Submission) -> bool:
    """Take the item on screen, if nobody else holds it."""
    if submission.decision not in (Decision.PENDING, Decision.ESCALATED):
        return False
    if submission.decision == Decision.ESCALATED and not is_lead(user):
        return False
    taken = _take(submission.pk, user, submission.decision, timezone.now())
    if taken:
        audit.record("review.claimed", actor=Actor.MODERATOR, submission=submission, user=user)
    return taken


def release(user, submission: Submission, *, action: str = "review.released") -> bool:
    """Give back this user's claim (a lead may give back anybody's)."""
    qs = Submission.objects.filter(pk=submission.pk, claimed_by__isnull=False)
    if not is_lead(user):
        qs = qs.filter(claimed_by=user)
    released = bool(qs.update(claimed_by=None, claimed_until=None))
    if released:
        audit.record(action, actor=Actor.MODERATOR, submission=submission, user=user)
    return released


def skip(user, submission: Submission) -> None:
    """Release the item and keep it out of this user's claim-next for an hour,
    so "skip" does not hand the same item straight back."""
    key = _skip_key(user)
    ids = cache.get(key) or []
    ids = [i for i in ids if i != str(submission.pk)][-199:] + [str(submission.pk)]
    cache.set(key, ids, SKIP_MEMORY_SECONDS)
    release(user, submission, action="review.skipped")


def skipped_ids(user) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in cache.get(_skip_key(user)) or []]


def _skip_key(user) -> str:
    return f"portal:skipped:{user.pk}"


def assign(lead, submission: Submission, moderator) -> None:
    """A lead hands an open item to a moderator who may review its project."""
    if not is_lead(lead):
        raise NotAllowed("Only leads reassign items.")
    if submission.decision not in (Decision.PENDING, Decision.ESCALATED):
        raise InvalidDecision("This item is already decided.")
    if not visible_submissions(moderator).filter(pk=submission.pk).exists():
        raise InvalidDecision(f"{moderator} may not review project {submission.project.slug}.")
    if submission.decision == Decision.ESCALATED and not is_lead(moderator):
        # They could neither decide it nor give it back: it would sit in their Mine.
        raise InvalidDecision(f"{moderator} is not a lead: only a lead can decide an escalated item.")
    Submission.objects.filter(pk=submission.pk, decision=submission.decision).update(
        claimed_by=moderator, claimed_until=lease_until())
    audit.record("review.assigned", actor=Actor.MODERATOR, submission=submission, user=lead,
                 to=moderator.get_username())


# --- Decisions ------------------------------------------------------------------------


def seen_token(submission: Submission) -> str:
    """What the moderator saw: the decision and when it was made. A decision
    names it, and is refused if the row no longer matches."""
    decided = submission.decided_at.isoformat() if submission.decided_at else ""
    return f"{submission.decision or ''}@{decided}"


def _parse_seen(token: str) -> tuple[str | None, datetime | None]:
    decision, _, decided = (token or "").partition("@")
    if decision not in Decision.values:
        raise StaleDecision("This page is out of date; reload it and decide again.")
    when = parse_datetime(decided) if decided else None
    return decision, when


def _check_allowed(user, submission: Submission, action: str, seen_decision: str) -> None:
    who = role(user)
    if who is None:
        raise NotAllowed("You have no reviewer role.")
    if seen_decision == Decision.ESCALATED and who != LEAD_GROUP:
        raise NotAllowed("Escalated items are decided by a lead.")
    if seen_decision not in (Decision.PENDING, Decision.ESCALATED):
        raise StaleDecision(_already(submission))
    if action == ESCALATE and seen_decision == Decision.ESCALATED:
        raise InvalidDecision("This item is already escalated.")


def _validate(submission: Submission, action: str, reason: str, note: str) -> tuple[str, str]:
    if action not in ACTIONS:
        raise InvalidDecision("Choose approve, reject or escalate.")
    reason, note = (reason or "").strip(), (note or "").strip()
    if action == REJECT:
        if not reason:
            raise InvalidDecision("Choose a reason to reject.")
        if reason not in reject_reasons(submission.project):
            raise InvalidDecision(f"“{reason}” is not one of this project's reasons.")
    elif action == ESCALATE:
        if not note:
            raise InvalidDecision("Say why you escalate: a lead will read the note.")
        reason = ""
    else:
        reason = ""
    return reason, note[:4000]


def reject_reasons(project: Project) -> list[str]:
    return list(project.reject_reasons) or ["Policy violation"]


def triggered_classes(submission: Submission) -> list[str]:
    """Classes whose score reached the project's review (or reject) bound:
    why threshold routing sent the item to a human."""
    scores = submission.scores or {}
    hits = []
    for cls, bounds in (submission.project.thresholds or {}).items():
        score = scores.get(cls)
        bound = bounds.get("review", bounds.get("reject"))
        if score is not None and bound is not None and score >= bound:
            hits.append(cls)
    return sorted(hits)


def decide(user, submission: Submission, action: str, *, seen: str, reason: str = "", note: str = "",
           bulk: bool = False) -> Submission:
    """Apply a moderator's decision once.

    Refused (StaleDecision) when the row no longer matches what the moderator
    saw, or when another moderator holds a live claim on it; nothing is
    written then. Leads may decide over another's claim (that is reassignment).
    """
    seen_decision, seen_at = _parse_seen(seen)
    _check_allowed(user, submission, action, seen_decision)
    reason, note = _validate(submission, action, reason, note)
    now = timezone.now()
    new = ACTIONS[action]
    match = Submission.objects.filter(pk=submission.pk, decision=seen_decision)
    match = match.filter(decided_at=seen_at) if seen_at else match.filter(decided_at__isnull=True)
    if not is_lead(user):
        match = match.filter(_free_for(user, now))
    with transaction.atomic():
        updated = match.update(
            decision=new, decision_source=DecisionSource.MODERATOR, decision_reason=reason,
            decision_note=note, decided_by=user, decided_at=now, claimed_by=None, claimed_until=None,
            updated_at=now,
        )
        if not updated:
            raise StaleDecision(_why_refused(submission.pk, user, now))
        audit.record("decision.moderator", actor=Actor.MODERATOR, submission=submission, user=user,
                     decision=new, previous=seen_decision, reason=reason, note=note, bulk=bulk,
                     triggered=triggered_classes(submission), top_class=submission.top_class,
                     top_score=submission.top_score)
        notify.submission_changed(submission.pk, notify.DECIDED)
    submission.refresh_from_db()
    return submission


def _why_refused(pk, user, now: datetime) -> str:
    current = Submission.objects.select_related("decided_by", "claimed_by").get(pk=pk)
    if current.claimed_by_id and current.claimed_by_id != user.pk and current.claimed_until \
            and current.claimed_until >= now and current.decision in (Decision.PENDING, Decision.ESCALATED):
        return (f"{current.claimed_by} is reviewing this item (claimed until "
                f"{timezone.localtime(current.claimed_until):%H:%M}); your decision was not applied.")
    return _already(current)


def _already(submission: Submission) -> str:
    who = submission.decided_by or submission.get_decision_source_display() or "someone"
    state = submission.get_decision_display() if submission.decision else "changed"
    return f"Not applied: {who} already decided this item ({state.lower()}). Nothing was changed twice."


@dataclass
class BulkOutcome:
    decided: list[Submission] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (submission id, why)


def bulk_decide(user, items: Sequence[tuple[Submission, str]], action: str, *, reason: str = "",
                note: str = "") -> BulkOutcome:
    """The grid: one decision for many items, each applied (or refused) alone."""
    outcome = BulkOutcome()
    for submission, seen in items:
        try:
            outcome.decided.append(decide(user, submission, action, seen=seen, reason=reason, note=note,
                                          bulk=True))
        except ReviewError as error:
            outcome.refused.append((str(submission.pk), error.message))
    return outcome


# --- Presence ("also viewing") ------------------------------------------------------------


def _presence_key(submission_id) -> str:
    return f"portal:viewing:{submission_id}"


def _viewer_key(submission_id, user_pk) -> str:
    return f"portal:viewing:{submission_id}:{user_pk}"


def heartbeat(user: AbstractBaseUser, submission_id) -> list[str]:
    """Note that `user` has this item open; answer who else has.

    Each viewer has a key of their own, which only they write and which expires
    on its own: leaving deletes it, and no other viewer's heartbeat can bring it
    back. The item's list of who has looked is only an index of those keys; a
    lost update to it delays a name by one beat, and never shows one who left.
    """
    index_key = _presence_key(submission_id)
    me = str(user.pk)
    cache.set(_viewer_key(submission_id, me), user.get_username(), PRESENCE_SECONDS)
    index = set(cache.get(index_key) or ())
    alive = cache.get_many([_viewer_key(submission_id, uid) for uid in index - {me}])
    names = {key.rsplit(":", 1)[1]: name for key, name in alive.items()}
    cache.set(index_key, sorted({me, *names}), PRESENCE_SECONDS * 2)
    return sorted(names.values())


def leave(user, submission_id) -> None:
    cache.delete(_viewer_key(submission_id, user.pk))


# --- Queues ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSpec:
    name: str
    title: str
    order: str  # a field; "-" for newest first
    leads_only: bool = False
    help: str = ""


QUEUES = {
    "review": QueueSpec("review", "Needs review", "created_at", help="Oldest first; age against the project's SLA."),
    "escalated": QueueSpec("escalated", "Escalated", "created_at", leads_only=True,
                           help="Items a moderator sent up, oldest first."),
    "mine": QueueSpec("mine", "Mine", "created_at", help="Items you hold a claim on."),
    "hive": QueueSpec("hive", "Awaiting Hive", "created_at", help="Queued, in flight, or waiting for a callback."),
    "failed": QueueSpec("failed", "Failed", "-created_at", help="Hive could not score these; newest first."),
    "decided": QueueSpec("decided", "Recently decided", "-decided_at", help="Newest decision first."),
    "search": QueueSpec("search", "Search", "-created_at",
                        help="By submission id (its first 8 characters will do) or external id."),
}


# Rows a queue's pages reach; past them, the filters narrow the queue.
QUEUE_DEPTH = 10_000


@dataclass
class QueueFilters:
    project: str = ""
    cls: str = ""
    min_score: float | None = None
    max_score: float | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    q: str = ""


@dataclass
class QueuePage:
    spec: QueueSpec
    items: list[Submission]
    page: int
    has_more: bool
    capped: bool = False  # more rows lie past QUEUE_DEPTH, where the pages stop


def queue_queryset(user, name: str, filters: QueueFilters | None = None) -> QuerySet[Submission]:
    """The rows of one queue, filtered and ordered; never counted."""
    spec = QUEUES[name]
    if spec.leads_only and not is_lead(user):
        return Submission.objects.none()
    now = timezone.now()
    qs = visible_submissions(user)
    qs = {
        "review": lambda: qs.filter(decision=Decision.PENDING, status=Status.COMPLETED),
        "escalated": lambda: qs.filter(decision=Decision.ESCALATED),
        "mine": lambda: qs.filter(claimed_by=user, claimed_until__gte=now,
                                  decision__in=[Decision.PENDING, Decision.ESCALATED]),
        "hive": lambda: qs.filter(status__in=[Status.QUEUED, Status.PROCESSING, Status.AWAITING_CALLBACK]),
        "failed": lambda: qs.filter(status=Status.FAILED),
        "decided": lambda: qs.filter(decision__in=[Decision.APPROVED, Decision.REJECTED],
                                     decided_at__isnull=False),
        "search": lambda: qs,
    }[name]()
    qs = _apply_filters(qs, filters or QueueFilters(), search_only=name == "search")
    tiebreak = "-id" if spec.order.startswith("-") else "id"
    return qs.select_related("project", "claimed_by", "decided_by").order_by(spec.order, tiebreak)


def _apply_filters(qs: QuerySet[Submission], f: QueueFilters, *, search_only: bool) -> QuerySet[Submission]:
    if f.q:
        qs = qs.filter(_id_or_external_id(f.q.strip()))
    elif search_only:
        return qs.none()
    if f.project:
        qs = qs.filter(project__slug=f.project)
    if f.cls:
        qs = qs.filter(top_class=f.cls)
    if f.min_score is not None:
        qs = qs.filter(top_score__gte=f.min_score)
    if f.max_score is not None:
        qs = qs.filter(top_score__lte=f.max_score)
    if f.date_from:
        qs = qs.filter(created_at__gte=f.date_from)
    if f.date_to:
        qs = qs.filter(created_at__lt=f.date_to)
    return qs


# The short ids the portal shows ("Approved: 2b634c0c.") are the id's first 8 hex digits.
_ID_PREFIX = re.compile(r"[0-9a-f]{8,32}")


def _id_or_external_id(q: str) -> Q:
    """A whole submission id, the start of one (8 hex digits or more, dashes
    optional), or an external id. A start is the range of ids it begins, so
    both databases read it from the primary key's index (a LIKE over the id
    would read every row)."""
    try:
        return Q(pk=uuid.UUID(q))
    except ValueError:
        pass
    digits = q.replace("-", "").lower()
    if not _ID_PREFIX.fullmatch(digits):
        return Q(external_id=q)
    low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
    return Q(pk__gte=low, pk__lte=high) | Q(external_id=q)


def queue_page(user, name: str, filters: QueueFilters | None = None, *, page: int = 1,
               per_page: int = 50) -> QueuePage:
    """One page, fetched as limit + 1 rows: "has more" without COUNT(*).

    Pages start within the first QUEUE_DEPTH rows: an OFFSET reads and drops
    every row before it, so a deeper page (or a ?page= too big for the
    database's integers) is empty, like a page past the end."""
    page = max(1, page)
    start = (page - 1) * per_page
    if start >= QUEUE_DEPTH:
        return QueuePage(QUEUES[name], [], page, False)
    rows = list(queue_queryset(user, name, filters)[start:start + per_page + 1])
    more = len(rows) > per_page
    reachable = start + per_page < QUEUE_DEPTH
    return QueuePage(QUEUES[name], rows[:per_page], page, more and reachable, capped=more and not reachable)


def neighbours(user, name: str, submission: Submission,
               filters: QueueFilters | None = None) -> tuple[Submission | None, Submission | None]:
    """(previous, next) item in the queue's order, within the list's filters,
    for j/k on the review screen."""
    if name not in QUEUES or name == "search":
        return None, None
    spec = QUEUES[name]
    field_name = spec.order.lstrip("-")
    value = getattr(submission, field_name)
    if value is None:
        return None, None
    qs = queue_queryset(user, name, filters).exclude(pk=submission.pk)
    # (field, id) past this item's. The plain bound on the field (implied by the OR)
    # is what makes it one index range read in queue order up to the first row: with
    # the OR alone SQLite collected the whole queue on that side and sorted it.
    after = Q(**{f"{field_name}__gte": value}) & (
        Q(**{f"{field_name}__gt": value}) | Q(**{field_name: value, "id__gt": submission.pk}))
    before = Q(**{f"{field_name}__lte": value}) & (
        Q(**{f"{field_name}__lt": value}) | Q(**{field_name: value, "id__lt": submission.pk}))
    if spec.order.startswith("-"):
        after, before = before, after
    nxt = qs.filter(after).first()
    prev = qs.filter(before).order_by(*[_reverse(o) for o in qs.query.order_by]).first()
    return prev, nxt


def _reverse(order: str) -> str:
    return order[1:] if order.startswith("-") else f"-{order}"


def sla_state(submission: Submission, now: datetime | None = None) -> str:
    """ok / warn / late: the item's wait against its project's review SLA."""
    since = submission.completed_at or submission.created_at
    minutes = ((now or timezone.now()) - since).total_seconds() / 60
    sla = submission.project.review_sla_minutes or 60
    if minutes >= sla:
        return "late"
    return "warn" if minutes >= sla / 2 else "ok"


# --- Dashboard ---------------------------------------------------------------------------

BACKLOG_CAP = 10_000


@dataclass
class Backlog:
    project: Project
    pending: int
    capped: bool
    escalated: int
    oldest: datetime | None

    @property
    def oldest_minutes(self) -> float | None:
        if self.oldest is None:
            return None
        return (timezone.now() - self.oldest).total_seconds() / 60

    @property
    def late(self) -> bool:
        minutes = self.oldest_minutes
        return minutes is not None and minutes >= (self.project.review_sla_minutes or 60)


def backlog() -> list[Backlog]:
    """Per project: pending items (counted up to a cap, on the review index),
    escalations, and the oldest waiting item. One statement of correlated
    subqueries: the dashboard's queries do not grow with the projects, and
    each count still stops at the cap."""
    mine = Submission.objects.filter(project=OuterRef("pk"))
    pending = mine.filter(decision=Decision.PENDING, status=Status.COMPLETED)
    projects = Project.objects.order_by("slug").annotate(
        pending_count=CappedCount(pending, BACKLOG_CAP + 1),
        escalated_count=CappedCount(mine.filter(decision=Decision.ESCALATED), BACKLOG_CAP + 1),
        oldest_pending=Subquery(pending.order_by("created_at").values("created_at")[:1]),
    )
    return [Backlog(p, min(p.pending_count, BACKLOG_CAP), p.pending_count > BACKLOG_CAP, p.escalated_count,
                    p.oldest_pending) for p in projects]


@dataclass
class Dashboard:
    since: datetime
    hours: int
    backlog: list[Backlog]
    per_hour: list[tuple[datetime, int, int]]  # (hour, human, automatic)
    per_moderator: list[tuple[str, dict[str, int]]]
    automatic: int
    human: int
    agreement: list[tuple[str, dict[str, int]]]  # (class, {approved, rejected, escalated})

    @property
    def automatic_share(self) -> float | None:
        total = self.automatic + self.human
        return self.automatic / total if total else None


# Rows read per dashboard for the Python-side tallies; the window keeps it small.
DASHBOARD_EVENT_LIMIT = 50_000


def dashboard(hours: int = 24, now: datetime | None = None) -> Dashboard:
    """Throughput and agreement from the audit trail (indexed by time), over
    the last `hours`: decisions are events, so no scan of submissions."""
    from moderation.models import AuditEvent

    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    events = (AuditEvent.objects.filter(created_at__gte=since, action__in=["decision.moderator", "decision.routed"])
              .order_by().values_list("action", "created_at", "user__username", "data")[:DASHBOARD_EVENT_LIMIT])
    start = since.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    hourly = {start + timedelta(hours=i): [0, 0] for i in range(-1, hours)}
    per_moderator: dict[str, dict[str, int]] = {}
    agreement: dict[str, dict[str, int]] = {}
    automatic = human = 0
    for action, created, username, data in events:
        data = data or {}
        decision = data.get("decision")
        hour = created.replace(minute=0, second=0, microsecond=0)
        if action == "decision.routed":
            if decision not in (Decision.APPROVED, Decision.REJECTED):
                continue
            automatic += 1
            hourly.setdefault(hour, [0, 0])[1] += 1
            continue
        human += 1
        hourly.setdefault(hour, [0, 0])[0] += 1
        tally = per_moderator.setdefault(username or "(deleted user)", {"approved": 0, "rejected": 0,
                                                                        "escalated": 0})
        tally[decision] = tally.get(decision, 0) + 1
        if data.get("previous") == Decision.PENDING:
            for cls in data.get("triggered") or []:
                row = agreement.setdefault(cls, {"approved": 0, "rejected": 0, "escalated": 0})
                row[decision] = row.get(decision, 0) + 1
    return Dashboard(
        since=since, hours=hours, backlog=backlog(),
        per_hour=[(hour, h, a) for hour, (h, a) in sorted(hourly.items()) if hour >= since - timedelta(hours=1)],
        per_moderator=sorted(per_moderator.items(), key=lambda kv: -sum(kv[1].values())),
        automatic=automatic, human=human,
        agreement=sorted(agreement.items(), key=lambda kv: -sum(kv[1].values())),
    )
