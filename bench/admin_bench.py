"""The operator admin and the moderators' portal at 1k vs 1M submissions:
same speed, same queries.

Fills a throwaway database with a thousand submissions, measures the admin's
submission list, callback log and queues page, and the portal's pages (below),
with Django's test client (best and median time over repeated requests, and
the number of SQL queries), then refills it with a million and measures again.
The goal (issue 6 for the admin, issue 8 for the portal): each page at most
1.5x slower at 1M, with the same number of queries. Exits 1 when a goal is
missed.

    python bench/admin_bench.py                        # SQLite file in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hp python bench/admin_bench.py
        # PostgreSQL: works in a throwaway database "test_<name>", dropped at the end

The data has the shape of a platform that has run for half a year: a fixed
"live" slice from the last hour (queued, in flight, awaiting callbacks, some
overdue, some failed, a review queue), and history behind it (completed and
decided; 1% failed for good and never retried, so old failures pile up).
Only history grows from 1k to 1M: the live slice, like the traffic and the
queues that moderators and workers keep draining, is the same at both sizes.
Async submissions have a callback receipt each (a few duplicates and forgeries);
every completion has its `result.received` audit event.

The moderators' portal (issue 8) is measured on the same data, logged in as a
moderator (group "moderator", granted 4 of the 7 projects; not a superuser),
and as a lead (group "lead", not a superuser) for the lead-only pages: the
home page, the review queue, the dashboard, search by id, the review screen
of the oldest pending item and "Start reviewing" (a POST that claims the
oldest free item; the claim is given back, untimed, after each request so the
queue never drains). The live slice's review work is what moderators see: its
completions have a model result and their routing events, and part of its
decisions were made by moderators.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Page:
    """One measured request. `url` may name {some_id} (a history submission
    in the moderator's projects), {some_external_id} (its external id),
    {review_item} (the oldest item of the moderator's review queue) or
    {decided_item} (the newest of the moderator's decided queue)."""

    url: str
    who: str = "admin"  # admin (superuser), moderator or lead (both plain users with the group)
    method: str = "GET"
    follow: bool = False  # follow redirects: the time and queries of the whole chain
    status: int = 200
    location: str = ""  # a redirect must lead to a URL containing this (placeholders allowed)
    release: bool = False  # give back the moderator's claims after each request (untimed)


PAGES = {
    "submission list": Page("/admin/moderation/submission/"),
    "callback log": Page("/admin/moderation/callbackreceipt/"),
    "queues page": Page("/admin/queues/"),
}
# Not goals, printed for information: the drill-downs an operator clicks most.
EXTRA_PAGES = {
    "failed submissions": Page("/admin/moderation/submission/?status__exact=failed"),
    "overdue callbacks": Page("/admin/moderation/submission/?callback=overdue"),
    "search by id": Page("/admin/moderation/submission/?q={some_id}"),
}
# The moderators' portal (issue 8), as a moderator unless it is a lead's page.
PORTAL_PAGES = {
    "portal home": Page("/portal/", who="moderator", follow=True),  # lands on the review queue
    "review queue": Page("/portal/queue/review/", who="moderator"),
    "dashboard": Page("/portal/dashboard/", who="lead"),
    "portal search by id": Page("/portal/search/?q={some_id}", who="moderator", status=302,
                                location="/portal/item/{some_id}/"),
    "review screen": Page("/portal/item/{review_item}/?queue=review", who="moderator"),
    "start reviewing": Page("/portal/start/", who="moderator", method="POST", status=302,
                            location="/portal/item/{review_item}/", release=True),
}
# Not goals: the other queue tabs, search by external id, a decided item.
PORTAL_EXTRA_PAGES = {
    "escalated queue": Page("/portal/queue/escalated/", who="lead"),
    "mine queue": Page("/portal/queue/mine/", who="moderator"),
    "hive queue": Page("/portal/queue/hive/", who="moderator"),
    "failed queue": Page("/portal/queue/failed/", who="moderator"),
    "decided queue": Page("/portal/queue/decided/", who="moderator"),
    "search by external id": Page("/portal/search/?q={some_external_id}", who="moderator", status=302,
                                  location="/portal/item/{some_id}/"),
    "decided item": Page("/portal/item/{decided_item}/?queue=decided", who="moderator"),
}
MODERATOR_PROJECTS = ("visual-sync", "visual-async", "visual-review", "text")
MAX_RATIO = 1.5
LIVE = 300  # the live slice, identical at every size
CHUNK = 10_000
HISTORY_DAYS = 180

PROJECTS = [  # slug, endpoint type, review mode, delivery
    ("visual-sync", "visual", "model_only", "sync"),
    ("visual-async", "visual", "model_only", "async"),
    ("visual-review", "visual", "model_manual_review", "async"),
    ("text", "text", "model_only", "sync"),
    ("speech", "speech", "model_only", "async"),
    ("ocr", "ocr", "model_only", "sync"),
    ("logo", "logo", "model_only", "async"),
]


def configure() -> tuple[str, Path]:
    """Settings before Django starts: the suite's settings (demo mode, plain
    static files), a temp SQLite file unless DATABASE_URL names PostgreSQL."""
    workdir = Path(tempfile.mkdtemp(prefix="hiveportal-adminbench-"))
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'unused.sqlite3'}"
    os.environ.setdefault("MEDIA_ROOT", str(workdir / "media"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "hiveportal.test_settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.db import connection

    if connection.vendor == "sqlite":
        connection.settings_dict["TEST"]["NAME"] = str(workdir / "bench.sqlite3")
    return connection.vendor, workdir


# --- Filling -------------------------------------------------------------------------------

class Filler:
    """Bulk inserts with prepared column values: a million model instances
    through the ORM would take far longer than the measurement."""

    def __init__(self, now: datetime, moderator_ids: list[int]):
        from django.db import connection

        from moderation.models import AuditEvent, CallbackReceipt, Partner, Project, Result, Submission

        self.connection = connection
        self.now = now
        self.moderator_ids = moderator_ids  # who made the live slice's human decisions
        self.rng = random.Random(6)
        self.partner = Partner.objects.get_or_create(name="bench-partner")[0]
        self.projects = []
        for slug, endpoint_type, review_mode, delivery in PROJECTS:
            project, _ = Project.objects.get_or_create(slug=slug, defaults=dict(
                name=slug, endpoint_type=endpoint_type, review_mode=review_mode, delivery=delivery,
                hive_api_key=f"sim-{endpoint_type}-bench", thresholds={"general_nsfw": {"review": 0.5,
                                                                                         "reject": 0.9}},
                reject_reasons=["Nudity", "Violence", "Spam"]))
            self.projects.append(project)
        self.partner.projects.set(self.projects)
        self.sub_table = Submission._meta.db_table
        self.receipt_table = CallbackReceipt._meta.db_table
        self.event_table = AuditEvent._meta.db_table
        self.result_table = Result._meta.db_table
        self.pk = Submission._meta.pk
        json_field = Submission._meta.get_field("metadata")
        self.empty_json = json_field.get_db_prep_save({}, connection)
        self.scores = json_field.get_db_prep_save({"general_nsfw": 0.1, "general_not_nsfw_not_suggestive": 0.9},
                                                  connection)
        # What threshold routing sends to a human: general_nsfw between review (0.5) and reject (0.9).
        self.review_scores_raw = {"general_nsfw": 0.72, "general_not_nsfw_not_suggestive": 0.28}
        self.review_scores = json_field.get_db_prep_save(self.review_scores_raw, connection)
        self.json = lambda value: json_field.get_db_prep_save(value, connection)
        body = (REPO / "tests" / "fixtures" / "hive" / "image.json").read_text()
        self.body = json.dumps(json.loads(body), separators=(",", ":"))
        self.serial = 0
        self.live_project = None  # set while the live slice is filled

    def dt(self, value: datetime | None):
        return None if value is None else self.connection.ops.adapt_datetimefield_value(value)

    def clear(self) -> None:
        with self.connection.cursor() as cursor:
            for table in (self.event_table, self.receipt_table, self.result_table, self.sub_table):
                cursor.execute(f"DELETE FROM {table}")

    def fill(self, history: int, live: int) -> None:
        """History oldest first, then the live slice: ids and times grow
        together, as they do in production."""
        with self._big_cache():
            self._fill(history, live)

    @contextmanager
    def _big_cache(self):
        """SQLite's 2 MB page cache makes a million random-UUID index inserts
        crawl; the pages measured afterwards get the default cache again."""
        if self.connection.vendor != "sqlite":
            yield
            return
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            default = cursor.fetchone()[0]
            cursor.execute("PRAGMA cache_size = -1048576")
        try:
            yield
        finally:
            with self.connection.cursor() as cursor:
                cursor.execute(f"PRAGMA cache_size = {int(default)}")

    def _fill(self, history: int, live: int) -> None:
        start = self.now - timedelta(days=HISTORY_DAYS)
        step = (timedelta(days=HISTORY_DAYS) - timedelta(hours=6)) / max(history, 1)
        done = 0
        while done < history:
            size = min(CHUNK, history - done)
            self._insert([self._history_row(start + step * (done + i)) for i in range(size)])
            done += size
            if history >= 100_000 and done % 100_000 == 0:
                print(f"  … {done:,} of {history:,} history rows", flush=True)
        self._insert([self._live_row(i) for i in range(live)])
        self.live_project = None

    # One row: (submission values, receipt values or None, completion time or None, project id,
    # the live slice's (result, events) or None).

    def _history_row(self, created: datetime):
        roll = self.rng.random()
        if roll < 0.01:  # failed for good and never retried: these pile up with the years
            return self._row(created, "failed", None, completed=created + timedelta(minutes=20))
        decision = "rejected" if roll < 0.11 else "approved"
        return self._row(created, "completed", decision, completed=created + timedelta(seconds=30))

    def _live_row(self, i: int):
        created = self.now - timedelta(minutes=55) + timedelta(seconds=10 * i)
        # Every project gets every kind of live row (a plain rotation would give all of
        # one decision, i % 7 below, to one project).
        self.live_project = self.projects[(i // 7 + i) % len(self.projects)]
        if i < 40:
            return self._row(created, "queued", None)
        if i < 50:
            return self._row(created, "processing", None, lease=self.now + timedelta(minutes=2))
        if i < 90:
            overdue = i < 60  # dispatched hours ago; Hive never called back
            dispatched = self.now - timedelta(hours=3) if overdue else created
            return self._row(created - (timedelta(hours=3) if overdue else timedelta()), "awaiting_callback", None,
                             dispatched=dispatched, force_async=True)
        if i < 110:
            return self._row(created, "failed", None, completed=created + timedelta(minutes=1))
        decision = ("pending", "pending", "escalated", "rejected", "approved", "approved", "approved")[i % 7]
        # Thresholds sent five of every seven to a human: two still wait, moderators have
        # escalated one, rejected one and approved one. The other two were approved automatically.
        by = self.moderator_ids[i % len(self.moderator_ids)] if i % 7 in (2, 3, 4) else None
        return self._row(created, "completed", decision, completed=created + timedelta(seconds=20),
                         reviewed=i % 7 < 5, decided_by=by, live=True)

    def _row(self, created, status, decision, *, completed=None, lease=None, dispatched=None, force_async=False,
             reviewed=False, decided_by=None, live=False):
        """`reviewed`: routed to human review; `decided_by`: a moderator decided it
        since; `live`: the live slice's completions also get their model result and
        routing events (what the portal's review screen and dashboard read)."""
        self.serial += 1
        project = self.projects[self.serial % len(self.projects)] if not self.live_project else self.live_project
        if force_async and project.delivery != "async":
            project = self.projects[1]
        text = project.endpoint_type == "text"
        asynchronous = project.delivery == "async"
        sid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        task = f"task-{self.serial}" if asynchronous and status != "queued" else None
        decided = completed if decision in ("approved", "rejected") else None
        if decided_by is not None:
            decided = completed + timedelta(minutes=3)
        reason = "Nudity" if decided_by is not None and decision == "rejected" else ""
        note = "Could be art; a lead should look." if decision == "escalated" else ""
        scores, top_score = (self.review_scores, 0.72) if reviewed else (self.scores, 0.1)
        row = (
            self.pk.get_db_prep_value(sid, self.connection), project.pk, self.partner.pk, f"ext-{self.serial}",
            self.empty_json, "text_data" if text else "url", "", "" if text else f"https://cdn.example.com/{sid}.jpg",
            f"hello {self.serial}" if text else "", "text" if text else "image", "", None, "", status, task, 1,
            self.dt(lease), "Hive said: boom" if status == "failed" else "", "http_500" if status == "failed" else "",
            None, scores if status == "completed" else None, "general_nsfw" if status == "completed" else "",
            top_score if status == "completed" else None, decision,
            ("moderator" if decided_by is not None else "auto") if decision else "", reason, note, decided_by,
            self.dt(decided), None, None, self.dt(created),
            self.dt(decided if decided_by is not None else completed or created),
            self.dt(dispatched or (created if status != "queued" else None)), self.dt(completed),
        )
        receipt = None
        if asynchronous and status in ("completed", "failed"):
            outcome = "processed" if status == "completed" else "error"
            receipt = (sid, str(sid), task, completed, outcome)
        extra = None
        if live and status == "completed":
            extra = self._live_extra(sid, task, asynchronous, completed, decision, reviewed, decided_by, decided,
                                     reason, note, top_score)
        return row, receipt, completed if status == "completed" else None, project.pk, extra

    def _live_extra(self, sid, task, asynchronous, completed, decision, reviewed, decided_by, decided, reason, note,
                    top_score):
        """A live completion's model result, its `decision.routed` event and, when a
        moderator decided it, their `decision.moderator` event (as the services write them)."""
        pk = self.pk.get_db_prep_value(sid, self.connection)
        scores = self.review_scores_raw if reviewed else {"general_nsfw": 0.1, "general_not_nsfw_not_suggestive": 0.9}
        result = (pk, "callback" if asynchronous else "sync", task or "", f"fp-{sid.hex}", self.body,
                  self.json(scores), "general_nsfw", top_score, self.json([]), "", self.json([]), self.json([]),
                  None, "bench-model-1", self.dt(completed))
        routed = "pending" if reviewed else decision
        triggered = ["general_nsfw"] if reviewed else []
        events = [("system", None, "decision.routed", {"decision": routed, "triggered": triggered}, completed)]
        if decided_by is not None:
            events.append(("moderator", decided_by, "decision.moderator", {
                "decision": decision, "previous": "pending", "reason": reason, "note": note, "bulk": False,
                "triggered": triggered, "top_class": "general_nsfw", "top_score": top_score}, decided))
        return result, events

    SUB_COLUMNS = (
        "id", "project_id", "partner_id", "external_id", "metadata", "source", "media", "url", "text_data",
        "media_kind", "media_mime", "size_bytes", "sha256", "status", "hive_task_id", "attempts", "lease_until",
        "error", "error_code", "callback_overdue_at", "scores", "top_class", "top_score", "decision",
        "decision_source", "decision_reason", "decision_note", "decided_by_id", "decided_at", "claimed_by_id",
        "claimed_until", "created_at", "updated_at", "dispatched_at", "completed_at",
    )
    RECEIPT_COLUMNS = ("submission_id", "submission_ref", "hive_task_id", "body", "headers", "remote_addr",
                       "authentic", "duplicate", "outcome", "outcome_detail", "received_at", "processed_at")
    EVENT_COLUMNS = ("submission_id", "project_id", "actor", "user_id", "partner_id", "action", "data", "created_at")
    RESULT_COLUMNS = ("submission_id", "source", "hive_task_id", "fingerprint", "raw", "scores", "top_class",
                      "top_score", "timeline", "transcript", "text_matches", "failed_entries", "review",
                      "model_version", "received_at")

    def _insert(self, rows) -> None:
        from django.db import transaction

        subs, receipts, events, results = [], [], [], []
        for sub, receipt, completed_at, project_id, extra in rows:
            subs.append(sub)
            if receipt is not None:
                sid, ref, task, at, outcome = receipt
                pk = self.pk.get_db_prep_value(sid, self.connection)
                receipts.append((pk, ref, task or "", self.body, self.empty_json, "127.0.0.1", True, False, outcome,
                                 "new" if outcome == "processed" else "crashed", self.dt(at), self.dt(at)))
                if self.rng.random() < 0.01:  # Hive re-sent it
                    receipts.append((pk, ref, task or "", self.body, self.empty_json, "127.0.0.1", True, True,
                                     "duplicate", "already recorded", self.dt(at), self.dt(at)))
                if self.rng.random() < 0.002:  # someone guessing URLs
                    receipts.append((None, ref, "", "{}", self.empty_json, "203.0.113.9", False, False, "rejected",
                                     "bad token", self.dt(at), self.dt(at)))
            if completed_at is not None:
                events.append((sub[0], project_id, "hive", None, None, "result.received", self.empty_json,
                               self.dt(completed_at)))
            if extra is not None:
                result, more = extra
                results.append(result)
                events += [(sub[0], project_id, actor, user_id, None, action, self.json(data), self.dt(at))
                           for actor, user_id, action, data, at in more]
        with transaction.atomic(), self.connection.cursor() as cursor:
            cursor.executemany(_insert_sql(self.sub_table, self.SUB_COLUMNS), subs)
            if receipts:
                cursor.executemany(_insert_sql(self.receipt_table, self.RECEIPT_COLUMNS), receipts)
            if events:
                cursor.executemany(_insert_sql(self.event_table, self.EVENT_COLUMNS), events)
            if results:
                cursor.executemany(_insert_sql(self.result_table, self.RESULT_COLUMNS), results)

    def analyze(self) -> None:
        """What a maintained database has: planner statistics, and on
        PostgreSQL the visibility map that index-only scans need (autovacuum
        keeps both; SQLite's `PRAGMA optimize` is its advice)."""
        with self.connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if self.connection.vendor == "postgresql" else "ANALYZE")


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


# --- Measuring -----------------------------------------------------------------------------

def measure(client, page: Page, values: dict[str, str], repeat: int, release=None) -> dict:
    """Best and median seconds over `repeat` requests after warming up, the
    number of queries of one request, and the status code. The goal is judged
    on the best time (as `timeit` does): other processes on a shared machine
    only ever add time, and they add it unevenly to the two sizes. `release`
    runs after every request, untimed (a claim given back)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = page.url.format(**values)
    send = client.post if page.method == "POST" else client.get

    def request():
        response = send(url, follow=page.follow)
        if page.release:
            release()
        return response

    for _ in range(3):
        request()
    sql = []  # (seconds, statement): Django's own query log rounds times to the millisecond

    def timed(execute, statement, params, many, context):
        started = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            sql.append((time.perf_counter() - started, f"{statement} -- {params!r}"[:2000]))

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timed):
        response = send(url, follow=page.follow)
    query_count = len(queries)  # now: the next request resets the log
    if page.release:
        release()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        send(url, follow=page.follow)
        times.append(time.perf_counter() - started)
        if page.release:
            release()
    where = response.get("Location", "") if 300 <= response.status_code < 400 else ""
    status_ok = response.status_code == page.status and (not page.location or page.location.format(**values) in where)
    return {"best": min(times), "median": statistics.median(times), "queries": query_count,
            "status": response.status_code, "status_ok": status_ok, "where": where, "sql": sql}


def print_queries(name: str, size: int, sql: list[tuple[float, str]]) -> None:
    """`--queries`: one request's SQL, in order, with each statement's time."""
    print(f"-- {name} at {size:,} rows: {len(sql)} queries, {sum(t for t, _ in sql) * 1000:.1f} ms in the database")
    for seconds, statement in sql:
        print(f"  {seconds * 1000:7.2f} ms  {statement[:400]}")


def portal_values(moderator) -> dict[str, str]:
    """The ids the portal pages open: found the way a moderator would find them."""
    from moderation.models import Submission
    from moderation.services import review

    mine = Submission.objects.filter(project__slug__in=MODERATOR_PROJECTS, decision__in=["approved", "rejected"])
    middle = mine.order_by("created_at").values_list("pk", "external_id")
    some_id, some_external_id = middle[mine.count() // 2]
    review_item = review.queue_queryset(moderator, "review").first()
    decided_item = review.queue_queryset(moderator, "decided").first()
    return {"some_id": str(some_id), "some_external_id": some_external_id, "review_item": str(review_item.pk),
            "decided_item": str(decided_item.pk)}


def counts() -> dict[str, int]:
    from moderation.models import AuditEvent, CallbackReceipt, Submission

    return {"submissions": Submission.objects.count(), "receipts": CallbackReceipt.objects.count(),
            "events": AuditEvent.objects.count()}


def make_users():
    """A superuser for the admin; for the portal plain users with a role, as
    leads create them: three moderators (the first is measured; the others
    decided part of the live slice) granted four projects, and one lead."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    User = get_user_model()
    admin = User.objects.create_superuser("bench", "bench@example.com", "bench")
    moderator_group = Group.objects.get_or_create(name="moderator")[0]
    moderators = []
    for name in ("mod", "mod2", "mod3"):
        user = User.objects.create_user(name, f"{name}@example.com", name)
        user.groups.add(moderator_group)
        moderators.append(user)
    lead = User.objects.create_user("lead", "lead@example.com", "lead")
    lead.groups.add(Group.objects.get_or_create(name="lead")[0])
    return admin, moderators, lead


def grant(moderators) -> None:
    from moderation.models import Project

    for project in Project.objects.filter(slug__in=MODERATOR_PROJECTS):
        project.reviewers.add(*moderators)


def main() -> int:
    from bench.common import one_benchmark_at_a_time

    one_benchmark_at_a_time()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--queries", action="append", default=[], metavar="PAGE",
                        help="also print each SQL query of PAGE (a row name, e.g. 'review screen') and its time, "
                             "at both sizes: which one grows")
    args = parser.parse_args()
    known = {**PAGES, **EXTRA_PAGES, **PORTAL_PAGES, **PORTAL_EXTRA_PAGES}
    unknown = [name for name in args.queries if name not in known]
    if unknown:
        parser.error(f"--queries: no page {unknown[0]!r}; pages: {', '.join(known)}")
    vendor, workdir = configure()

    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        print(f"database: {vendor} ({connection.settings_dict['NAME']}), from {settings_name}", flush=True)
        admin, moderators, lead = make_users()
        clients = {}
        for who, user in (("admin", admin), ("moderator", moderators[0]), ("lead", lead)):
            clients[who] = Client()
            clients[who].force_login(user)
        filler = Filler(datetime.now(dt_timezone.utc), [m.pk for m in moderators])
        grant(moderators)
        from moderation.models import Submission

        def release():  # give back the measured moderator's claims, as "Release" would (no audit row)
            Submission.objects.filter(claimed_by=moderators[0]).update(claimed_by=None, claimed_until=None)

        results = {}
        for size in (args.small, args.large):
            filler.clear()
            started = time.perf_counter()
            filler.fill(history=size - LIVE, live=LIVE)
            filler.analyze()
            took = time.perf_counter() - started
            numbers = counts()
            print(f"filled {numbers['submissions']:,} submissions, {numbers['receipts']:,} receipts, "
                  f"{numbers['events']:,} events in {took:.0f} s", flush=True)
            some_id = str(Submission.objects.order_by("created_at").values_list("pk", flat=True)[size // 2])
            values = {"some_id": some_id}
            results[size] = {name: measure(clients[page.who], page, values, args.repeat)
                             for name, page in {**PAGES, **EXTRA_PAGES}.items()}
            values = portal_values(moderators[0])
            results[size].update({name: measure(clients[page.who], page, values, args.repeat, release)
                                  for name, page in {**PORTAL_PAGES, **PORTAL_EXTRA_PAGES}.items()})
            for name in args.queries:
                print_queries(name, size, results[size][name]["sql"])
        return report(results, args.small, args.large, vendor)
    finally:
        connection.creation.destroy_test_db(settings_name, verbosity=0)
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: dict, small: int, large: int, vendor: str) -> int:
    """The table, then the verdict as the last line (bench/run_all.py reads it)."""
    print(f"\n{'page':<23}{f'{small:,} rows':>20}{f'{large:,} rows':>20}{'ratio':>7}{'queries':>10}  goal")
    print(f"{'':<23}{'best / median ms':>20}{'best / median ms':>20}")
    missed, summary = [], {"admin": [], "portal": []}
    sections = (("admin, as a superuser", PAGES, EXTRA_PAGES, "admin"),
                ("portal, as a moderator (dashboard and escalated: as a lead)", PORTAL_PAGES, PORTAL_EXTRA_PAGES,
                 "portal"))
    for title, goals, extras, key in sections:
        print(f"-- {title}")
        for name in [*goals, *extras]:
            a, b = results[small][name], results[large][name]
            ratio = b["best"] / a["best"]
            ok = ratio <= MAX_RATIO and a["queries"] == b["queries"] and a["status_ok"] and b["status_ok"]
            verdict = ("ok" if ok else "MISSED") if name in goals else "(info)"
            if not (a["status_ok"] and b["status_ok"]):
                verdict += f" (answered {a['status']} {a['where']} / {b['status']} {b['where']})"
            if name in goals:
                summary[key].append(f"{name} {ratio:.2f}x ({a['queries']}/{b['queries']} queries)")
                if not ok:
                    missed.append(name)
            print(f"{name:<23}{_ms(a):>20}{_ms(b):>20}{ratio:>7.2f}{a['queries']:>5} /{b['queries']:>3}  {verdict}")
    outcome = f"MISSED: {', '.join(missed)}" if missed else "all goals met"
    print(f"\n{vendor}, admin and portal at {large:,} vs {small:,} submissions: admin: {'; '.join(summary['admin'])}; "
          f"portal: {'; '.join(summary['portal'])}; goal <= {MAX_RATIO}x with the same queries: {outcome}")
    return 1 if missed else 0


def _ms(measured: dict) -> str:
    return f"{measured['best'] * 1000:.1f} / {measured['median'] * 1000:.1f}"


if __name__ == "__main__":
    sys.exit(main())
