"""Callback ack latency: p99 of Hive's callback endpoint while a django-q2 worker
processes what it stores, as a ratio of the p99 of a bare view in the same server.
Goal: <= 2. Then every submission must have been processed exactly once.

Set-up: `--n` async submissions `awaiting_callback` (a visual project, Model only),
each with its Hive task id (plus `--warmup` more for the untimed warm-up, checked
alike); one callback body per submission, Hive's result shape
(tests/fixtures/hive/image.json with the task id and `metadata` = the submission id,
about 1.3 KB as compact JSON).

A: `POST /hive/callback/<submission id>/<token>/` with that body: the token checked
   (HMAC), the receipt stored, `process_callback` enqueued on commit, 200.
B: `POST /bench/bare/ok/` (bench/urls.py) with the same bytes: the body read, 200.

Both run in one gunicorn (gunicorn.conf.py, `--web-workers` processes x `--web-threads`
threads, DJANGO_SETTINGS_MODULE=bench.settings) with a django-q2 cluster
(`manage.py qcluster`, `--q-workers` processes) running from the start, so the
callbacks are acknowledged while earlier ones are being processed. A and B alternate
in one open-loop stream: `--rate` callbacks a second and as many bare requests,
each due at its own time whether or not earlier ones were answered (as Hive sends),
from `--threads` client threads with keep-alive connections; latency is the client's,
from when the request was due to the response read. Alternating puts each bare
request under the same load as the callback beside it: the worker busy with the
callbacks before. (`--rate 0` sends flat out, a closed loop: that measures
throughput and queueing, not the ack.)

After the stream it waits for the worker, then checks every submission: status
completed, exactly one Result, a decision, exactly one `decision.routed` audit event,
one receipt, processed. Any non-200 answer or failed check fails the run.

Run: .venv/bin/python bench/callbacks_bench.py [--db sqlite|postgres] [--n 5000] [--rate 100] [--threads 16]
The postgres variant uses PostgreSQL + Redis on loopback (throwaway database
hiveportal_bench_callbacks, Redis db 11, flushed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PYTHON, REPO, Process, Sent, bench_env, manage, percentile, post_all, setup_django, start_gunicorn,
    throwaway_backends, workdir,
)

GOAL = 2.0
FIXTURE = REPO / "tests" / "fixtures" / "hive" / "image.json"
SLUG = "bench-callbacks"


def seed(n: int) -> list[tuple[str, bytes]]:
    """n async submissions awaiting their callback; returns (callback path, body) for each."""
    from django.utils import timezone

    from moderation.models import Delivery, Partner, Project, ReviewMode, Status, Submission
    from moderation.services.callbacks import token_for

    project = Project.objects.create(slug=SLUG, name="Bench callbacks", endpoint_type="visual",
                                     review_mode=ReviewMode.MODEL_ONLY, delivery=Delivery.ASYNC,
                                     hive_api_key="sim-visual-bench",
                                     thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    partner = Partner.objects.create(name="bench-callbacks")
    partner.projects.add(project)
    now = timezone.now()
    rows = [Submission(project=project, partner=partner, source="url", url=f"https://media.example/{i}.jpg",
                       status=Status.AWAITING_CALLBACK, hive_task_id=f"bench-task-{i:06d}", attempts=1,
                       dispatched_at=now) for i in range(n)]
    Submission.objects.bulk_create(rows, batch_size=500)
    template = json.loads(FIXTURE.read_text())
    calls = []
    for row in rows:
        body = json.dumps({**template, "id": row.hive_task_id, "metadata": str(row.pk)}).encode()
        calls.append((f"/hive/callback/{row.pk}/{token_for(row.pk)}/", body))
    return calls


def wait_processed(n: int, timeout: float) -> float:
    """Seconds until no receipt is pending and n submissions are completed (or timeout)."""
    from moderation.models import CallbackReceipt, ReceiptOutcome, Status, Submission

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pending = CallbackReceipt.objects.filter(outcome=ReceiptOutcome.PENDING).count()
        done = Submission.objects.filter(project__slug=SLUG, status=Status.COMPLETED).count()
        if not pending and done >= n:
            break
        time.sleep(1)
    return time.monotonic() - started


def verify(n: int) -> list[str]:
    """Every submission processed exactly once: completed, one result, one decision."""
    from collections import Counter

    from django.db.models import Count, Q

    from moderation.models import AuditEvent, CallbackReceipt, ReceiptOutcome, Status, Submission

    rows = Submission.objects.filter(project__slug=SLUG).annotate(
        n_results=Count("results", distinct=True))
    problems = []
    statuses = Counter(rows.values_list("status", flat=True))
    if statuses != {Status.COMPLETED: n}:
        problems.append(f"statuses {dict(statuses)} (expected {n} completed)")
    results = Counter(row.n_results for row in rows.only("pk"))
    if results != {1: n}:
        problems.append(f"results per submission {dict(sorted(results.items()))} (expected {{1: {n}}})")
    undecided = rows.filter(decision__isnull=True).count()
    if undecided:
        problems.append(f"{undecided} submissions without a decision")
    routed = Counter(Counter(AuditEvent.objects.filter(action="decision.routed", submission__project__slug=SLUG)
                             .values_list("submission_id", flat=True)).values())
    if routed != {1: n}:
        problems.append(f"decision.routed events per submission {dict(routed)} (expected {{1: {n}}})")
    receipts = CallbackReceipt.objects.filter(submission__project__slug=SLUG)
    outcomes = Counter(receipts.values_list("outcome", flat=True))
    if outcomes != {ReceiptOutcome.PROCESSED: n}:
        problems.append(f"receipt outcomes {dict(outcomes)} (expected {n} processed)")
    if receipts.filter(Q(authentic=False) | Q(duplicate=True)).exists():
        problems.append("receipts refused or marked duplicate")
    return problems


def measure(args) -> dict:
    work = workdir(f"callbacks-{args.db}")
    database_url, redis_url = throwaway_backends(args.db, "hiveportal_bench_callbacks", 11)
    env = bench_env(work, database_url, redis_url, DJANGO_SETTINGS_MODULE="bench.settings",
                    Q_WORKERS=args.q_workers)
    manage(env, "migrate", "--noinput")
    setup_django(env)
    total = args.warmup + args.n
    headers = {"Content-Type": "application/json"}
    calls = [(path, body, headers) for path, body in seed(total)]
    bare = [("/bench/bare/ok/", body, headers) for _, body, _ in calls]
    # Warm-up (imports, connections, first-use caches): the first callbacks, untimed.
    warm_a, warm_b, calls, bare = calls[:args.warmup], bare[:args.warmup], calls[args.warmup:], bare[args.warmup:]
    # A and B alternate in one stream: each bare request meets the same load as the
    # callback next to it (the worker busy with the callbacks before it). Rounds of
    # separate A and B would time B on a machine the worker had left idle.
    mixed = [request for pair in zip(calls, bare) for request in pair]

    web, url = start_gunicorn(env, work, workers=args.web_workers, threads=args.web_threads)
    worker = Process("worker", [PYTHON, "manage.py", "qcluster"], env, work)
    sides = {"A": Sent(), "B": Sent()}
    warm = {"A": Sent(), "B": Sent()}
    processing = 0.0
    try:
        warm["A"] = post_all(url, warm_a, args.threads)
        warm["B"] = post_all(url, warm_b, args.threads)
        both = post_all(url, mixed, args.threads, rate=2 * args.rate)
        sides["A"] = both.only(lambda path: path.startswith("/hive/"))
        sides["B"] = both.only(lambda path: not path.startswith("/hive/"))
        processing = wait_processed(total, args.timeout)
    finally:
        worker.stop()
        web.stop()

    from moderation.models import CallbackReceipt

    problems = []
    for side in "AB":
        statuses = sides[side].statuses + warm[side].statuses
        if set(statuses) != {200}:
            problems.append(f"{side}: statuses {dict(statuses)} (expected all 200)")
    if CallbackReceipt.objects.count() != total:
        problems.append(f"{CallbackReceipt.objects.count()} receipts stored (expected {total})")
    problems += verify(total)
    if not problems:
        shutil.rmtree(work, ignore_errors=True)
    else:
        problems.append(f"logs in {work}")
    a, b = sides["A"], sides["B"]
    p99_a, p99_b = percentile(a.latencies, 99), percentile(b.latencies, 99)
    return {"db": args.db, "a": a, "b": b, "p99_a": p99_a, "p99_b": p99_b, "ratio": p99_a / p99_b,
            "processing": processing, "problems": problems, "body": len(calls[0][1])}


def _load(args) -> str:
    return f"{args.rate:.0f}/s" if args.rate > 0 else f"{args.threads} threads flat out"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=5000, help="submissions, one callback each (default 5000)")
    parser.add_argument("--threads", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--rate", type=float, default=100,
                        help="callbacks (and bare requests) sent per second, open loop; 0: as fast as the "
                             "threads go (default 100)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per side first (default 50)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (default 2)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn process (default 8)")
    parser.add_argument("--q-workers", type=int, default=4, help="django-q2 worker processes (default 4)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for processing (default 900)")
    args = parser.parse_args()
    result = measure(args)
    a, b = result["a"], result["b"]
    for name, sent in (("A callback", a), ("B bare 200", b)):
        print(sent.summary(name))
    print(f"  processing finished {result['processing']:.0f} s after the last request")
    for problem in result["problems"]:
        print(f"  problem: {problem}")
    ok = result["ratio"] <= GOAL and not result["problems"]
    print(f"callbacks [{result['db']}]: {args.n} acked, p99 {result['p99_a'] * 1000:.1f} ms vs bare "
          f"{result['p99_b'] * 1000:.1f} ms ({_load(args)}, {result['body']} B bodies); ratio "
          f"{result['ratio']:.2f} (goal <= {GOAL:g}); each processed once: "
          f"{'yes' if not result['problems'] else 'CHECKS FAILED'}: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
