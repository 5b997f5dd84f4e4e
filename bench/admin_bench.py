"""The operator admin at 1k vs 1M submissions: same speed, same queries.

Fills a throwaway database with a thousand submissions, measures the
submission list, the callback log and the queues page with Django's test
client (median time over repeated requests, and the number of SQL queries),
then refills it with a million and measures again. The goal (issue 6): each
page at most 1.5x slower at 1M, with the same number of queries. Exits 1 when
a goal is missed.

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
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAGES = {
    "submission list": "/admin/moderation/submission/",
    "callback log": "/admin/moderation/callbackreceipt/",
    "queues page": "/admin/queues/",
}
# Not goals, printed for information: the drill-downs an operator clicks most.
EXTRA_PAGES = {
    "failed submissions": "/admin/moderation/submission/?status__exact=failed",
    "overdue callbacks": "/admin/moderation/submission/?callback=overdue",
    "search by id": "/admin/moderation/submission/?q={some_id}",
}
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

    def __init__(self, now: datetime):
        from django.db import connection

        from moderation.models import AuditEvent, CallbackReceipt, Partner, Project, Submission

        self.connection = connection
        self.now = now
        self.rng = random.Random(6)
        self.partner = Partner.objects.get_or_create(name="bench-partner")[0]
        self.projects = []
        for slug, endpoint_type, review_mode, delivery in PROJECTS:
            project, _ = Project.objects.get_or_create(slug=slug, defaults=dict(
                name=slug, endpoint_type=endpoint_type, review_mode=review_mode, delivery=delivery,
                hive_api_key=f"sim-{endpoint_type}-bench", thresholds={"general_nsfw": {"review": 0.5,
                                                                                         "reject": 0.9}}))
            self.projects.append(project)
        self.partner.projects.set(self.projects)
        self.sub_table = Submission._meta.db_table
        self.receipt_table = CallbackReceipt._meta.db_table
        self.event_table = AuditEvent._meta.db_table
        self.pk = Submission._meta.pk
        json_field = Submission._meta.get_field("metadata")
        self.empty_json = json_field.get_db_prep_save({}, connection)
        self.scores = json_field.get_db_prep_save({"general_nsfw": 0.1, "general_not_nsfw_not_suggestive": 0.9},
                                                  connection)
        body = (REPO / "tests" / "fixtures" / "hive" / "image.json").read_text()
        self.body = json.dumps(json.loads(body), separators=(",", ":"))
        self.serial = 0

    def dt(self, value: datetime | None):
        return None if value is None else self.connection.ops.adapt_datetimefield_value(value)

    def clear(self) -> None:
        with self.connection.cursor() as cursor:
            for table in (self.event_table, self.receipt_table, self.sub_table):
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

    # One row: (submission values, receipt values or None, event time or None).

    def _history_row(self, created: datetime):
        roll = self.rng.random()
        if roll < 0.01:  # failed for good and never retried: these pile up with the years
            return self._row(created, "failed", None, completed=created + timedelta(minutes=20))
        decision = "rejected" if roll < 0.11 else "approved"
        return self._row(created, "completed", decision, completed=created + timedelta(seconds=30))

    def _live_row(self, i: int):
        created = self.now - timedelta(minutes=55) + timedelta(seconds=10 * i)
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
        return self._row(created, "completed", decision, completed=created + timedelta(seconds=20))

    def _row(self, created, status, decision, *, completed=None, lease=None, dispatched=None, force_async=False):
        self.serial += 1
        project = self.projects[self.serial % len(self.projects)]
        if force_async and project.delivery != "async":
            project = self.projects[1]
        text = project.endpoint_type == "text"
        asynchronous = project.delivery == "async"
        sid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        task = f"task-{self.serial}" if asynchronous and status != "queued" else None
        decided = completed if decision in ("approved", "rejected") else None
        row = (
            self.pk.get_db_prep_value(sid, self.connection), project.pk, self.partner.pk, f"ext-{self.serial}",
            self.empty_json, "text_data" if text else "url", "", "" if text else f"https://cdn.example.com/{sid}.jpg",
            f"hello {self.serial}" if text else "", "text" if text else "image", "", None, "", status, task, 1,
            self.dt(lease), "Hive said: boom" if status == "failed" else "", "http_500" if status == "failed" else "",
            None, self.scores if status == "completed" else None, "general_nsfw" if status == "completed" else "",
            0.1 if status == "completed" else None, decision, "auto" if decision else "", "", "", None,
            self.dt(decided), None, None, self.dt(created), self.dt(completed or created),
            self.dt(dispatched or (created if status != "queued" else None)), self.dt(completed),
        )
        receipt = None
        if asynchronous and status in ("completed", "failed"):
            outcome = "processed" if status == "completed" else "error"
            receipt = (sid, str(sid), task, completed, outcome)
        return row, receipt, completed if status == "completed" else None, project.pk

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

    def _insert(self, rows) -> None:
        from django.db import transaction

        subs, receipts, events = [], [], []
        for sub, receipt, completed_at, project_id in rows:
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
        with transaction.atomic(), self.connection.cursor() as cursor:
            cursor.executemany(_insert_sql(self.sub_table, self.SUB_COLUMNS), subs)
            if receipts:
                cursor.executemany(_insert_sql(self.receipt_table, self.RECEIPT_COLUMNS), receipts)
            if events:
                cursor.executemany(_insert_sql(self.event_table, self.EVENT_COLUMNS), events)

    def analyze(self) -> None:
        """What a maintained database has: planner statistics, and on
        PostgreSQL the visibility map that index-only scans need (autovacuum
        keeps both; SQLite's `PRAGMA optimize` is its advice)."""
        with self.connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if self.connection.vendor == "postgresql" else "ANALYZE")


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


