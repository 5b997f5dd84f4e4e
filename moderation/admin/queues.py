"""The queues page, /admin/queues/: where work is piling up, at a glance.

Per project: how many submissions wait in each queue (queued, in flight,
awaiting Hive's callback, overdue callbacks, failed, pending review,
escalated) with the age of the oldest item, and what was completed in the last
hour and how it was decided; then the health of the django-q2 cluster. Every
number links to the list it counts.

It must cost the same with a million submissions as with a thousand:
- each queue count is bounded: it reads at most CAP + 1 index entries and
  shows "1000+" beyond, and each oldest item is one index lookup; the whole
  grid is one SQL statement of correlated subqueries;
- completed, approved and rejected are counted over the last hour (from the
  audit trail's time index), not over all time: their totals only ever grow
  and say nothing about work piling up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone

from moderation.models import AuditEvent, Decision, Project, Status, Submission
from moderation.services import operations
from moderation.services.counting import CappedCount, capped_count

CAP = 1000
# (column label, filter on Submission, list URL parameters); each a queue of work not yet done.
QUEUES: tuple[tuple[str, dict, dict], ...] = (
    ("Queued", {"status": Status.QUEUED}, {"status__exact": Status.QUEUED}),
    ("Processing", {"status": Status.PROCESSING}, {"status__exact": Status.PROCESSING}),
    ("Awaiting callback", {"status": Status.AWAITING_CALLBACK}, {"status__exact": Status.AWAITING_CALLBACK}),
    ("Failed", {"status": Status.FAILED}, {"status__exact": Status.FAILED}),
    ("Pending review", {"decision": Decision.PENDING}, {"decision__exact": Decision.PENDING}),
    ("Escalated", {"decision": Decision.ESCALATED}, {"decision__exact": Decision.ESCALATED}),
)
OVERDUE_LABEL = "Overdue callback"
# Completions in the last hour, in total and by the decision they got.
HOUR_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("Completed", None), ("Approved", Decision.APPROVED), ("Rejected", Decision.REJECTED),
    ("Held for review", Decision.PENDING),
)
RECENT_FAILURES = 5


def _capped(queryset: QuerySet) -> CappedCount:
    return CappedCount(queryset, CAP + 1)


def _oldest(queryset: QuerySet) -> Subquery:
    return Subquery(queryset.order_by("created_at").values("pk")[:1])


@dataclass
class Cell:
    count: int
    url: str
    oldest_at: datetime | None = None
    oldest_url: str = ""
    alarm: bool = False  # any at all needs the operator

    @property
    def capped(self) -> bool:
        return self.count > CAP

    @property
    def shown(self) -> str:
        return f"{CAP:,}+" if self.capped else f"{self.count:,}"


@dataclass
class ProjectRow:
    project: Project
    queues: dict[str, Cell]  # by column label, in QUEUES order with the overdue column
    last_hour: dict[str, Cell]


def queue_labels() -> list[str]:
    labels = [label for label, _, _ in QUEUES]
    return [*labels[:3], OVERDUE_LABEL, *labels[3:]]


def project_rows(now: datetime | None = None) -> list[ProjectRow]:
    """Every project with its numbers, in a fixed number of queries whatever
    the number of submissions."""
    now = now or timezone.now()
    mine = Submission.objects.filter(project=OuterRef("pk"))
    annotations: dict[str, Any] = {}
    for i, (_, lookup, _) in enumerate(QUEUES):
        annotations[f"n{i}"] = _capped(mine.filter(**lookup))
        annotations[f"o{i}"] = _oldest(mine.filter(**lookup))
    annotations["overdue"] = _capped(operations.overdue_callbacks(now).filter(project=OuterRef("pk")))
    projects = list(Project.objects.order_by("slug").annotate(**annotations))
    oldest_ids = [getattr(p, f"o{i}") for p in projects for i in range(len(QUEUES))]
    created = dict(Submission.objects.filter(pk__in=[i for i in oldest_ids if i]).values_list("pk", "created_at"))
    hour = completions_last_hour(now)
    changelist = reverse("admin:moderation_submission_changelist")
    return [_row(p, created, hour, changelist) for p in projects]


def completions_last_hour(now: datetime) -> Counter:
    """(project id, decision) → completions in the last hour, and (project id,
    None) → all of them. Read from the audit trail's time index: one hour of
    events, however large the tables are (the submission table has no index
    on completed_at)."""
    since = now - timedelta(hours=1)
    events = AuditEvent.objects.filter(action="result.received", created_at__gte=since).order_by()
    counts: Counter = Counter()
    for project_id, decision in events.values_list("project_id", "submission__decision").iterator(chunk_size=5000):
        counts[(project_id, None)] += 1
        counts[(project_id, decision)] += 1
    return counts


def _row(project: Project, created: dict, hour: Counter, changelist: str) -> ProjectRow:
    def link(**params) -> str:
        return f"{changelist}?{urlencode({'project__id__exact': project.pk, **params})}"

    queues = {}
    for i, (label, _, params) in enumerate(QUEUES):
        oldest_id = getattr(project, f"o{i}")
        queues[label] = Cell(getattr(project, f"n{i}"), link(**params), created.get(oldest_id),
                             f"{changelist}{oldest_id}/change/" if oldest_id else "")
    queues[OVERDUE_LABEL] = Cell(project.overdue, link(callback="overdue"), alarm=True)
    last_hour = {label: Cell(hour[(project.pk, decision)],
                             link(completed="1h", **({"decision__exact": decision} if decision else {})))
                 for label, decision in HOUR_COLUMNS}
    return ProjectRow(project, {label: queues[label] for label in queue_labels()}, last_hour)


# --- django-q2 ----------------------------------------------------------------------

@dataclass
class ClusterHealth:
    broker: str = ""
    queued: int | None = None
    in_progress: int | None = None
    clusters: list[dict] = field(default_factory=list)
    failures_last_hour: int | None = None
    recent_failures: list = field(default_factory=list)
    schedules: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    stats_need_shared_cache: bool = False


def cluster_health(now: datetime | None = None) -> ClusterHealth:
    """What the queue says about itself. Each part is read on its own, so a
    broker that is down shows as an error here instead of breaking the page."""
    from django_q.brokers import get_broker
    from django_q.models import Failure, Schedule

    now = now or timezone.now()
    health = ClusterHealth(links=_django_q_links())
    since = now - timedelta(hours=1)
    broker = None
    try:
        broker = get_broker()
        health.broker = broker.info() or type(broker).__name__
        health.queued = broker.queue_size()
        health.in_progress = broker.lock_size()
    except Exception as error:  # noqa: BLE001 - the page must show a broken broker, not crash on it
        health.errors.append(f"broker: {error.__class__.__name__}: {error}")
    _read_clusters(health, broker, now)
    try:
        health.failures_last_hour = _capped_count(Failure.objects.filter(stopped__gte=since))
        health.recent_failures = list(Failure.objects.order_by("-stopped")
                                      .only("id", "name", "func", "stopped", "result")[:RECENT_FAILURES])
        health.schedules = [{"name": s.name or s.func, "func": s.func, "next_run": s.next_run,
                             "late": s.next_run is not None and s.next_run < now - timedelta(minutes=2)}
                            for s in Schedule.objects.order_by("next_run")[:20]]
    except Exception as error:  # noqa: BLE001
        health.errors.append(f"task history: {error.__class__.__name__}: {error}")
    return health


def _read_clusters(health: ClusterHealth, broker, now: datetime) -> None:
    from django_q.status import Stat

    if broker is None:
        return
    try:
        stats = Stat.get_all(broker=broker)
    except Exception as error:  # noqa: BLE001
        health.errors.append(f"cluster stats: {error.__class__.__name__}: {error}")
        return
    for stat in stats:
        health.clusters.append({
            "id": str(stat.cluster_id), "host": stat.host, "status": stat.status,
            "workers": len(stat.workers), "uptime": _uptime(stat, now), "seen": stat.timestamp,
        })
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    health.stats_need_shared_cache = not stats and backend.endswith("LocMemCache")


def _uptime(stat, now: datetime) -> str:
    if not getattr(stat, "tob", None):
        return ""
    seconds = int((now - stat.tob).total_seconds())
    return f"{seconds // 3600}h {seconds % 3600 // 60}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60}s"


def _capped_count(queryset: QuerySet) -> int:
    return capped_count(queryset, CAP + 1)


def _django_q_links() -> dict[str, str]:
    links = {}
    for name in ("ormq", "failure", "schedule"):
        try:
            links[name] = reverse(f"admin:django_q_{name}_changelist")
        except NoReverseMatch:
            pass
    return links


# --- The page -----------------------------------------------------------------------------

def queues_view(request):
    if not request.user.has_perm("moderation.view_submission"):
        raise PermissionDenied
    now = timezone.now()
    rows = project_rows(now)
    context = {
        **admin.site.each_context(request),
        "title": "Queues",
        "now": now,
        "rows": rows,
        # What the workers got done: django-q2 stores no successful task (see the end of this module).
        "completed_last_hour": sum(row.last_hour["Completed"].count for row in rows),
        "completed_url": reverse("admin:moderation_submission_changelist") + "?completed=1h",
        "queue_columns": queue_labels(),
        "hour_columns": [label for label, _ in HOUR_COLUMNS],
        "health": cluster_health(now),
        "cap": CAP,
        "callback_log_url": reverse("admin:moderation_callbackreceipt_changelist"),
    }
    return TemplateResponse(request, "admin/moderation/queues.html", context)


def _with_queues_page(get_urls):
    """Mount the page at /admin/queues/ (name "admin:queues") on the default site."""
    def urls():
        return [path("queues/", admin.site.admin_view(queues_view), name="queues"), *get_urls()]
    return urls


admin.site.get_urls = _with_queues_page(admin.site.get_urls)

def hide_stored_successes() -> None:
    """Q_CLUSTER's save_limit -1 stores no successful task (it would double the
    writes of the busiest path), so django-q2's list of them is always empty:
    not shown, lest it read as "nothing succeeds". The queues page shows the
    work done from our own tables instead. Called from AppConfig.ready, once
    every app's admin module (django_q's comes after ours) has registered."""
    if settings.Q_CLUSTER.get("save_limit", 0) < 0:
        from django_q.models import Success

        if admin.site.is_registered(Success):
            admin.site.unregister(Success)