# --- Measuring -----------------------------------------------------------------------------

def measure(client, url: str, repeat: int) -> dict:
    """Best and median seconds over `repeat` requests after warming up, the
    number of queries of one request, and the status code. The goal is judged
    on the best time (as `timeit` does): other processes on a shared machine
    only ever add time, and they add it unevenly to the two sizes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    query_count = len(queries)  # now: the next request resets the log
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - started)
    return {"best": min(times), "median": statistics.median(times), "queries": query_count,
            "status": response.status_code}


def measure_all(client, repeat: int, some_id: str) -> dict[str, dict]:
    urls = {**PAGES, **{name: url.format(some_id=some_id) for name, url in EXTRA_PAGES.items()}}
    return {name: measure(client, url, repeat) for name, url in urls.items()}


def counts() -> dict[str, int]:
    from moderation.models import AuditEvent, CallbackReceipt, Submission

    return {"submissions": Submission.objects.count(), "receipts": CallbackReceipt.objects.count(),
            "events": AuditEvent.objects.count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    vendor, workdir = configure()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        print(f"database: {vendor} ({connection.settings_dict['NAME']}), from {settings_name}", flush=True)
        admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
        client = Client()
        client.force_login(admin)
        filler = Filler(datetime.now(dt_timezone.utc))
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
            from moderation.models import Submission

            some_id = str(Submission.objects.order_by("created_at").values_list("pk", flat=True)[size // 2])
            results[size] = measure_all(client, args.repeat, some_id)
        return report(results, args.small, args.large, vendor)
    finally:
        connection.creation.destroy_test_db(settings_name, verbosity=0)
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: dict, small: int, large: int, vendor: str) -> int:
    """The table, then the verdict as the last line (bench/run_all.py reads it)."""
    print(f"\n{'page':<20}{f'{small:,} rows':>20}{f'{large:,} rows':>20}{'ratio':>7}{'queries':>10}  goal")
    print(f"{'':<20}{'best / median ms':>20}{'best / median ms':>20}")
    missed, summary = [], []
    for name in [*PAGES, *EXTRA_PAGES]:
        a, b = results[small][name], results[large][name]
        ratio = b["best"] / a["best"]
        ok = ratio <= MAX_RATIO and a["queries"] == b["queries"] and a["status"] == b["status"] == 200
        verdict = ("ok" if ok else "MISSED") if name in PAGES else "(info)"
        if name in PAGES:
            summary.append(f"{name} {ratio:.2f}x ({a['queries']}/{b['queries']} queries)")
            if not ok:
                missed.append(name)
        print(f"{name:<20}{_ms(a):>20}{_ms(b):>20}{ratio:>7.2f}{a['queries']:>5} /{b['queries']:>3}  {verdict}")
    outcome = f"MISSED: {', '.join(missed)}" if missed else "all goals met"
    print(f"\n{vendor}, {large:,} vs {small:,} submissions: {'; '.join(summary)}; "
          f"goal <= {MAX_RATIO}x with the same queries: {outcome}")
    return 1 if missed else 0


def _ms(measured: dict) -> str:
    return f"{measured['best'] * 1000:.1f} / {measured['median'] * 1000:.1f}"


if __name__ == "__main__":
    sys.exit(main())
